"""Error records of chapter 06 / `textscd errors` on small hand-made masks: components, kinds, distances,
transitions, caption matching and the scene-log link, checked exactly; rankings that mean what they say."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from textscd_lib.analysis import errors as A
from textscd_lib.analysis.records import BOUNDARY_PX, records, tile_records
from textscd_lib.metrics import SCDConfusion

W, G, LV, T, B = 1, 2, 3, 4, 5


def hand_tile():
    """20×20: truth A (low vegetation→building, rows 4-9, cols 4-9), truth B (tree→ground, rows 0-1, cols 16-19).
    Prediction: A without its last column (a 6-px boundary miss), a 2-px wide rim two columns right of A (a
    boundary false alarm), a 3×3 water→ground blob far away (an isolated false alarm); B is missed whole."""
    l1, l2 = np.zeros((20, 20), np.uint8), np.zeros((20, 20), np.uint8)
    l1[4:10, 4:10], l2[4:10, 4:10] = LV, B
    l1[0:2, 16:20], l2[0:2, 16:20] = T, G
    p1, p2 = np.zeros_like(l1), np.zeros_like(l2)
    p1[4:10, 4:9], p2[4:10, 4:9] = LV, B
    p1[4:10, 11:13], p2[4:10, 11:13] = LV, B
    p1[16:19, 16:19], p2[16:19, 16:19] = W, G
    return (p1, p2), (l1, l2)


def comps_by_box(comps):
    return {(c["error"], c["r0"], c["c0"], c["r1"], c["c1"]): c for c in comps}


def test_components_have_exact_areas_boxes_distances_kinds_and_transitions():
    pred, label = hand_tile()
    row, comps = tile_records("t", pred, label)
    got = comps_by_box(comps)
    assert len(comps) == 4
    rim = got[("false alarm", 4, 11, 10, 13)]
    assert (rim["area"], rim["distance_px"], rim["reach_px"], rim["kind"]) == (12, 2.0, 3.0, "boundary")
    assert (rim["predicted"], rim["true"], rim["date"]) == ("low vegetation→building", "unchanged", "both")
    blob = got[("false alarm", 16, 16, 19, 19)]
    assert blob["area"] == 9 and blob["kind"] == "isolated"
    assert blob["distance_px"] == pytest.approx(math.hypot(7, 7))        # (16,16) to the truth's corner (9,9)
    assert (blob["predicted"], blob["true"]) == ("water→ground", "unchanged")
    edge = got[("miss", 4, 9, 10, 10)]
    assert (edge["area"], edge["distance_px"], edge["kind"]) == (6, 1.0, "boundary")
    assert (edge["predicted"], edge["true"]) == ("unchanged", "low vegetation→building")
    whole = got[("miss", 0, 16, 2, 20)]
    assert (whole["area"], whole["distance_px"], whole["kind"]) == (8, 5.0, "isolated")   # (1,16) to (4,12)
    assert whole["true"] == "tree→ground"
    assert (row["false alarm"], row["miss"], row["correct change"]) == (21, 14, 30)
    assert (row["fa_boundary"], row["fa_isolated"], row["miss_boundary"], row["miss_isolated"]) == (1, 1, 1, 1)
    assert (row["fa_isolated_px"], row["fa_boundary_px"]) == (9, 12)


def test_boundary_width_decides_the_kind():
    pred, label = hand_tile()
    assert BOUNDARY_PX == 3
    _, comps = tile_records("t", pred, label, boundary_px=1)
    rim = comps_by_box(comps)[("false alarm", 4, 11, 10, 13)]
    assert rim["kind"] == "isolated"                  # 2 px away: boundary only within 3 px


def test_tile_metrics_equal_the_library_confusion_of_that_tile():
    pred, label = hand_tile()
    row, _ = tile_records("t", pred, label)
    conf = SCDConfusion()
    conf.update(*pred, *label)
    want = conf.scores()
    for k in ("OA", "mIoU", "SeK", "F_scd"):
        assert row[k] == pytest.approx(want[k], abs=1e-12)


def test_no_truth_change_makes_every_false_alarm_isolated_with_undefined_distance():
    z = np.zeros((8, 8), np.uint8)
    p = z.copy()
    p[2:4, 2:4] = B
    _, comps = tile_records("t", (p, p), (z, z))
    assert len(comps) == 1 and comps[0]["kind"] == "isolated" and math.isnan(comps[0]["distance_px"])


def test_caption_names_predicted_true_both_or_neither():
    pred, label = hand_tile()
    _, comps = tile_records("t", pred, label, caption="New buildings appear on the lawn.")
    got = {k[:3]: c["caption_names"] for k, c in comps_by_box(comps).items()}
    assert got[("false alarm", 4, 11)] == "predicted"       # low vegetation→building: both named, predicted
    assert got[("false alarm", 16, 16)] == "neither"        # water→ground: not named
    assert got[("miss", 4, 9)] == "true"                    # a missed low vegetation→building
    assert got[("miss", 0, 16)] == "neither"                # a missed tree→ground
    _, silent = tile_records("t", pred, label, caption=None)
    assert {c["caption_names"] for c in silent} == {""}


def scene(size=20, pseudo=("illumination", "misregistration")):
    k = size / 20
    return {"size": size,
            "changes": [{"from": "low vegetation", "to": "building", "bbox": [int(4 * k), int(4 * k), int(10 * k),
                                                                              int(10 * k)]},
                        {"from": "tree", "to": "ground", "bbox": [0, int(16 * k), int(2 * k), int(20 * k)]}],
            "ambiguous": [{"classes": ["tree", "low vegetation"], "drawn_as": "tree"}],
            "pseudo_changes": [{"kind": p} for p in pseudo]}


@pytest.mark.parametrize("size", [20, 40])   # a scene log written at another size is scaled to the tile
def test_scene_log_links_components_to_change_events_and_pseudo_changes(size):
    pred, label = hand_tile()
    _, comps = tile_records("t", pred, label, scene=scene(size))
    got = {k[:3]: (c["event"], c["cause"]) for k, c in comps_by_box(comps).items()}
    assert got[("false alarm", 4, 11)] == ("low vegetation→building", "misregistration")  # within 3 px of event
    assert got[("false alarm", 16, 16)] == ("", "misregistration")
    assert got[("miss", 0, 16)] == ("tree→ground", "designed ambiguity")


def test_seasonal_vegetation_explains_only_vegetation_false_alarms():
    pred, label = hand_tile()
    _, comps = tile_records("t", pred, label, scene=scene(pseudo=("illumination", "seasonal vegetation")))
    got = {k[:3]: c["cause"] for k, c in comps_by_box(comps).items()}
    assert got[("false alarm", 4, 11)] == "seasonal vegetation"     # predicted low vegetation→building
    assert got[("false alarm", 16, 16)] == "none logged"            # water→ground: the season explains nothing
    _, plain = tile_records("t", pred, label)
    assert {c["cause"] for c in plain} == {""} and {c["event"] for c in plain} == {""}


def test_records_of_many_tiles_make_one_row_per_tile_and_per_component():
    pred, label = hand_tile()
    z = np.zeros((20, 20), np.uint8)
    maps = {"a": (pred, label), "b": ((z, z), (z, z))}
    tiles, comps = records(maps, maps.__getitem__, captions={"a": "buildings"})
    assert list(tiles.index) == ["a", "b"] and len(comps) == 4 and set(comps["tile"]) == {"a"}
    assert tiles.loc["b", "false alarm"] == 0 and math.isnan(tiles.loc["b", "SeK"])


def test_worst_tiles_by_false_alarm_returns_the_most_false_alarms_not_the_fewest():
    scores = pd.DataFrame({"SeK": [0.5, 0.2, 0.9], "false alarm": [0.01, 0.30, 0.10]}, index=["few", "most", "mid"])
    assert A.worst_tiles(scores, k=2, by="false alarm").index.tolist() == ["most", "mid"]
    assert A.worst_tiles(scores, k=1, by="SeK").index.tolist() == ["most"]
    with pytest.raises(ValueError, match="no column 'nope'"):
        A.worst_tiles(scores, by="nope")


def test_rankings_by_isolated_false_alarms_and_by_difference_between_methods():
    pred, label = hand_tile()
    a_maps = {"x": (pred, label), "y": ((label[0], label[1]), label)}
    b_maps = {"x": (label, label), "y": (pred, label)}
    ta, _ = records(a_maps, a_maps.__getitem__)
    tb, _ = records(b_maps, b_maps.__getitem__)
    assert A.rank_tiles(ta, "isolated-false-alarms").index.tolist() == ["x", "y"]
    assert A.rank_tiles(ta, "miss-area", k=1).index.tolist() == ["x"]
    diff = A.rank_tiles(ta, "difference", compare=tb)
    assert diff.loc["x", "wrong_diff"] == -35 and diff.loc["y", "wrong_diff"] == 35   # 21 FA + 14 miss
    with pytest.raises(ValueError, match="needs a second method"):
        A.rank_tiles(ta, "difference")
