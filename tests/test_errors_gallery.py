"""The gallery and report of `textscd errors`: marked captions, outlines that survive shrinking, zoom boxes."""

from __future__ import annotations

import numpy as np

from textscd_lib.analysis import gallery as G
from textscd_lib.analysis.errors import FALSE_ALARM, MISS
from textscd_lib.analysis.report import caption_html


def test_marked_caption_marks_predicted_and_true_class_words_and_keeps_the_text():
    cap = "New houses were built on the lawn; the lake is unchanged."
    pieces = G.marked_caption(cap, predicted={"building"}, true={"low vegetation"})
    assert "".join(t for t, _ in pieces) == cap
    marks = {t: m for t, m in pieces if m}
    assert marks == {"houses": "predicted", "lawn": "true", "lake": "class"}
    assert '<span style="background:#ffb3ff">houses</span>' in caption_html(cap, {"building"}, set())
    assert caption_html(None, set(), set()) == "<i>no caption</i>"


def test_a_one_pixel_rim_stays_visible_when_the_tile_is_shrunk_fourfold():
    err = np.zeros((64, 64), np.uint8)
    err[20, 8:40] = FALSE_ALARM                      # a 1-px wide false-alarm rim
    err[50:60, 50:60] = MISS
    img = np.zeros((64, 64, 3), np.uint8)
    out = G.outlined(img, err, {"miss": {1}}, size=16)
    assert out.shape == (16, 16, 3)
    assert (out == G.FA_RGB).all(-1).sum() >= 8      # the rim: 32 px long → 8 px at a quarter
    assert (out == G.MISS_RGB).all(-1).any()


def test_zoom_box_is_square_centred_and_inside_the_image():
    assert G.zoom_box((10, 10, 14, 14), (64, 64)) == (4, 4, 20, 20)          # at least 16 px
    r0, c0, r1, c1 = G.zoom_box((0, 50, 30, 64), (64, 64), max_side=32)
    assert r1 - r0 == c1 - c0 == 32 and r0 >= 0 and c1 <= 64


def test_caption_panel_grounds_the_class_words_of_false_alarms_and_misses():
    img = np.asarray(G.caption_panel("New houses on the lawn.", {"building"}, {"low vegetation"}, 200, 40))
    assert (img == G.MARK_RGB["predicted"]).all(-1).any() and (img == G.MARK_RGB["true"]).all(-1).any()
    plain = np.asarray(G.caption_panel("New houses on the lawn.", set(), set(), 200, 40))
    assert not (plain == G.MARK_RGB["predicted"]).all(-1).any()


def test_component_strip_shows_six_panels_with_the_component_boxed():
    label = (np.zeros((64, 64), np.uint8), np.zeros((64, 64), np.uint8))
    pred = (label[0].copy(), label[1].copy())
    pred[0][30:34, 30:34], pred[1][30:34, 30:34] = 1, 2            # a 4×4 false alarm
    img = np.full((64, 64, 3), 120, np.uint8)
    strip = np.asarray(G.component_strip(img, img, label, pred, (30, 30, 34, 34), size=32))
    assert strip.shape == (32, 6 * 32 + 22, 3)
    assert (strip == G.FA_RGB).all(-1).sum() >= 6 * 4              # the box on every panel
