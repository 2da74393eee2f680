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


def _runs(name: str, seed: int, epochs: list[int], gaps: list[float]) -> pd.DataFrame:
    n = len(epochs)
    return pd.DataFrame({"intervention": [name] * n, "seed": [seed] * n, "epoch": epochs, "gap_empty": gaps,
                         "entropy": [0.99] * n, "grad_ratio": [0.05] * n, "sek_oracle": [50.0 + e for e in epochs]})


def test_an_intervention_is_judged_against_the_reference_of_its_seed_cut_to_its_horizon():
    from textscd_lib.analysis.dynamics import compare_interventions
    ref = pd.concat([_runs("none", 0, [3, 6, 8, 11, 14], [0.0, 0.1, 0.2, 1.5, 1.6]),
                     _runs("none", 1, [3, 6, 8, 11, 14], [0.0, 0.1, 1.2, 1.3, 0.0])])
    runs = pd.concat([_runs("fast", 0, [3, 6, 9, 12], [0.0, 1.2, 1.4, 2.0]),    # reads from 6; reference not at 8
                      _runs("slow", 0, [3, 6, 9, 12], [0.0, 0.0, 0.1, 0.2]),    # not at 12; reference from 11
                      _runs("same", 0, [3, 6, 9, 12], [0.0, 0.1, 0.3, 1.1]),    # from 12: the grids cannot tell
                      _runs("fast", 1, [3, 6, 9, 12], [1.1, 1.2, 1.4, 2.0])])
    t = compare_interventions(ref, runs, lambda e: 1.0).set_index(["intervention", "seed"])
    assert t.loc[("fast", 0), "verdict"] == "reads earlier" and t.loc[("fast", 0), "onset"] == 6
    assert t.loc[("slow", 0), "verdict"] == "reads later" and pd.isna(t.loc[("slow", 0), "onset"])
    assert t.loc[("same", 0), "verdict"] == "no difference these measurements can show"
    assert t.loc[("fast", 0), "reference gaps"] == "3:+0.00 6:+0.10 8:+0.20 11:+1.50"   # epoch 14 is cut
    assert t.loc[("fast", 0), "reference onset"] == 11 and t.loc[("fast", 0), "reference epoch"] == 11
    # seed 1's reference reads from 8 on within the horizon 12 (its fall at 14 is beyond it): fast reads from 3
    assert t.loc[("fast", 1), "reference onset"] == 8 and t.loc[("fast", 1), "verdict"] == "reads earlier"
