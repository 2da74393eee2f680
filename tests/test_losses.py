"""Losses eq. (9)-(12) and the semantic CE (chapter 05), each against a value computed by hand."""

import json
import math

import matplotlib
import pytest
import torch
from conftest import REPO

import textscd_lib.models.losses as L
from textscd_lib.models.losses import bce_loss, dice_loss, semantic_ce, similarity_loss, total_loss


def logit(p):
    return math.log(p / (1 - p))


def test_dice_eq9_matches_hand_computation():
    # p = (0.8, 0.2, 0.6, 0.4), g = (1, 0, 1, 1): 2*sum(pg)=2*1.8=3.6, sum p^2=1.2, sum g^2=3 -> 1-3.6/4.2
    z = torch.tensor([logit(0.8), logit(0.2), logit(0.6), logit(0.4)]).view(1, 1, 2, 2)
    g = torch.tensor([1.0, 0, 1, 1]).view(1, 2, 2)
    assert math.isclose(dice_loss(z, g, smooth=0).item(), 1 - 3.6 / 4.2, rel_tol=1e-5)
    assert math.isclose(dice_loss(z, g, smooth=1).item(), 1 - 4.6 / 5.2, rel_tol=1e-5)


def test_bce_eq10_plain_and_reference_weighted_match_hand_computation():
    z = torch.tensor([logit(0.8), logit(0.2), logit(0.6), logit(0.4)]).view(1, 1, 2, 2)
    g = torch.tensor([1.0, 0, 1, 1]).view(1, 2, 2)
    terms = [-math.log(0.8), -math.log(0.8), -math.log(0.6), -math.log(0.4)]
    assert math.isclose(bce_loss(z, g, weighted=False).item(), sum(terms) / 4, rel_tol=1e-5)
    pos = (terms[0] + terms[2] + terms[3]) / 3
    neg = terms[1]
    assert math.isclose(bce_loss(z, g).item(), 0.25 * pos + 0.75 * neg, rel_tol=1e-5)


def test_similarity_eq11_pulls_unchanged_and_pushes_changed():
    # two pixels; class-0 logit is ignored (softmax over classes 1..6)
    s1 = torch.full((1, 7, 1, 2), -30.0)
    s2 = torch.full((1, 7, 1, 2), -30.0)
    s1[0, 0] = 50.0  # must not matter
    s1[0, 5, 0, 0] = 10.0
    s2[0, 5, 0, 0] = 10.0  # pixel 0: same class -> cos = 1
    s1[0, 5, 0, 1] = 10.0
    s2[0, 3, 0, 1] = 10.0  # pixel 1: different classes -> cos = 0
    unchanged = torch.zeros(1, 1, 2)
    changed = torch.ones(1, 1, 2)
    assert math.isclose(similarity_loss(s1, s2, unchanged).item(), (0 + 1) / 2, abs_tol=1e-5)
    assert math.isclose(similarity_loss(s1, s2, changed).item(), (1 + 0) / 2, abs_tol=1e-5)
    # uniform probabilities on both dates: cos = 1
    u = torch.zeros(1, 7, 1, 1)
    assert math.isclose(similarity_loss(u, u, torch.ones(1, 1, 1)).item(), 1.0, abs_tol=1e-5)


def test_semantic_ce_ignores_class_0_and_is_zero_without_changed_pixels():
    logits = torch.zeros(1, 7, 1, 3)
    logits[0, 5, 0, 1] = math.log(6.0)  # p(5) = 6 / (6 + 6) = 0.5
    label = torch.tensor([[[0, 5, 2]]])
    expected = (-math.log(0.5) - math.log(1 / 7)) / 2  # pixel 2: all logits 0 -> p = 1/7
    assert math.isclose(semantic_ce(logits, label).item(), expected, rel_tol=1e-5)
    assert semantic_ce(logits, torch.zeros(1, 1, 3, dtype=torch.long)).item() == 0.0


def test_total_is_half_ce_per_date_plus_bce_dice_sim():
    torch.manual_seed(0)
    out = {"sem1": torch.randn(2, 7, 8, 8, requires_grad=True), "sem2": torch.randn(2, 7, 8, 8),
           "change": torch.randn(2, 1, 8, 8)}
    label1 = torch.randint(0, 7, (2, 8, 8))
    label2 = torch.randint(1, 7, (2, 8, 8)) * (label1 > 0)
    batch = {"label1": label1, "label2": label2, "change": (label1 > 0).float()}
    loss, parts = total_loss(out, batch)
    by_hand = 0.5 * parts["ce1"] + 0.5 * parts["ce2"] + parts["bce"] + parts["dice"] + parts["sim"]
    assert math.isclose(loss.item(), by_hand, rel_tol=1e-5)
    assert math.isclose(parts["total"], loss.item(), rel_tol=1e-6)
    assert set(parts) == {"ce1", "ce2", "bce", "dice", "sim", "total"}
    loss.backward()
    assert out["sem1"].grad is not None and torch.isfinite(out["sem1"].grad).all()


def test_the_benchmarks_fast_cosine_sim_equals_the_loss_up_to_rounding_and_keeps_the_gradient():
    from textscd_lib.perf.variants import fast_cosine_similarity_loss, fast_cosine_total_loss

    g = torch.Generator().manual_seed(0)
    s1 = torch.randn(2, 7, 16, 16, generator=g, requires_grad=True)
    s2 = torch.randn(2, 7, 16, 16, generator=g, requires_grad=True)
    change = (torch.rand(2, 16, 16, generator=g) > 0.5).float()
    ref = similarity_loss(s1, s2, change)
    fast = fast_cosine_similarity_loss(s1, s2, change)
    torch.testing.assert_close(fast, ref, rtol=1e-6, atol=1e-6)
    (g_ref,) = torch.autograd.grad(ref, s1)
    (g_fast,) = torch.autograd.grad(fast, s1)
    torch.testing.assert_close(g_fast, g_ref, rtol=1e-4, atol=1e-7)
    # the hand-computed two-pixel case of eq. (11) holds for the fast cosine as well
    a = torch.full((1, 7, 1, 2), -30.0)
    b = torch.full((1, 7, 1, 2), -30.0)
    a[0, 5], b[0, 5, 0, 0], b[0, 3, 0, 1] = 10.0, 10.0, 10.0
    assert math.isclose(fast_cosine_similarity_loss(a, b, torch.zeros(1, 1, 2)).item(), 0.5, abs_tol=1e-5)
    # the variant's total is the library's total with only L_sim swapped
    out = {"sem1": s1.detach(), "sem2": s2.detach(), "change": torch.randn(2, 1, 16, 16, generator=g)}
    batch = {"label1": torch.randint(0, 7, (2, 16, 16), generator=g), "change": change}
    batch["label2"] = torch.where(batch["label1"] > 0, 7 - batch["label1"], 0)
    _, ref_parts = total_loss(out, batch)
    _, fast_parts = fast_cosine_total_loss(out, batch)
    assert {k: v for k, v in fast_parts.items() if k not in ("sim", "total")} == {
        k: v for k, v in ref_parts.items() if k not in ("sim", "total")}
    assert math.isclose(fast_parts["total"], ref_parts["total"], abs_tol=1e-5)


def test_chapter_05s_inline_loss_check_fails_when_the_librarys_loss_changes(monkeypatch, tmp_path):
    """Chapter 05 writes eq. (9)-(12) + CE inline and asserts them equal to ``total_loss``; with the library's
    CE weight changed from 0.5 to 0.6, that assert must fail (the check compares, it does not just print)."""
    matplotlib.use("Agg")
    monkeypatch.setenv("TEXTSCD_FAST", "1")
    monkeypatch.setattr(L, "CE_WEIGHT", 0.6)
    cells = ["".join(c["source"]) for c in json.loads((REPO / "notebooks" / "05_training.ipynb").read_text())["cells"]
             if c["cell_type"] == "code"]
    ns: dict = {}
    for k, src in enumerate(cells):
        if "assert_close(value, torch.tensor(parts[name])" in src:
            with pytest.raises(AssertionError):
                exec(compile(src, f"05[code {k}]", "exec"), ns)
            return
        exec(compile(src, f"05[code {k}]", "exec"), ns)
        if k == 0:
            ns.update({"FAST": True, "RUN": "loss-check"})
    raise AssertionError("no inline loss check found in chapter 05")
