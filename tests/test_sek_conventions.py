"""The two SeK conventions: the SECOND protocol's (one 7×7 matrix over both dates) and the 37-class from→to
change types (torchange), each against a small independent computation written from the definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from textscd_lib.metrics import (
    NUM_CHANGE_TYPES,
    SCDConfusion,
    TransitionConfusion,
    change_type_names,
    scores_from_transitions,
    transition_codes,
)


def _kappa(h: np.ndarray) -> float:
    total = h.sum()
    if total == 0:
        return 0.0
    po = np.trace(h) / total
    pe = float(h.sum(1) @ h.sum(0)) / total ** 2
    return 0.0 if pe == 1 else (po - pe) / (1 - pe)


def reference_37(p1, p2, g1, g2) -> dict:
    """torchange-style: code = s1·6 + s2 + 1 on changed pixels (s = class − 1), hist[pred, gt], kappa without
    the unchanged/unchanged cell, binary IoUs from the 2×2 change table."""
    def codes(a, b):
        return np.where((a > 0) & (b > 0), (a - 1) * 6 + (b - 1) + 1, 0).ravel()
    n = 37
    h = np.bincount(codes(p1, p2) * n + codes(g1, g2), minlength=n * n).reshape(n, n).astype(float)
    fg = h[1:, 1:].sum()
    c2 = np.array([[h[0, 0], h[0].sum() - h[0, 0]], [h[:, 0].sum() - h[0, 0], fg]])
    with np.errstate(invalid="ignore", divide="ignore"):
        iu = np.diag(c2) / (c2.sum(1) + c2.sum(0) - np.diag(c2))
    h0 = h.copy()
    h0[0, 0] = 0
    kappa = _kappa(h0)
    sek = kappa * math.exp(iu[1]) / math.e
    miou = (iu[0] + iu[1]) / 2
    return {"kappa": kappa, "IoU_c": iu[1], "mIoU": miou, "SeK": sek, "Score": 0.3 * miou + 0.7 * sek}


def reference_7(p1, p2, g1, g2) -> dict:
    """SECOND protocol: one 7×7 histogram of both dates, kappa without the unchanged/unchanged cell."""
    h = sum(np.bincount(p.ravel() * 7 + g.ravel(), minlength=49).reshape(7, 7) for p, g in ((p1, g1), (p2, g2)))
    h = h.astype(float)
    iou_c = h[1:, 1:].sum() / (h.sum() - h[0, 0])
    h[0, 0] = 0
    return {"SeK": _kappa(h) * math.exp(iou_c) / math.e}


def random_pairs(rng, shape=(4, 16, 16), p_change=0.4):
    changed = rng.random(shape) < p_change
    a, b = (np.where(changed, rng.integers(1, 7, shape), 0) for _ in range(2))
    return a, b


def scores_37(p1, p2, g1, g2) -> dict:
    n = NUM_CHANGE_TYPES
    T = np.bincount(transition_codes(p1, p2).ravel() * n + transition_codes(g1, g2).ravel(),
                    minlength=n * n).reshape(n, n)
    return scores_from_transitions(T)


def close(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) < 1e-12


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_change_type_sek_matches_independent_computation_on_random_maps(seed):
    rng = np.random.default_rng(seed)
    (g1, g2), (p1, p2) = random_pairs(rng), random_pairs(rng)
    got, want = scores_37(p1, p2, g1, g2), reference_37(p1, p2, g1, g2)
    for k, v in want.items():
        assert close(got[k], v), (k, got[k], v)
    assert "not the SECOND protocol" in got["convention"]


@pytest.mark.parametrize("seed", [0, 1])
def test_second_protocol_sek_matches_independent_computation_and_differs_from_37(seed):
    rng = np.random.default_rng(seed)
    (g1, g2), (p1, p2) = random_pairs(rng), random_pairs(rng)
    conf = SCDConfusion()
    conf.update(p1, p2, g1, g2)
    sek7 = conf.scores()["SeK"]
    assert close(sek7, reference_7(p1, p2, g1, g2)["SeK"])
    assert not close(sek7, scores_37(p1, p2, g1, g2)["SeK"])


def test_one_wrong_date_counts_as_agreement_in_second_protocol_but_not_in_change_types():
    g1, g2 = np.array([[1, 2, 5, 0]]), np.array([[5, 3, 1, 0]])
    p1, p2 = np.array([[1, 2, 5, 0]]), np.array([[4, 3, 1, 0]])  # first pixel: date 2 wrong
    conf = SCDConfusion()
    conf.update(p1, p2, g1, g2)
    s37 = scores_37(p1, p2, g1, g2)
    assert s37["kappa"] < conf.scores()["kappa"]
    assert close(s37["kappa"], reference_37(p1, p2, g1, g2)["kappa"])


def test_perfect_prediction_gives_sek_one():
    rng = np.random.default_rng(3)
    g1, g2 = random_pairs(rng)
    s = scores_37(g1, g2, g1, g2)
    assert s["IoU_c"] == 1.0 and s["OA"] == 1.0 and s["mIoU_scd"] == 1.0
    assert close(s["SeK"], reference_37(g1, g2, g1, g2)["SeK"]) and close(s["SeK"], 1.0)


def test_all_unchanged_gives_nan_sek_with_reason():
    z = np.zeros((8, 8), dtype=np.int64)
    s = scores_37(z, z, z, z)
    assert s["kappa"] == 0.0 and s["IoU_nc"] == 1.0 and s["mIoU_scd"] == 1.0
    assert math.isnan(s["SeK"]) and math.isnan(reference_37(z, z, z, z)["SeK"])
    assert "SeK" in s["nan_reasons"] and "Score" in s["nan_reasons"]


def test_one_change_type_everywhere_gives_nan_iou_nc_and_kappa_zero_by_definition():
    g1, g2 = np.full((4, 4), 2), np.full((4, 4), 6)
    s = scores_37(g1, g2, g1, g2)
    assert math.isnan(s["IoU_nc"]) and "IoU_nc" in s["nan_reasons"]
    assert s["SeK"] == 0.0  # one change type only: pe = 1, kappa 0 by definition
    assert close(s["SeK"], reference_37(g1, g2, g1, g2)["SeK"])


def test_empty_confusion_is_nan_everywhere_with_reasons():
    s = scores_from_transitions(np.zeros((37, 37), dtype=np.int64))
    assert s["pixels"] == 0
    for k in ("SeK", "OA", "mIoU_scd"):
        assert math.isnan(s[k]) and k in s["nan_reasons"]


def test_a_seven_by_seven_matrix_is_refused_as_the_wrong_convention():
    with pytest.raises(ValueError, match="37×37"):
        scores_from_transitions(np.zeros((7, 7), dtype=np.int64))


def test_transition_codes_follow_from_to_order():
    names = change_type_names()
    codes = transition_codes(np.array([0, 1, 1, 6, 5]), np.array([0, 1, 2, 6, 1]))
    assert codes.tolist() == [0, 1, 2, 36, 25]
    assert [names[c] for c in codes] == ["unchanged", "water→water", "water→ground",
                                         "playground→playground", "building→water"]
    assert transition_codes(torch.tensor([3]), torch.tensor([4])).tolist() == [1 + 6 * 2 + 3]


def test_one_date_unchanged_is_refused_or_counted_unchanged_on_request():
    a, b = np.array([0, 3]), np.array([2, 3])
    with pytest.raises(ValueError, match="1 pixel"):
        transition_codes(a, b)
    assert transition_codes(a, b, partial="unchanged").tolist() == [0, 1 + 6 * 2 + 2]


def test_transition_confusion_collapses_to_the_same_change_type_matrix():
    rng = np.random.default_rng(4)
    (g1, g2), (p1, p2) = random_pairs(rng), random_pairs(rng)
    tc = TransitionConfusion()
    tc.update(p1, p2, g1, g2)
    n = NUM_CHANGE_TYPES
    direct = np.bincount(transition_codes(p1, p2).ravel() * n + transition_codes(g1, g2).ravel(),
                         minlength=n * n).reshape(n, n)
    assert np.array_equal(tc.change_types(), direct)
    bad = TransitionConfusion()
    bad.update(np.array([0]), np.array([4]), np.array([2]), np.array([4]))
    with pytest.raises(ValueError, match="one date only"):
        bad.change_types()
    assert bad.change_types(partial="unchanged")[0, 1 + 6 + 3] == 1
