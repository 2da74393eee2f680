"""Error maps, worst tiles, fixes and causes, Table 1 and the figure rows of chapter 06 (textscd_lib.analysis.errors)."""

from __future__ import annotations

import numpy as np
import pytest
from error_strip import LV, TR, B, W, error_strip

from textscd_lib.analysis import errors as A


def test_error_map_puts_each_pixel_in_its_category():
    err = A.error_map(*error_strip())
    assert err.tolist() == [[A.CORRECT_UNCHANGED, A.CORRECT_CHANGE, A.FALSE_ALARM, A.MISS,
                             A.WRONG_CLASS, A.WRONG_CLASS]]
    counts = A.error_counts(err)
    assert counts == {"correct unchanged": 1, "correct change": 1, "false alarm": 1, "miss": 1,
                      "right change, wrong class": 2}


def test_error_map_rejects_mismatched_shapes():
    p1, p2, l1, l2 = error_strip()
    with pytest.raises(ValueError, match="shapes differ"):
        A.error_map(p1, p2, l1, l2[:, :3])


def test_error_overlay_leaves_correct_pixels_untouched():
    p1, p2, l1, l2 = error_strip()
    err = A.error_map(p1, p2, l1, l2)
    img = np.full((1, 6, 3), 100, np.uint8)
    over = A.overlay_errors(img, err, alpha=1.0)
    assert (over[0, :2] == 100).all()                      # correct unchanged, correct change
    assert over[0, 2].tolist() == A.ERROR_COLORS[A.FALSE_ALARM].tolist()
    assert over[0, 3].tolist() == A.ERROR_COLORS[A.MISS].tolist()


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



def test_error_row_blends_errors_over_both_dates_then_truth_and_prediction_side_by_side():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from textscd_lib.analysis.plots import colorize

    p1, p2, l1, l2 = error_strip()
    err = A.error_map(p1, p2, l1, l2)
    im1, im2 = np.full((1, 6, 3), 100, np.uint8), np.full((1, 6, 3), 200, np.uint8)
    panels = A.error_row_panels(im1, im2, (l1, l2), (p1, p2), err, model="textscd")
    assert [t for _, t in panels] == ["date 1 + errors", "date 2 + errors", "truth 1 | 2", "textscd 1 | 2",
                                      "error map"]
    assert np.array_equal(panels[0][0], A.overlay_errors(im1, err))
    assert np.array_equal(panels[1][0], A.overlay_errors(im2, err))
    truth = panels[2][0]
    assert truth.shape == (1, 6 + 2 + 6, 3)                      # date 1 | 2-pixel gap | date 2
    assert np.array_equal(truth[:, :6], colorize(l1)) and np.array_equal(truth[:, 8:], colorize(l2))
    assert np.array_equal(panels[3][0][:, 8:], colorize(p2))
    assert np.array_equal(panels[4][0], A.colorize_errors(err))
    fig, axes = plt.subplots(1, 5)
    A.draw_error_row(axes, im1, im2, (l1, l2), (p1, p2), err, model="textscd")
    assert [ax.get_title() for ax in axes] == [t for _, t in panels]
    assert all(len(ax.images) == 1 and not ax.axison for ax in axes)
    plt.close(fig)


def test_legends_name_each_category_in_its_map_colour():
    legend = A.error_legend()
    assert [h.get_label() for h in legend] == list(A.ERROR_CATEGORIES)
    assert np.allclose(legend[A.MISS].get_facecolor()[:3], A.ERROR_COLORS[A.MISS] / 255)
    wrong_only = A.error_legend((A.FALSE_ALARM, A.MISS, A.WRONG_CLASS))
    assert [h.get_label() for h in wrong_only] == list(A.ERROR_CATEGORIES[2:])
    assert [h.get_label() for h in A.fix_legend()] == list(A.FIX_CATEGORIES)


def test_wrap_caption_wraps_and_says_when_there_is_no_caption():
    assert A.wrap_caption("") == "(empty caption)"
    text = A.wrap_caption("trees in the top left were replaced by a row of new buildings", width=20)
    assert all(len(line) <= 20 for line in text.splitlines()) and len(text.splitlines()) > 1
