"""TGI attention drawn over the image (textscd_lib.analysis.attention, chapters 04 and 05)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from textscd_lib.analysis import attention as At


def test_pick_pair_prefers_a_caption_that_names_buildings_within_the_kept_tokens():
    captions = {"a": "", "b": "Trees became grass.", "c": "New buildings on the lawn."}
    assert At.pick_pair(["a", "b", "c"], captions, str.split) == 2
    assert At.pick_pair(["a", "b"], captions, str.split) == 1           # else the first with a caption
    assert At.pick_pair(["a"], captions, str.split) == 0
    first_three = lambda text: text.split()[:3]                          # noqa: E731 - "buildings" cut off
    assert At.pick_pair(["b", "c"], {"b": "x", "c": "one two three buildings"}, first_three) == 0


def test_word_positions_put_land_cover_words_first_and_each_word_once():
    tokens = ["[CLS]", "several", "trees", "were", "replaced", "by", "buildings", "and", "Trees", "[SEP]"]
    assert At.word_positions(tokens) == [("buildings", 6), ("trees", 2), ("several", 1)]
    assert At.word_positions(tokens, k=1) == [("buildings", 6)]


def test_attention_map_shows_a_word_where_its_pixels_attend_at_image_resolution():
    # a 64x48 image at stride 16 -> a 4x3 grid; every head puts token 1's weight on grid cell (row 2, col 1)
    att = torch.zeros(1, 8, 4 * 3, 5)
    att[..., 0] = 1.0
    att[:, :, 2 * 3 + 1, 0] = 0.0
    att[:, :, 2 * 3 + 1, 1] = 1.0
    heat = At.attention_map(att, 1, (64, 48), 16)
    assert heat.shape == (64, 48)
    r, c = np.unravel_index(heat.argmax(), heat.shape)
    assert 2 * 16 <= r < 3 * 16 and 16 <= c < 2 * 16
    assert At.attention_map(att, 0, (64, 48), 16)[r, c] < heat[r, c]
    with pytest.raises(ValueError, match="stride 8 gives 8x6"):
        At.attention_map(att, 1, (64, 48), 8)


def test_attention_figure_has_the_pair_then_one_row_per_word_and_one_column_per_level():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = 64
    attention = {lvl: torch.softmax(torch.randn(1, 8, (size // s) ** 2, 50), -1)
                 for lvl, s in ((1, 8), (2, 16), (3, 32))}
    im = np.zeros((size, size, 3), np.uint8)
    tokens = ["[CLS]", "new", "buildings", "replace", "trees", "[SEP]"]
    fig = At.attention_figure(attention, tokens, im, im, np.zeros((size, size), np.uint8), "new buildings", "t")
    axes = np.array(fig.axes[:16]).reshape(-1, 4)
    assert axes.shape == (1 + 3, 4)
    assert [ax.get_title() for ax in axes[1, 1:]] == ["level 1 (stride 8)", "level 2 (stride 16)", "level 3 (stride 32)"]
    assert axes[1, 0].texts[0].get_text().startswith("'buildings'")
    bar = fig.axes[16]  # the colour bar, in units of uniform attention, with 1 marked
    assert "n = 50 real tokens" in bar.get_ylabel() and "uniform" in bar.get_ylabel()
    assert any(list(line.get_ydata()) == [1.0, 1.0] for line in bar.lines)
    plt.close(fig)


def test_real_tokens_are_the_tokens_that_the_masked_softmax_gives_weight():
    scores = torch.randn(1, 8, 16, 50)
    scores[..., 7:] = float("-inf")  # 7 real tokens, 43 padded (the mask of eq. (7))
    attention = {2: torch.softmax(scores, -1)}
    assert At.real_tokens(attention) == 7
    heat = At.attention_map(attention[2], 3, (64, 64), 16) * At.real_tokens(attention)
    uniform = {2: torch.full((1, 8, 16, 50), 0.0).index_fill_(-1, torch.arange(7), 1 / 7)}
    np.testing.assert_allclose(At.attention_map(uniform[2], 3, (64, 64), 16) * 7, 1.0, rtol=1e-5)  # uniform = 1
    assert heat.shape == (64, 64)


def test_trained_attention_reads_the_checkpoint_with_its_own_text_features(tmp_path):
    from textscd_lib.course.pipeline import train_pipeline as train  # data -> captions -> features -> train
    from textscd_lib.data.dataset import SCDDataset
    from textscd_lib.engine.trainer import TrainConfig

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = train(TrainConfig(run="att", results_root=str(tmp_path), model="textscd", epochs=1, batch_size=4,
                                width=16, max_steps_per_epoch=1, image_weights=None, device="cpu",
                                seed=3), export=False, fast=True)
        val = SCDDataset(res["data_root"], "val")
        pair = val[0]
        attention, ck = At.trained_attention(res["paths"]["best"], tmp_path / "att", pair["name"],
                                             pair["im1"][None], pair["im2"][None])
    finally:
        torch.set_num_threads(n)
    side = pair["im1"].shape[-1]
    assert sorted(attention) == [1, 2, 3] and ck["epoch"] == 1
    for lvl, s in zip((1, 2, 3), (8, 16, 32)):
        a = attention[lvl]
        assert a.shape[:3] == (1, 8, (-(-side // s)) ** 2)
        assert torch.allclose(a.sum(-1), torch.ones(1))              # softmax over the caption's tokens
    with pytest.raises(ValueError, match="no TGI attention"):
        base = train(TrainConfig(run="att", results_root=str(tmp_path), model="baseline", epochs=1, batch_size=4,
                                 width=16, max_steps_per_epoch=1, image_weights=None, device="cpu",
                                 seed=3), export=False, fast=True)
        At.trained_attention(base["paths"]["best"], tmp_path / "att", pair["name"], pair["im1"][None],
                             pair["im2"][None])
