"""Prediction folders in the layouts other methods write: each one read and scored like label1/ label2/, a binary
change folder scored for its change masks only (semantic scores not applicable), a forced layout, and one line
for an unknown layout; `textscd evaluate` and `textscd errors` on them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from textscd_lib.cli.errors import LAYOUT_HELP
from textscd_lib.cli.main import main
from textscd_lib.common.outputs import marker_kind
from textscd_lib.data.second import SecondFormatError, index_to_rgb
from textscd_lib.metrics import LAYOUT_NAMES, SCDConfusion, find_layout, match_predictions, score_folders


def _write(folder, name, arr):
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(folder / f"{name}.png")


def _maps(rng, size=16):
    change = rng.random((size, size)) < 0.4
    return tuple((rng.integers(1, 7, (size, size)) * change).astype(np.uint8) for _ in range(2))


@pytest.fixture
def tiles(tmp_path):
    """Ground truth under gt/val/ and the predictions in memory: {name: (p1, p2)}, their library scores."""
    rng = np.random.default_rng(0)
    conf, preds = SCDConfusion(), {}
    for i in range(4):
        g, p = _maps(rng), _maps(rng)
        _write(tmp_path / "gt" / "val" / "label1", f"t{i}", g[0])
        _write(tmp_path / "gt" / "val" / "label2", f"t{i}", g[1])
        conf.update(p[0], p[1], g[0], g[1])
        preds[f"t{i}"] = p
    return tmp_path, preds, conf.scores()


def _save(root, preds, layout, binary_max=1):
    """Write ``preds`` into ROOT in ``layout``: index maps for label1 and im1, SECOND colours for the others;
    a binary folder holds the change mask as 0/``binary_max``."""
    dirs = {"label1": ("label1", "label2"), "im1": ("im1", "im2"), "im1_rgb": ("im1_rgb", "im2_rgb"),
            "change_map_T1": ("change_map_T1", "change_map_T2")}
    for name, (p1, p2) in preds.items():
        if layout == "binary":
            _write(root, name, ((p1 > 0) * binary_max).astype(np.uint8))
            continue
        for folder, p in zip(dirs[layout], (p1, p2)):
            _write(root / folder, name, index_to_rgb(p) if layout.endswith(("_rgb", "_T1")) else p)
    return root


@pytest.mark.parametrize("layout", ["label1", "im1", "im1_rgb", "change_map_T1"])
def test_every_semantic_layout_scores_like_the_maps_in_memory(tiles, layout):
    tmp, preds, want = tiles
    res = score_folders(_save(tmp / "pred", preds, layout), tmp / "gt")
    assert res["layout_name"] == layout and res["binary"] is False
    for k in ("OA", "mIoU", "SeK", "F_scd"):
        assert abs(res[k] - want[k]) < 1e-12, k


def test_change_map_folders_are_read_as_changemamba_colour_maps(tiles):
    tmp, preds, _ = tiles
    m = match_predictions(_save(tmp / "pred", preds, "change_map_T1"), tmp / "gt")
    assert "ChangeMamba" in m["layout"] and m["pred_dirs"][1].name == "change_map_T2"


@pytest.mark.parametrize("high", [1, 255])
def test_binary_change_folder_gives_change_scores_and_semantic_ones_not_applicable(tiles, high):
    tmp, preds, want = tiles
    res = score_folders(_save(tmp / "pred", preds, "binary", high), tmp / "gt")
    assert res["binary"] is True and res["layout_name"] == "binary"
    assert abs(res["mIoU"] - want["mIoU"]) < 1e-12 and abs(res["IoU_c"] - want["IoU_c"]) < 1e-12
    for k in ("OA", "SeK", "F_scd", "kappa"):
        assert math.isnan(res[k]) and "not applicable" in res["nan_reasons"][k]
    gt = [np.asarray(Image.open(tmp / "gt" / "val" / "label1" / f"{n}.png")) > 0 for n in preds]
    pr = [preds[n][0] > 0 for n in preds]
    tp = sum(int((a & b).sum()) for a, b in zip(pr, gt))
    assert abs(res["change_precision"] - tp / sum(int(a.sum()) for a in pr)) < 1e-12
    assert abs(res["change_recall"] - tp / sum(int(b.sum()) for b in gt)) < 1e-12


def test_binary_folder_is_found_under_the_split_and_its_bad_values_named(tiles):
    tmp, preds, _ = tiles
    root = _save(tmp / "pred" / "val", preds, "binary")
    assert find_layout(tmp / "pred") == (root, "binary")
    _write(root, "t2", np.full((16, 16), 128, np.uint8))
    with pytest.raises(SecondFormatError, match=r"t2\.png: a binary change map holds 0/1 or 0/255, found values 128"):
        score_folders(tmp / "pred", tmp / "gt")


def test_a_forced_layout_is_the_only_one_read(tiles):
    tmp, preds, _ = tiles
    pred = _save(tmp / "pred", preds, "label1")
    zeros = {n: (np.zeros_like(a), np.zeros_like(b)) for n, (a, b) in preds.items()}
    _save(pred, zeros, "im1")
    assert match_predictions(pred, tmp / "gt")["layout_name"] == "label1"
    assert score_folders(pred, tmp / "gt", layout="im1")["IoU_c"] == 0.0
    with pytest.raises(SecondFormatError, match="no change_map_T1/ and change_map_T2/ folders"):
        find_layout(pred, layout="change_map_T1")


def test_an_unknown_layout_is_one_line_naming_the_folder_and_the_layouts_known(tiles):
    tmp, preds, _ = tiles
    pred = _save(tmp / "pred", preds, "im1")
    with pytest.raises(SecondFormatError) as e:
        score_folders(pred, tmp / "gt", layout="im3")
    msg = str(e.value)
    assert "\n" not in msg and str(pred) in msg and all(n in msg for n in LAYOUT_NAMES)
    empty = tmp / "nothing"
    empty.mkdir()
    with pytest.raises(SecondFormatError, match="nor image files of a binary change folder"):
        find_layout(empty)


def test_evaluate_reports_a_binary_folder_with_nan_semantic_scores(tiles, capsys):
    tmp, preds, want = tiles
    pred = _save(tmp / "pred", preds, "binary", 255)
    assert main(["evaluate", "--pred", str(pred), "--gt", str(tmp / "gt"), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["SeK"] is None and "not applicable" in got["nan_reasons"]["SeK"]
    assert abs(got["mIoU"] - want["mIoU"]) < 1e-12
    assert main(["evaluate", "--pred", str(pred), "--gt", str(tmp / "gt")]) == 0
    assert "not applicable" in capsys.readouterr().out


# --- textscd errors ----------------------------------------------------------------------------------------
def errors(tiles_, *extra):
    tmp = tiles_[0]
    return main(["errors", "--gt", str(tmp / "gt"), "--workers", "1", *extra])


def test_errors_help_names_every_layout():
    assert all(n in LAYOUT_HELP for n in LAYOUT_NAMES)


def test_errors_refuses_identical_method_names_in_one_line(tiles, capsys):
    tmp, preds, _ = tiles
    pred = _save(tmp / "pred", preds, "im1")
    out = tmp / "out"
    assert errors(tiles, "--pred", str(pred), "--compare", str(pred), "--names", "X, X", "--out", str(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different names" in err[0] and not out.exists()


def test_errors_prints_and_records_the_layout_it_read(tiles, capsys):
    tmp, preds, _ = tiles
    pred = _save(tmp / "pred", preds, "change_map_T1")
    out = tmp / "out"
    assert errors(tiles, "--pred", str(pred), "--out", str(out), "--layout", "change_map_T1") == 0
    assert "A: layout change_map_T1" in capsys.readouterr().out
    assert marker_kind(out) == "errors report"
    assert json.loads((out / ".textscd-output.json").read_text())["layouts"] == {"A": "change_map_T1"}


def test_errors_unknown_layout_is_one_line(tiles, capsys):
    tmp, preds, _ = tiles
    pred = _save(tmp / "pred", preds, "im1")
    assert errors(tiles, "--pred", str(pred), "--out", str(tmp / "out"), "--layout", "im9") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "im9" in err[0] and "change_map_T1" in err[0] and not (tmp / "out").exists()


def test_errors_output_inside_an_input_or_over_an_earlier_report_needs_care(tiles, capsys):
    tmp, preds, _ = tiles
    pred = _save(tmp / "pred", preds, "im1")
    assert errors(tiles, "--pred", str(pred), "--out", str(pred / "report")) == 2
    assert "inside the input" in capsys.readouterr().err and not (pred / "report").exists()
    out = tmp / "out"
    assert errors(tiles, "--pred", str(pred), "--out", str(out)) == 0
    assert errors(tiles, "--pred", str(pred), "--out", str(out)) == 2
    assert "--force" in capsys.readouterr().err
    assert errors(tiles, "--pred", str(pred), "--out", str(out), "--force") == 0
    (tmp / "foreign").mkdir()
    (tmp / "foreign" / "notes.txt").write_text("mine")
    assert errors(tiles, "--pred", str(pred), "--out", str(tmp / "foreign")) == 2


def test_errors_on_a_binary_folder_reads_it_or_says_in_one_line_why_not(tiles, capsys):
    import inspect

    from textscd_lib.analysis.instrument import analyse_folders

    tmp, preds, _ = tiles
    pred = _save(tmp / "pred", preds, "binary", 255)
    rc = errors(tiles, "--pred", str(pred), "--out", str(tmp / "out"))
    if "layout" in inspect.signature(analyse_folders).parameters:
        assert rc == 0 and "A: layout binary" in capsys.readouterr().out
    else:
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and "binary change folder" in err[0] and not (tmp / "out").exists()
