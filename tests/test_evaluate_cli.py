"""`textscd evaluate --pred --gt [--json]` scores maps stored in the SECOND layout like the library does."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from textscd_lib.cli.main import main
from textscd_lib.data.second import index_to_rgb
from textscd_lib.metrics import SCDConfusion


def _write(folder, name, idx, rgb=True):
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(index_to_rgb(idx) if rgb else idx.astype(np.uint8)).save(folder / f"{name}.png")


def _maps(rng, size=16):
    change = rng.random((size, size)) < 0.4
    return (rng.integers(1, 7, (size, size)) * change).astype(np.uint8), \
        (rng.integers(1, 7, (size, size)) * change).astype(np.uint8)


@pytest.fixture
def folders(tmp_path):
    rng = np.random.default_rng(0)
    conf = SCDConfusion()
    for i in range(5):
        g1, g2 = _maps(rng)
        p1, p2 = _maps(rng)
        _write(tmp_path / "gt" / "val" / "label1", f"p{i}", g1)
        _write(tmp_path / "gt" / "val" / "label2", f"p{i}", g2)
        # predictions: some RGB, some single-channel index PNGs
        _write(tmp_path / "pred" / "label1", f"p{i}", p1, rgb=i % 2 == 0)
        _write(tmp_path / "pred" / "label2", f"p{i}", p2, rgb=i % 2 == 0)
        conf.update(p1, p2, g1, g2)
    return tmp_path / "pred", tmp_path / "gt", conf.scores()


def test_random_maps_scored_by_cli_json_equal_library_numbers(folders, capsys):
    pred, gt, want = folders
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    for k in ("OA", "mIoU", "SeK", "F_scd"):
        assert abs(got[k] - want[k]) < 1e-12, k
    assert got["pairs"] == 5 and got["pixels"] == 2 * 5 * 16 * 16


def test_cli_table_prints_percentages(folders, capsys):
    pred, gt, want = folders
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt)]) == 0
    out = capsys.readouterr().out
    assert f"{100 * want['F_scd']:6.2f}" in out and "SeK" in out


def test_cli_reports_nan_with_its_reason_when_nothing_is_predicted_changed(tmp_path, capsys):
    g1, g2 = _maps(np.random.default_rng(1))
    zero = np.zeros_like(g1)
    for f, a in (("label1", g1), ("label2", g2)):
        _write(tmp_path / "gt" / f, "a", a)
        _write(tmp_path / "pred" / f, "a", zero)
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["F_scd"] is None and "nothing is predicted changed" in got["nan_reasons"]["F_scd"]
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")]) == 0
    out = capsys.readouterr().out
    assert "F_scd    NaN" in out and "nothing is predicted changed" in out


def test_cli_names_a_missing_prediction_file(folders, capsys):
    pred, gt, _ = folders
    (pred / "label2" / "p3.png").unlink()
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt)]) == 2
    err = capsys.readouterr().err
    assert "p3.png" in err and "missing" in err


def test_cli_names_a_prediction_with_an_unknown_colour(folders, capsys):
    pred, gt, _ = folders
    bad = np.zeros((16, 16, 3), np.uint8)
    bad[0, 0] = (1, 2, 3)
    Image.fromarray(bad).save(pred / "label1" / "p0.png")
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt)]) == 2
    assert "p0.png" in capsys.readouterr().err


def test_cli_rejects_ground_truth_whose_change_masks_disagree(folders, capsys):
    pred, gt, _ = folders
    g = np.zeros((16, 16), np.uint8)
    g[0, 0] = 5
    _write(gt / "val" / "label1", "p1", g)
    _write(gt / "val" / "label2", "p1", np.zeros_like(g))
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt)]) == 2
    err = capsys.readouterr().err
    assert "p1" in err and "disagree" in err


# --- prediction layouts other methods write (issue 14) ---------------------------------------------------------
def _relayout(pred, first, second, rgb):
    """Copy label1/ label2/ predictions into FIRST/ SECOND/ (index or colour PNGs) and drop the originals."""
    from textscd_lib.data.second import read_label

    for src, dst in (("label1", first), ("label2", second)):
        for f in sorted((pred / src).iterdir()):
            _write(pred / dst, f.stem, read_label(f), rgb=rgb)
            f.unlink()
        (pred / src).rmdir()


@pytest.mark.parametrize("first,second,rgb,says", [("im1", "im2", False, "index maps"),
                                                   ("im1_rgb", "im2_rgb", True, "colour maps")])
def test_reference_protocol_prediction_layouts_score_like_label_folders(folders, capsys, caplog, first, second,
                                                                        rgb, says):
    import logging

    pred, gt, want = folders
    _relayout(pred, first, second, rgb)
    with caplog.at_level(logging.INFO, logger="textscd_lib.metrics"):
        assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    for k in ("OA", "mIoU", "SeK", "F_scd"):
        assert abs(got[k] - want[k]) < 1e-12, k
    assert f"{pred / first}" in caplog.text and says in caplog.text


def test_evaluate_reports_the_extra_prediction_files_it_ignores(folders, capsys, caplog):
    import logging

    pred, gt, want = folders
    _write(pred / "label1", "stray", np.zeros((16, 16), np.uint8))
    with caplog.at_level(logging.INFO, logger="textscd_lib.metrics"):
        assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pairs"] == 5
    assert "ignored 1 extra prediction file" in caplog.text and "stray.png" in caplog.text


def test_every_missing_or_mis_sized_prediction_is_one_line_naming_its_file(folders, capsys):
    pred, gt, _ = folders
    (pred / "label1" / "p1.png").unlink()
    (pred / "label2" / "p4.png").unlink()
    _write(pred / "label2", "p2", np.zeros((8, 16), np.uint8))
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert "3 problems" in lines[0]
    assert any("label1/p1.png: missing" in line for line in lines)
    assert any("label2/p4.png: missing" in line for line in lines)
    assert any("label2/p2.png: prediction is 16×8, ground truth 16×16" in line for line in lines)
