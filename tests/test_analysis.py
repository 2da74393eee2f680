"""Error maps, caption mentions, worst tiles, predictions in memory and Table 1 (textscd_lib.analysis, chapter 06)."""

from __future__ import annotations

import numpy as np
import pytest

from textscd_lib import analysis as A
from textscd_lib.ablation import changed_pixels_differ

W, G, LV, TR, B = 1, 2, 3, 4, 5  # water, ground, low vegetation, tree, building


def _pair():
    """A 1×6 strip; one pixel per error category plus a second wrong-class case (change on one date only)."""
    l1 = np.array([[0, LV, 0, LV, LV, TR]])
    l2 = np.array([[0, B, 0, B, B, G]])
    p1 = np.array([[0, LV, LV, 0, LV, TR]])
    p2 = np.array([[0, B, B, 0, TR, 0]])
    return p1, p2, l1, l2


def test_error_map_puts_each_pixel_in_its_category():
    err = A.error_map(*_pair())
    assert err.tolist() == [[A.CORRECT_UNCHANGED, A.CORRECT_CHANGE, A.FALSE_ALARM, A.MISS,
                             A.WRONG_CLASS, A.WRONG_CLASS]]
    counts = A.error_counts(err)
    assert counts == {"correct unchanged": 1, "correct change": 1, "false alarm": 1, "miss": 1,
                      "right change, wrong class": 2}


def test_error_map_rejects_mismatched_shapes():
    p1, p2, l1, l2 = _pair()
    with pytest.raises(ValueError, match="shapes differ"):
        A.error_map(p1, p2, l1, l2[:, :3])


def test_error_overlay_leaves_correct_pixels_untouched():
    p1, p2, l1, l2 = _pair()
    err = A.error_map(p1, p2, l1, l2)
    img = np.full((1, 6, 3), 100, np.uint8)
    over = A.overlay_errors(img, err, alpha=1.0)
    assert (over[0, :2] == 100).all()                      # correct unchanged, correct change
    assert over[0, 2].tolist() == A.ERROR_COLORS[A.FALSE_ALARM].tolist()
    assert over[0, 3].tolist() == A.ERROR_COLORS[A.MISS].tolist()


@pytest.mark.parametrize("caption, expected", [
    ("Several houses were built on the former lawn.", {"building", "low vegetation"}),
    ("A sports field replaced the bare soil in the top left.", {"playground", "ground"}),
    ("The grass field in the centre is now a pond.", {"low vegetation", "water"}),
    ("Trees were cut down and the vegetation cleared.", {"tree", "low vegetation"}),
    ("No visible change.", set()),
    ("", set()),
])
def test_caption_mentions_classes_through_synonyms(caption, expected):
    assert A.classes_mentioned(caption) == expected


def test_transition_mention_distinguishes_both_one_and_neither():
    cap = "Low vegetation in the top left has been replaced by buildings."
    assert A.transition_mention(cap, "low vegetation", "building") == "both"
    assert A.transition_mention(cap, "tree", "building") == "to only"
    assert A.transition_mention(cap, "low vegetation", "water") == "from only"
    assert A.transition_mention(cap, "tree", "water") == "neither"
    # whole words only
    assert A.classes_mentioned("rebuildings") == set()


def test_transition_errors_rates_and_mentions():
    p1, p2, l1, l2 = _pair()
    preds, labels = {"t": (p1, p2)}, {"t": (l1, l2)}
    tab = A.transition_errors(["t"], preds, labels, {"t": "grass replaced by houses"})
    lvb = tab[tab.transition == "low vegetation→building"].iloc[0]
    assert lvb.pixels == 3 and lvb.mention == "both"
    assert lvb.error == pytest.approx(2 / 3)
    assert lvb.miss == pytest.approx(1 / 3) and lvb["wrong class"] == pytest.approx(1 / 3)
    trg = tab[tab.transition == "tree→ground"].iloc[0]
    assert trg.mention == "neither" and trg.error == 1.0
    summary = A.error_summary(tab, "mention")
    assert summary.loc["both", "pixels"] == 3
    assert summary["share of errors"].sum() == pytest.approx(1.0)


def test_fix_cause_map_separates_fixed_and_caused_pixels():
    label = (np.array([[0, LV, LV, 0]]), np.array([[0, B, B, 0]]))
    base = (np.array([[0, 0, LV, W]]), np.array([[0, 0, B, W]]))
    text = (np.array([[0, LV, 0, W]]), np.array([[0, B, 0, W]]))
    m = A.fix_cause_map(base, text, label)
    assert m.tolist() == [[A.BOTH_RIGHT, A.FIXED, A.CAUSED, A.BOTH_WRONG]]


def test_table1_labels_the_papers_rows_as_the_papers():
    ours = {"Baseline": {"F_scd": 0.5, "mIoU": 0.6, "OA": 0.7, "SeK": 0.1234},
            "TextSCD": {"F_scd": 0.55, "mIoU": 0.61, "OA": 0.72, "SeK": 0.15}}
    t = A.table1(ours, dataset="mini-SECOND", run="fast")
    assert list(t.columns) == ["method", "F_scd", "mIoU", "OA", "SeK", "source"]
    paper = t[t.source == "paper, SECOND"]
    assert len(paper) == 6
    assert paper.set_index("method").loc["+TGI (TextSCD)", "SeK"] == 21.66
    mine = t[t.source == "ours, mini-SECOND, run fast"]
    assert mine.method.tolist() == ["Baseline", "TextSCD"]
    assert mine.set_index("method").loc["Baseline", "SeK"] == 12.34   # fractions → ×100
    with pytest.raises(ValueError, match="lack"):
        A.table1({"x": {"SeK": 0.1}})


def test_worst_tiles_orders_by_sek_and_skips_undefined():
    pytest.importorskip("textscd_lib.metrics")
    rng = np.random.default_rng(0)
    l1 = np.zeros((16, 16), np.int64)
    l1[4:12, 4:12] = LV
    l2 = np.where(l1 > 0, B, 0)
    labels = {"perfect": (l1, l2), "noisy": (l1, l2), "empty": (np.zeros_like(l1), np.zeros_like(l1))}
    noisy = np.where(rng.random(l1.shape) < 0.5, l1, W), np.where(rng.random(l1.shape) < 0.5, l2, TR)
    preds = {"perfect": (l1, l2), "noisy": noisy, "empty": (np.zeros_like(l1), np.zeros_like(l1))}
    scores = A.tile_scores(list(labels), preds, labels)
    assert scores.loc["perfect", "SeK"] > scores.loc["noisy", "SeK"]
    worst = A.worst_tiles(scores, k=1)
    assert worst.index.tolist() == ["noisy"]


def test_negated_changes_do_not_count_as_mentions():
    assert A.classes_mentioned("No noticeable changes in buildings, roads or vegetation can be seen.") == set()
    assert A.classes_mentioned("There are no obvious changes between the two images.") == set()
    assert A.classes_mentioned("No change in the buildings, but the lawn became bare soil.") == {
        "low vegetation", "ground"}


def test_predict_maps_returns_index_maps_per_pair_and_text_moves_nothing_for_baseline(tmp_path):
    import torch

    from textscd_lib.dataset import SCDDataset
    from textscd_lib.model import build_model
    from textscd_lib.synthetic import synthesize

    root = synthesize(tmp_path / "mini", pairs=3, size=32, seed=1, val_fraction=0.34)
    ds = SCDDataset(root, "val")
    torch.manual_seed(0)
    model = build_model("baseline", text_dim=8, weights=None, width=16)
    preds = A.predict_maps(model, ds, batch_size=2)
    assert set(preds) == set(ds.names)
    p1, p2 = preds[ds.names[0]]
    assert p1.shape == (32, 32) and p1.dtype == np.uint8 and p1.max() <= 6
    assert changed_pixels_differ(preds, preds) == 0.0
    labels = A.label_maps(ds)
    assert labels[ds.names[0]][0].shape == (32, 32)
