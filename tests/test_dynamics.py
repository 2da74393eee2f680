"""Reading and judging the text-dynamics measurements (analysis.dynamics): what chapter 07 and docs/results.md
conclude from results/text-dynamics/."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from textscd_lib.analysis.dynamics import load_dynamics, reading_onset


def _line(run: str, seed: int, epoch: int, gap_empty: float) -> str:
    lv = {"1": 0.3, "2": 0.2, "3": 0.1}
    return json.dumps({"run": run, "seed": seed, "epoch": epoch, "tgi_share": lv, "tgi_vs_empty": lv,
                       "attention_entropy": {"1": 0.99, "2": 0.98, "3": 0.97}, "grad": {"ratio": 0.05},
                       "sek": {"oracle": 50.0, "empty": 50.0 - gap_empty, "shuffled": 49.0},
                       "gap_empty": gap_empty, "gap_shuffled": 1.0})


def test_measurements_of_every_run_become_one_table_with_levels_averaged(tmp_path):
    (tmp_path / "dyn-s0.jsonl").write_text(_line("dyn-s0", 0, 6, 0.1) + "\n" + _line("dyn-s0", 0, 3, 0.0) + "\n")
    (tmp_path / "dyn-s1.jsonl").write_text(_line("dyn-s1", 1, 3, 0.2) + "\n\n")
    df = load_dynamics(tmp_path)
    assert list(zip(df.seed, df.epoch)) == [(0, 3), (0, 6), (1, 3)]
    assert df.tgi_share.iloc[0] == pytest.approx(0.2) and df.entropy.iloc[0] == pytest.approx(0.98)


def test_a_broken_line_is_named_by_file_and_line(tmp_path):
    (tmp_path / "dyn-s0.jsonl").write_text(_line("dyn-s0", 0, 3, 0.0) + "\n{\"epoch\": 6}\n")
    with pytest.raises(ValueError, match=r"dyn-s0.jsonl:2: not a text-dynamics measurement"):
        load_dynamics(tmp_path)
    (tmp_path / "dyn-s0.jsonl").write_text("not json\n")
    with pytest.raises(ValueError, match=r"dyn-s0.jsonl:1: not JSON"):
        load_dynamics(tmp_path)


def test_an_epoch_measured_twice_is_refused(tmp_path):
    (tmp_path / "dyn-s0.jsonl").write_text(_line("dyn-s0", 0, 3, 0.0) + "\n" + _line("dyn-s0", 0, 3, 0.5) + "\n")
    with pytest.raises(ValueError, match="measured twice"):
        load_dynamics(tmp_path)


def test_onset_is_the_first_epoch_from_which_every_later_gap_reaches_the_noise():
    df = pd.DataFrame({"seed": [0] * 5 + [1] * 3, "epoch": [3, 6, 9, 12, 15, 3, 6, 9],
                       "gap_empty": [0.0, 1.5, 0.2, 1.2, 1.4, 0.1, 0.3, 0.9]})
    # seed 0 passes at 6, falls back at 9, reads from 12 on; seed 1 never reaches the noise
    assert reading_onset(df, lambda e: 1.0) == {0: 12, 1: None}
    # the noise may depend on the epoch: a larger early noise moves nothing here, a larger late one does
    assert reading_onset(df, lambda e: 1.3 if e >= 12 else 1.0) == {0: 15, 1: None}
