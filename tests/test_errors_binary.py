"""`textscd errors` on a change-only method: a binary change folder (0/255 masks) gets its false alarms and misses
as components, its change scores, the attribution of the change-only error types and a tolerance curve on the
change F1; its semantic scores and wrong-class counts are not applicable (NaN in CSVs, n/a in the report), never
zero. A semantic method and a binary one side by side; a forced layout is the one read."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from textscd_lib.analysis.instrument import analyse_folders
from textscd_lib.analysis.records import CHANGED_NO_CLASS
from textscd_lib.cli.main import main
from textscd_lib.metrics import score_folders

LOW_VEGETATION, BUILDING = 3, 5
TP, FA, MISS = 56, 9, 8          # the binary method below: pixels found, invented, missed
CHANGE_F1 = 2 * TP / (2 * TP + FA + MISS)


def _write(folder, name, arr):
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr, np.uint8)).save(folder / f"{name}.png")


@pytest.fixture
def folders(tmp_path):
    """Truth: tile t0 has an 8×8 low vegetation → building change, t1 none. ``bin``: t0's change without its
    last column (an 8-px boundary miss) plus a 3×3 square far away (a 9-px isolated false alarm), as 0/255.
    ``sem``: index maps (im1/ im2/), right change with the wrong date-2 class on 4 px of t0."""
    l1 = np.zeros((32, 32), np.uint8)
    l1[4:12, 4:12] = LOW_VEGETATION
    l2 = np.where(l1 > 0, BUILDING, 0)
    empty = np.zeros_like(l1)
    for name, (a, b) in {"t0": (l1, l2), "t1": (empty, empty)}.items():
        _write(tmp_path / "gt" / "val" / "label1", name, a)
        _write(tmp_path / "gt" / "val" / "label2", name, b)
    mask = l1 > 0
    mask[4:12, 11] = False
    mask[24:27, 24:27] = True
    _write(tmp_path / "bin", "t0", mask * 255)
    _write(tmp_path / "bin", "t1", empty)
    s2 = l2.copy()
    s2[4:6, 4:6] = 1                                  # water instead of building: a wrong class
    for name, (a, b) in {"t0": (l1, s2), "t1": (empty, empty)}.items():
        _write(tmp_path / "sem" / "im1", name, a)
        _write(tmp_path / "sem" / "im2", name, b)
    return tmp_path


def test_a_binary_folder_gets_its_false_alarm_and_miss_and_no_semantic_score(folders):
    a = analyse_folders(folders / "bin", folders / "gt", log=lambda s: None)
    comps = a.components["A"].set_index("error")
    assert sorted(comps.index) == ["false alarm", "miss"]                  # no wrong class: there are no classes
    assert comps.loc["false alarm", "area"] == FA and comps.loc["false alarm", "kind"] == "isolated"
    assert comps.loc["miss", "area"] == MISS and comps.loc["miss", "kind"] == "boundary"
    assert comps.loc["false alarm", "predicted"] == CHANGED_NO_CLASS
    assert comps.loc["miss", "true"] == "low vegetation→building"
    t0 = a.tiles["A"].loc["t0"]
    assert (t0["false alarm"], t0["miss"], t0["fa_isolated"], t0["miss_boundary"]) == (FA, MISS, 1, 1)
    assert math.isnan(t0["right change, wrong class"]) and math.isnan(t0["wc_px"]) and math.isnan(t0["SeK"])
    s = a.scores["A"]
    assert s["binary"] is True and s["change_F1"] == pytest.approx(CHANGE_F1)
    for k in ("OA", "SeK", "F_scd"):
        assert math.isnan(s[k]) and s["nan_reasons"][k].startswith("not applicable")
    evaluated = score_folders(folders / "bin", folders / "gt")              # what `textscd evaluate` says
    for k in ("mIoU", "IoU_c", "change_F1", "pixels"):
        assert s[k] == pytest.approx(evaluated[k]), k


def test_binary_attribution_and_tolerance_are_on_the_change_scores(folders):
    a = analyse_folders(folders / "bin", folders / "gt", log=lambda s: None)
    att = a.attribution.set_index(["error", "mode", "metric"])
    fa_fixed = 2 * TP / (2 * TP + MISS)                                    # the invented square removed
    assert att.loc[("false alarm isolated", "isolated", "change_F1"), "fixed"] == pytest.approx(100 * fa_fixed)
    assert att.loc[("miss boundary", "progressive", "change_F1"), "fixed"] == pytest.approx(100.0)
    assert att.loc[("false alarm boundary", "isolated", "change_F1"), "gain"] == 0
    wrong_class = att.loc["wrong class"]
    assert wrong_class["gain"].isna().all() and wrong_class["fixed"].isna().all()   # n/a, not a zero gain
    assert att.xs("SeK", level="metric")["gain"].isna().all()
    tol = a.tolerance[a.tolerance["metric"] == "change_F1"].set_index("k")["value"]
    forgiven = 2 * (TP + MISS) / (2 * (TP + MISS) + FA)                    # the boundary miss is 1 px from the edge
    assert tol[0] == pytest.approx(100 * CHANGE_F1) and tol[8] == pytest.approx(100 * forgiven)
    assert a.tolerance[a.tolerance["metric"] == "SeK"]["value"].isna().all()


def test_errors_command_writes_nan_in_the_csvs_and_n_a_in_the_report(folders, capsys):
    out = folders / "out"
    assert main(["errors", "--pred", str(folders / "bin"), "--gt", str(folders / "gt"), "--out", str(out),
                 "--layout", "binary", "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "A: layout binary" in printed and "SeK n/a" in printed and f"change F1 {100 * CHANGE_F1:.2f}" in printed
    tiles = pd.read_csv(out / "errors" / "tiles.csv").set_index("tile")
    assert tiles.loc["t0", ["SeK", "OA", "F_scd", "right change, wrong class", "wc_components"]].isna().all()
    assert tiles.loc["t0", "false alarm"] == FA and tiles.loc["t0", "change_F1"] == pytest.approx(CHANGE_F1)
    att = pd.read_csv(out / "errors" / "attribution.csv")
    assert att.loc[att["error"] == "wrong class", "gain"].isna().all()
    summary = json.loads((out / "errors" / "summary.json").read_text())
    assert summary["scores"]["A"]["SeK"] is None and summary["scores"]["A"]["binary"] is True
    assert summary["per method"]["A"]["wrong pixels by type"]["wrong class"] is None
    page = (out / "report.html").read_text()
    assert '<td data-v="n/a">n/a</td>' in page                        # the SeK cells of the tables
    assert ">n/a</text>" in page                                       # the SeK bars of the chart
    sek_gains = page.split("SeK gain per error type (×100)")[1].split("</table>")[0]
    assert sek_gains.count(">n/a<") == 10 and ">NaN<" not in sek_gains    # 5 types × 2 modes, all n/a
    assert "change F1 gain per error type" in page


def test_a_semantic_and_a_binary_method_side_by_side(folders, capsys):
    out = folders / "out"
    assert main(["errors", "--pred", str(folders / "sem"), "--compare", str(folders / "bin"), "--gt",
                 str(folders / "gt"), "--out", str(out), "--names", "Sem,Bin", "--rank-by", "difference",
                 "--workers", "1"]) == 0
    assert "Sem: SeK" in capsys.readouterr().out
    tiles = pd.read_csv(out / "errors" / "tiles.csv").set_index(["method", "tile"])
    assert tiles.loc[("Sem", "t0"), "right change, wrong class"] == 4 and tiles.loc[("Sem", "t0"), "SeK"] > 0
    assert math.isnan(tiles.loc[("Bin", "t0"), "SeK"]) and tiles.loc[("Bin", "t0"), "false alarm"] == FA
    ranking = pd.read_csv(out / "errors" / "ranking.csv").set_index("tile")
    assert ranking.loc["t0", "wrong_diff"] == FA + MISS                 # Sem's wrong class left out, not counted
    att = pd.read_csv(out / "errors" / "attribution.csv")
    f1 = att[(att["metric"] == "change_F1") & (att["mode"] == "isolated")]
    assert set(f1["method"]) == {"Sem", "Bin"} and f1["base"].notna().all()
    page = (out / "report.html").read_text()
    assert "false alarm + miss px Bin − Sem" in page and "Bin (n/a)" in page   # SeK curve: Bin has none


def test_rank_by_sek_on_a_binary_folder_is_one_line_and_writes_nothing(folders, capsys):
    out = folders / "out"
    assert main(["errors", "--pred", str(folders / "bin"), "--gt", str(folders / "gt"), "--out", str(out),
                 "--rank-by", "sek", "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--rank-by sek" in err[0] and "binary change folder" in err[0] and not out.exists()


def test_a_forced_layout_is_the_one_the_analysis_reads(folders):
    both = folders / "sem"
    for name in ("t0", "t1"):                                          # label1/ label2/ (found first): nothing
        for f in ("label1", "label2"):
            _write(both / f, name, np.zeros((32, 32)))
    auto = analyse_folders(both, folders / "gt", log=lambda s: None)
    forced = analyse_folders(both, folders / "gt", layout="im1", log=lambda s: None)
    assert auto.tiles["A"].loc["t0", "miss"] == 64
    assert forced.tiles["A"].loc["t0", "miss"] == 0 and forced.tiles["A"].loc["t0", "right change, wrong class"] == 4


def test_loading_class_maps_from_a_binary_folder_is_one_line(folders):
    from textscd_lib.analysis.instrument import load_maps

    with pytest.raises(ValueError, match="a binary change folder has no class maps"):
        load_maps(folders / "bin", folders / "gt")
