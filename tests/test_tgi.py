"""TGI, eq. (6)-(7) (chapter 04): padding mask, residual, attention weights, SDPA vs explicit softmax."""

import pytest
import torch

from textscd_lib.models.tgi import TGI, BitemporalMLP


@pytest.fixture
def tgi():
    torch.manual_seed(0)
    return TGI(vis_dim=32, text_dim=24, heads=4).eval()


def inputs(b=2, h=5, w=7, L=10):
    torch.manual_seed(1)
    mask = torch.zeros(b, L, dtype=torch.bool)
    mask[0, :4] = True
    mask[1, :L] = True
    return torch.randn(b, 32, h, w), torch.randn(b, L, 24), mask


def test_output_shape_and_attention_shape(tgi):
    F_diff, F_text, mask = inputs()
    F_o, attn = tgi(F_diff, F_text, mask, return_attention=True)
    assert F_o.shape == F_diff.shape
    assert attn.shape == (2, 4, 35, 10)
    assert torch.allclose(attn.sum(-1), torch.ones(2, 4, 35), atol=1e-5)
    assert (attn[0, :, :, 4:] == 0).all()  # padded tokens get no attention


def test_sdpa_path_equals_explicit_softmax_path(tgi):
    F_diff, F_text, mask = inputs()
    fast = tgi(F_diff, F_text, mask)
    slow, _ = tgi(F_diff, F_text, mask, return_attention=True)
    assert torch.allclose(fast, slow, atol=1e-5)


def test_padding_mask_makes_padded_tokens_irrelevant(tgi):
    F_diff, F_text, mask = inputs()
    other = F_text.clone()
    other[0, 4:] = torch.randn(6, 24) * 100
    assert torch.allclose(tgi(F_diff, F_text, mask), tgi(F_diff, other, mask), atol=1e-5)
    # without the mask the same change does matter (the test can fail)
    assert not torch.allclose(tgi(F_diff, F_text), tgi(F_diff, other), atol=1e-3)


def test_all_but_one_padded_token_attends_to_that_token(tgi):
    F_diff, F_text, _ = inputs()
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[:, 0] = True
    F_o, attn = tgi(F_diff, F_text, mask, return_attention=True)
    assert torch.isfinite(F_o).all() and torch.allclose(attn[..., 0], torch.ones_like(attn[..., 0]))
    assert torch.allclose(tgi(F_diff, F_text, mask), F_o, atol=1e-5)


def test_row_without_real_token_stays_finite(tgi):
    F_diff, F_text, _ = inputs()
    assert torch.isfinite(tgi(F_diff, F_text, torch.zeros(2, 10, dtype=torch.bool))).all()


def test_zero_attention_output_reduces_to_F_diff():
    F_diff, F_text, mask = inputs()
    tgi = TGI(32, 24, heads=4, zero_init=True)
    assert torch.equal(tgi(F_diff, F_text, mask), F_diff)
    assert not torch.equal(TGI(32, 24, heads=4)(F_diff, F_text, mask), F_diff)


def test_channels_last_input_gives_the_same_result(tgi):
    F_diff, F_text, mask = inputs()
    cl = tgi(F_diff.contiguous(memory_format=torch.channels_last), F_text, mask)
    assert torch.allclose(cl, tgi(F_diff, F_text, mask), atol=1e-5)


def test_text_gets_gradient_through_the_cross_attention(tgi):
    F_diff, F_text, mask = inputs()
    tgi.train()
    tgi(F_diff, F_text, mask).square().sum().backward()
    for name in ("text_proj", "q", "k", "v", "out"):
        assert getattr(tgi, name).weight.grad.abs().sum() > 0, name


def test_wrong_shapes_are_named():
    tgi = TGI(32, 24, heads=4)
    with pytest.raises(ValueError, match="channels"):
        tgi(torch.randn(1, 16, 4, 4), torch.randn(1, 3, 24))
    with pytest.raises(ValueError, match="F_text"):
        tgi(torch.randn(1, 32, 4, 4), torch.randn(1, 3, 12))


def test_bitemporal_mlp_eq6_is_symmetric_in_x_diff_and_maps_3C_to_width():
    mlp = BitemporalMLP(16, 8).eval()
    assert mlp.mlp[0].in_channels == 48
    x1, x2 = torch.randn(1, 16, 4, 4), torch.randn(1, 16, 4, 4)
    assert mlp(x1, x2).shape == (1, 8, 4, 4)


def test_tgi_takes_one_mask_form_the_padding_mask_and_names_any_other():
    from textscd_lib.models.tgi import attention_mask

    pad = torch.tensor([[True, False, False], [False, False, False]])
    prepared = attention_mask(pad, 2, 3, "cpu")
    assert prepared.shape == (2, 1, 1, 3) and prepared[1].all() and prepared[0, 0, 0].tolist() == [True, False, False]
    tgi = TGI(8, 4, heads=2).eval()
    F_diff, F_text = torch.randn(2, 8, 3, 3), torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match=r"text mask has shape \(2, 1, 1, 3\), expected \(2, 3\)"):
        tgi(F_diff, F_text, prepared)
