"""TextSCD and Baseline (chapters 04, 05): shapes, inference rule, the text path is the only difference."""

import pytest
import torch

from textscd_lib.models.textscd import build_model, count_parameters, predict

D = 16  # a small text width keeps the tests fast; the real encoders give 512 (CLIP) or 384 (MiniLM)


def text(b, L=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(b, L, dtype=torch.bool)
    mask[:, :7] = True
    return torch.randn(b, L, D, generator=g), mask


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {k: build_model(k, text_dim=D, weights=None, width=32, heads=4) for k in ("textscd", "baseline")}


@pytest.mark.parametrize("kind,hw", [("textscd", (64, 64)), ("textscd", (96, 160)), ("textscd", (72, 40)),
                                     ("baseline", (96, 160))])
def test_output_shapes_at_several_sizes(models, kind, hw):
    model = models[kind].train()  # batch statistics; 72x40 is not a multiple of 32
    x = torch.randn(2, 3, *hw)
    with torch.no_grad():
        out = model(x, x.flip(-1), *text(2))
    assert out["sem1"].shape == out["sem2"].shape == (2, 7, *hw)
    assert out["change"].shape == (2, 1, *hw)


def test_full_size_512_inference_shapes():
    model = build_model("textscd", text_dim=D, weights=None).eval()  # default width 128
    x = torch.randn(1, 3, 512, 512)
    with torch.no_grad():
        out = model(x, x, *text(1))
    assert out["sem1"].shape == (1, 7, 512, 512) and out["change"].shape == (1, 1, 512, 512)


def test_inference_rule_argmax_times_change():
    sem1 = torch.zeros(1, 7, 1, 3)
    sem1[0, 5] = 1.0
    sem2 = torch.zeros(1, 7, 1, 3)
    sem2[0, 3] = 1.0
    change = torch.tensor([[[[2.0, -2.0, 0.1]]]])
    p1, p2 = predict({"sem1": sem1, "sem2": sem2, "change": change})
    assert p1.tolist() == [[[5, 0, 5]]] and p2.tolist() == [[[3, 0, 3]]]
    assert p1.dtype == torch.int64


def test_baseline_and_textscd_differ_only_by_the_text_path(models):
    tp = dict(models["textscd"].named_parameters())
    bp = dict(models["baseline"].named_parameters())
    assert set(bp) <= set(tp)
    assert all(bp[n].shape == tp[n].shape for n in bp)
    assert {n.split(".")[0] for n in set(tp) - set(bp)} == {"tgi"}
    # with the cross-attention output zeroed, TextSCD with the Baseline's weights IS the Baseline
    torch.manual_seed(0)
    base = build_model("baseline", text_dim=D, weights=None, width=32, heads=4).eval()
    ts = build_model("textscd", text_dim=D, weights=None, width=32, heads=4, zero_init_tgi=True).eval()
    missing, unexpected = ts.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and {m.split(".")[0] for m in missing} == {"tgi"}
    x1, x2 = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = base(x1, x2, *text(1)), ts(x1, x2, *text(1))
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_baseline_ignores_text_and_textscd_uses_it_in_all_three_heads(models):
    x1, x2 = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        base = models["baseline"].eval()
        assert all(torch.equal(base(x1, x2, *text(1, seed=1))[k], base(x1, x2)[k]) for k in ("sem1", "change"))
        ts = models["textscd"].eval()
        a, b = ts(x1, x2, *text(1, seed=1)), ts(x1, x2, *text(1, seed=2))
    for head in ("sem1", "sem2", "change"):
        assert (a[head] - b[head]).abs().max() > 1e-6, head  # small at random init, but there


def test_textscd_asks_for_text_of_the_right_width(models):
    x = torch.randn(1, 3, 64, 64)
    with pytest.raises(ValueError, match="needs F_text"):
        models["textscd"](x, x)
    with pytest.raises(ValueError, match="text_dim"):
        models["textscd"](x, x, torch.randn(1, 50, D + 1), None)


def test_attention_maps_come_back_per_tgi_level(models):
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = models["textscd"].eval()(x, x, *text(1), return_attention=True)
    assert sorted(out["attention"]) == [1, 2, 3]
    assert out["attention"][1].shape == (1, 4, 8 * 8, 50)  # stride 8 -> 8x8 queries


def test_channels_last_gives_the_same_output(models):
    model = models["textscd"].eval()
    x1, x2 = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x1, x2, *text(1))
        cl = model.to(memory_format=torch.channels_last)(x1.contiguous(memory_format=torch.channels_last),
                                                         x2.contiguous(memory_format=torch.channels_last),
                                                         *text(1))
        model.to(memory_format=torch.contiguous_format)
    assert all(torch.allclose(ref[k], cl[k], atol=1e-4) for k in ref)


def test_count_parameters_and_substitutes(models):
    total, trainable = count_parameters(models["textscd"])
    assert total == trainable > 21_000_000  # ResNet34 alone is 21.3 M without its fc layer
    assert count_parameters(models["textscd"])[0] > count_parameters(models["baseline"])[0]
    assert models["baseline"].substitutes and "random init" in models["baseline"].substitutes[0]
    with pytest.raises(ValueError, match="unknown model kind"):
        build_model("bisrnet")


@pytest.mark.parametrize("tail", ["narrow", "stride4"])
def test_every_decoder_tail_gives_full_resolution_logits_and_is_cheaper_than_the_paper_tail(tail):
    torch.manual_seed(0)
    paper = build_model("textscd", text_dim=D, weights=None, width=32, heads=4)
    other = build_model("textscd", text_dim=D, weights=None, width=32, heads=4, tail=tail)
    x = torch.randn(2, 3, 96, 160)
    with torch.no_grad():
        out = other.train()(x, x.flip(-1), *text(2))
    assert out["sem1"].shape == (2, 7, 96, 160) and out["change"].shape == (2, 1, 96, 160)
    assert count_parameters(other)[0] < count_parameters(paper)[0]
    assert not any(n.startswith(("sem_decoder.final_up", "sem_decoder.out_norm")) for n, _ in other.named_parameters())


def test_the_paper_tail_is_the_default_and_draws_the_same_initial_weights():
    torch.manual_seed(3)
    default = build_model("baseline", text_dim=D, weights=None, width=32).state_dict()
    torch.manual_seed(3)
    paper = build_model("baseline", text_dim=D, weights=None, width=32, tail="paper").state_dict()
    assert list(default) == list(paper) and all(torch.equal(default[k], paper[k]) for k in default)
    assert "sem_decoder.out_norm.0.weight" in default  # the paper tail's full-size BatchNorm


def test_an_unknown_decoder_tail_is_named():
    with pytest.raises(ValueError, match="unknown decoder tail 'wide'"):
        build_model("baseline", weights=None, tail="wide")
