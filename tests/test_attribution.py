"""What each error type costs (chapter 06, `textscd errors`): oracle fixes computed from confusion deltas equal
re-scoring the fixed maps, everything fixed gives SeK 100, the truth has no error, shares add to 100 %."""

from __future__ import annotations

import math

import numpy as np
import pytest

from textscd_lib.analysis import attribution as A
from textscd_lib.analysis.errors import FALSE_ALARM, error_map
from textscd_lib.analysis.records import confusion_of, tile_analysis
from textscd_lib.metrics import scores_from_confusion, scores_from_transitions, transition_codes


def known_tile():
    """32×32: a true change 1→2 (rows 4–11) and 3→4 (rows 20–23, cols 20–23). The prediction draws the first
    one 2 px too wide on its right (boundary false alarm), gets date 2 wrong on its left half (wrong class),
    invents a 3×3 blob far away (isolated false alarm), misses the second one whole (isolated miss) and
    draws a third true change (5→6, rows 26–29, cols 2–9) 1 px short (boundary miss)."""
    l1, l2 = np.zeros((32, 32), np.uint8), np.zeros((32, 32), np.uint8)
    l1[4:12, 4:12], l2[4:12, 4:12] = 1, 2
    l1[20:24, 20:24], l2[20:24, 20:24] = 3, 4
    l1[26:30, 2:10], l2[26:30, 2:10] = 5, 6
    p1, p2 = l1.copy(), l2.copy()
    p1[20:24, 20:24] = p2[20:24, 20:24] = 0                 # isolated miss
    p1[4:12, 12:14], p2[4:12, 12:14] = 1, 2                 # boundary false alarm (rim)
    p2[4:12, 4:8] = 3                                       # wrong class on date 2
    p1[0:3, 27:30], p2[0:3, 27:30] = 6, 1                   # isolated false alarm
    p1[26:30, 9], p2[26:30, 9] = 0, 0                       # boundary miss (the last column)
    return (p1, p2), (l1, l2)


def type_masks(pred, label, comps):
    """Per error type, the mask of its pixels, rebuilt from the component boxes and the error map."""
    err = error_map(*pred, *label)
    cat = {"false alarm": FALSE_ALARM, "miss": 3, "wrong class": 4}
    masks = {t: np.zeros(err.shape, bool) for t in A.ERROR_TYPES}
    for c in comps:
        box = (slice(c["r0"], c["r1"]), slice(c["c0"], c["c1"]))
        m = np.zeros(err.shape, bool)
        m[box] = err[box] == cat[c["error"]]
        masks[f"{c['error']} {c['kind']}".strip()] |= m
    return masks


def test_the_known_tile_has_one_component_of_each_type_and_their_shares_add_to_100():
    pred, label = known_tile()
    t = tile_analysis("t", pred, label)
    got = sorted((f"{c['error']} {c['kind']}".strip(), c["area"]) for c in t.components)
    assert got == sorted([("false alarm boundary", 16), ("false alarm isolated", 9), ("miss boundary", 4),
                          ("miss isolated", 16), ("wrong class", 32)])
    wc = next(c for c in t.components if c["error"] == "wrong class")
    assert (wc["date"], wc["predicted"], wc["true"]) == ("2", "water→low vegetation", "water→ground")
    px = {f"{c['error']} {c['kind']}".strip(): c["area"] for c in t.components}
    share = A.shares(px)
    assert math.isclose(sum(share.values()), 100.0)
    assert math.isclose(share["wrong class"], 100 * 32 / 77)


def test_each_isolated_gain_equals_rescoring_the_fixed_maps():
    pred, label = known_tile()
    t = tile_analysis("t", pred, label)
    table = A.attribution_table(t.H, t.type_delta, "X")
    masks = type_masks(pred, label, t.components)
    base = scores_from_confusion(confusion_of(pred, label))
    for i, name in enumerate(A.ERROR_TYPES):
        fixed = A.oracle_fix(pred, label, masks[name], "unchanged" if i in A.FALSE_ALARM_TYPES else "truth")
        s = scores_from_confusion(confusion_of(fixed, label))
        rows = table[(table["error"] == name) & (table["mode"] == "isolated")].set_index("metric")
        for m in A.METRICS:
            assert rows.loc[m, "fixed"] == pytest.approx(100 * s[m])
            assert rows.loc[m, "gain"] == pytest.approx(100 * (s[m] - base[m]))
            assert rows.loc[m, "base"] == pytest.approx(100 * base[m])
    assert (table.loc[table["mode"] == "isolated", "gain"] >= -1e-9).all()


def test_fixing_every_type_in_turn_ends_at_sek_100_and_isolated_gains_do_not_add_up():
    pred, label = known_tile()
    t = tile_analysis("t", pred, label)
    table = A.attribution_table(t.H, t.type_delta)
    sek = table[table["metric"] == "SeK"]
    last = sek[sek["mode"] == "progressive"].iloc[-1]
    assert last["error"] == "wrong class" and last["fixed"] == pytest.approx(100.0)
    gap = 100 - last["base"]
    assert sek[sek["mode"] == "progressive"]["gain"].diff().fillna(0).ge(-1e-9).all()   # cumulative
    assert not math.isclose(sek[sek["mode"] == "isolated"]["gain"].sum(), gap)


def test_the_truth_as_prediction_has_no_component_and_sek_100_and_the_floor_is_printed():
    _, label = known_tile()
    t = tile_analysis("t", label, label)
    assert t.components == [] and not t.type_delta.any() and not t.tolerance_delta.any()
    sanity = A.sanity_scores(tile_analysis("t", *known_tile()).H)
    assert sanity["truth as prediction"]["SeK"] == pytest.approx(100.0)
    assert sanity["all unchanged"]["SeK"] == pytest.approx(0.0) and sanity["all unchanged"]["OA"] < 100


def test_tolerance_forgives_errors_near_the_true_boundary_only():
    pred, label = known_tile()
    t = tile_analysis("t", pred, label)
    curve = A.tolerance_curve(t.H, t.tolerance_delta, 32 * math.sqrt(2), "X")
    sek = curve[curve["metric"] == "SeK"].set_index("k")["value"]
    assert sek.loc[0] == pytest.approx(100 * scores_from_confusion(t.H)["SeK"])
    assert sek.is_monotonic_increasing and sek.loc[8] < 100          # the far blob is never forgiven
    near = A.boundary_distance(label) <= 2
    wrong = error_map(*pred, *label) >= FALSE_ALARM
    fixed = A.oracle_fix(pred, label, near & wrong)
    assert sek.loc[2] == pytest.approx(100 * scores_from_confusion(confusion_of(fixed, label))["SeK"])


def test_the_37_class_sek_is_labelled_apart_and_lower_on_wrong_classes():
    pred, label = known_tile()
    t = tile_analysis("t", pred, label)
    s37 = scores_from_transitions(t.T)
    assert s37["SeK"] < scores_from_confusion(t.H)["SeK"]
    assert t.T.sum() == 32 * 32
    a, b = (transition_codes(*m, partial="unchanged") for m in (pred, label))   # the library's own codes
    assert (t.T == np.bincount((a * 37 + b).ravel(), minlength=37 * 37).reshape(37, 37)).all()


def test_slices_count_every_component_once_per_slice_and_fixing_a_whole_slice_equals_the_type_fix():
    import pandas as pd

    pred, label = known_tile()
    t = tile_analysis("t", pred, label)
    comps = pd.DataFrame(t.components)
    sl = A.slice_table(t.H, comps, t.component_delta, {"t": 0.2}, "X")
    for dim, g in sl[sl["error"] == "all"].groupby("slice"):
        assert g["components"].sum() == len(comps) and g["pixels"].sum() == comps["area"].sum(), dim
    share = sl[(sl["slice"] == "changed share of tile") & (sl["error"] == "wrong class")].iloc[0]
    att = A.attribution_table(t.H, t.type_delta)
    wc = att[(att["error"] == "wrong class") & (att["mode"] == "isolated") & (att["metric"] == "SeK")].iloc[0]
    assert share["value"] == "20–50 %" and share["gain_SeK"] == pytest.approx(wc["gain"])
