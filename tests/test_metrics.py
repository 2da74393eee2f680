"""OA, mIoU, SeK, F_scd from one 7×7 confusion matrix (docs/facts.md#metrics), against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from textscd_lib.metrics import SCDConfusion, TransitionConfusion, per_class_iou, scores_from_confusion


def H_from(cells: dict[tuple[int, int], int]) -> np.ndarray:
    H = np.zeros((7, 7), dtype=np.int64)
    for (p, g), n in cells.items():
        H[p, g] = n
    return H


def test_scores_match_hand_computed_confusion():
    # rows = prediction, columns = ground truth
    H = H_from({(0, 0): 50, (0, 1): 5, (1, 0): 3, (1, 1): 10, (5, 5): 20, (5, 1): 2, (2, 5): 4})
    s = scores_from_confusion(H)
    # total 94, trace 80, TN 50, TP (changed in both) 10+20+2+4 = 36
    assert abs(s["OA"] - 80 / 94) < 1e-12
    assert abs(s["IoU_nc"] - 50 / 58) < 1e-12
    assert abs(s["IoU_c"] - 36 / 44) < 1e-12
    assert abs(s["mIoU"] - (50 / 58 + 36 / 44) / 2) < 1e-12
    # Q: rows (5, 13, 4, 0, 0, 22, 0), cols (3, 17, 0, 0, 0, 24, 0), sum 44, trace 30
    kappa = (30 / 44 - 764 / 1936) / (1 - 764 / 1936)
    assert abs(s["kappa"] - kappa) < 1e-12
    assert abs(s["SeK"] - kappa * math.exp(36 / 44) / math.e) < 1e-12
    # P = 30/39, R = 30/41 -> harmonic mean 60/80
    assert abs(s["P_scd"] - 30 / 39) < 1e-12 and abs(s["R_scd"] - 30 / 41) < 1e-12
    assert abs(s["F_scd"] - 0.75) < 1e-12
    assert s["nan_reasons"] == {}


def test_all_unchanged_gives_nan_iou_c_sek_and_f_scd_with_reasons():
    s = scores_from_confusion(H_from({(0, 0): 100}))
    assert s["OA"] == 1.0 and s["IoU_nc"] == 1.0 and s["kappa"] == 0.0
    for k in ("IoU_c", "mIoU", "SeK", "F_scd"):
        assert math.isnan(s[k]), k
        assert k in s["nan_reasons"]
    assert "nothing is predicted changed" in s["nan_reasons"]["F_scd"]
    assert "nothing is labelled changed" in s["nan_reasons"]["F_scd"]


def test_nothing_predicted_changed_gives_nan_f_scd_and_zero_sek():
    s = scores_from_confusion(H_from({(0, 0): 80, (0, 3): 20}))
    assert abs(s["OA"] - 0.8) < 1e-12
    assert abs(s["mIoU"] - 0.4) < 1e-12  # IoU_nc 0.8, IoU_c 0
    assert s["SeK"] == 0.0  # Q has no agreement and pe = 0 -> kappa 0
    assert math.isnan(s["F_scd"]) and s["nan_reasons"]["F_scd"].startswith("nothing is predicted changed")
    assert math.isnan(s["P_scd"]) and s["R_scd"] == 0.0


def test_everything_changed_and_right_gives_nan_iou_nc_and_sek_one():
    s = scores_from_confusion(H_from({(3, 3): 10, (5, 5): 10}))
    assert math.isnan(s["IoU_nc"]) and math.isnan(s["mIoU"]) and "IoU_nc" in s["nan_reasons"]
    assert s["IoU_c"] == 1.0
    assert abs(s["kappa"] - 1.0) < 1e-12 and abs(s["SeK"] - 1.0) < 1e-12
    assert s["F_scd"] == 1.0


def test_kappa_is_zero_when_pe_is_one():
    # Q holds a single class on both sides: pe = 1 exactly -> kappa defined as 0, SeK 0
    s = scores_from_confusion(H_from({(0, 0): 5, (2, 2): 7}))
    assert s["kappa"] == 0.0 and s["SeK"] == 0.0 and s["F_scd"] == 1.0 and s["OA"] == 1.0


def test_wrong_class_everywhere_gives_zero_f_scd_and_negative_sek_possible():
    s = scores_from_confusion(H_from({(0, 0): 10, (1, 2): 10}))
    assert s["F_scd"] == 0.0 and s["SeK"] == 0.0
    s = scores_from_confusion(H_from({(1, 2): 10, (2, 1): 10, (1, 1): 1}))
    assert s["SeK"] < 0  # worse than chance agreement on changed pixels


def test_empty_matrix_is_nan_everywhere_it_divides_by_zero():
    s = scores_from_confusion(np.zeros((7, 7), dtype=np.int64))
    for k in ("OA", "mIoU", "SeK", "F_scd"):
        assert math.isnan(s[k]) and k in s["nan_reasons"]


def _reference_bisrnet_style(H: np.ndarray) -> tuple[float, float, float, float]:
    """An independent transcription in the Bi-SRNet/SCanNet style (hist[gt, pred], 2×2 change hist)."""
    hist = H.T.astype(np.float64)
    c2 = np.array([[hist[0, 0], hist.sum(1)[0] - hist[0, 0]],
                   [hist.sum(0)[0] - hist[0, 0], hist[1:, 1:].sum()]])
    iu = np.diag(c2) / (c2.sum(1) + c2.sum(0) - np.diag(c2))
    h0 = hist.copy()
    h0[0, 0] = 0
    po = np.diag(h0).sum() / h0.sum()
    pe = (h0.sum(1) @ h0.sum(0)) / h0.sum() ** 2
    kappa = (po - pe) / (1 - pe)
    sek = kappa * math.exp(iu[1]) / math.e
    tp = np.diag(hist[1:, 1:]).sum()
    p = tp / (hist.sum() - hist.sum(0)[0])
    r = tp / (hist.sum() - hist.sum(1)[0])
    return np.diag(hist).sum() / hist.sum(), iu.mean(), sek, 2 * p * r / (p + r)


def test_scores_agree_with_an_independent_reference_on_random_matrices():
    rng = np.random.default_rng(0)
    for _ in range(20):
        H = rng.integers(0, 1000, size=(7, 7))
        H[0, 0] = rng.integers(0, 100_000)
        s = scores_from_confusion(H)
        oa, miou, sek, f = _reference_bisrnet_style(H)
        assert abs(s["OA"] - oa) < 1e-12 and abs(s["mIoU"] - miou) < 1e-12
        assert abs(s["SeK"] - sek) < 1e-12 and abs(s["F_scd"] - f) < 1e-12


def test_update_counts_both_dates_into_one_matrix_for_numpy_and_torch():
    rng = np.random.default_rng(1)
    p1, p2, g1, g2 = (rng.integers(0, 7, size=(3, 5, 4), dtype=np.uint8) for _ in range(4))
    want = np.zeros((7, 7), dtype=np.int64)
    for p, g in ((p1, g1), (p2, g2)):
        np.add.at(want, (p.ravel().astype(int), g.ravel().astype(int)), 1)
    a = SCDConfusion()
    a.update(p1, p2, g1, g2)
    b = SCDConfusion()
    for i in range(3):  # batch by batch, torch int64
        b.update(*(torch.from_numpy(x[i]).long() for x in (p1, p2, g1, g2)))
    assert (a.matrix == want).all() and (b.matrix == want).all()
    assert a.matrix.sum() == 2 * 3 * 5 * 4
    assert a.scores()["OA"] == scores_from_confusion(want)["OA"]


def test_update_rejects_values_outside_the_classes_and_mismatched_shapes():
    c = SCDConfusion()
    ok = np.zeros((4, 4), dtype=np.uint8)
    with pytest.raises(ValueError, match="0..6"):
        c.update(ok, ok, ok + 7, ok)
    with pytest.raises(ValueError, match="pixels"):
        c.update(ok, ok, ok[:2], ok)


def test_merge_adds_matrices():
    a, b = SCDConfusion(), SCDConfusion()
    a.update(np.ones(4, int), np.zeros(4, int), np.ones(4, int), np.zeros(4, int))
    b.merge(a)
    b.merge(a)
    assert (b.matrix == 2 * a.matrix).all()


def test_per_class_iou_nan_for_absent_class():
    H = H_from({(0, 0): 4, (1, 1): 2, (1, 2): 2})
    iou = per_class_iou(H)
    assert iou[0] == 1.0 and abs(iou[1] - 0.5) < 1e-12 and iou[2] == 0.0 and math.isnan(iou[3])
    assert scores_from_confusion(H)["per_class_IoU"]["water"] == iou[1]


def test_transition_confusion_counts_from_to_pairs():
    t = TransitionConfusion()
    g1 = np.array([0, 3, 3, 1]); g2 = np.array([0, 5, 5, 2])  # noqa: E702
    p1 = np.array([0, 3, 2, 0]); p2 = np.array([0, 5, 5, 0])  # noqa: E702
    t.update(p1, p2, g1, g2)
    M = t.matrix
    assert M.shape == (49, 49) and M.sum() == 4
    assert M[3 * 7 + 5, 3 * 7 + 5] == 1 and M[2 * 7 + 5, 3 * 7 + 5] == 1 and M[0, 1 * 7 + 2] == 1
    top = t.top_confusions(5)
    assert {(d["true"], d["predicted"]) for d in top} == {("low vegetation→building", "ground→building"),
                                                         ("water→ground", "unchanged")}
    assert t.label(0) == "unchanged"


def test_the_metric_maths_reads_no_files_and_the_folder_reader_keeps_every_old_name():
    """metrics/scores.py holds the maths only (no image, path or folder module imported); metrics/folders.py reads;
    `textscd_lib.metrics` still offers every name from both."""
    import ast
    import inspect

    import textscd_lib.metrics as metrics
    from textscd_lib.metrics import folders, scores

    tree = ast.parse(inspect.getsource(scores))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not imported & {"PIL", "pathlib", "os", "glob", "textscd_lib.metrics.folders"}, imported
    assert "open(" not in inspect.getsource(scores)
    for name in ("SCDConfusion", "scores_from_confusion", "scores_from_change_masks", "transition_codes"):
        assert getattr(metrics, name) is getattr(scores, name)
    for name in ("PRED_LAYOUTS", "find_layout", "match_predictions", "read_truth", "score_folders"):
        assert getattr(metrics, name) is getattr(folders, name)
