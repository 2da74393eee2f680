"""The cost model (``textscd bench --cost``) counts what a hand count gives, charges backward to the right part,
and its parts add up to the step."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import REPO

from textscd_lib.perf.costmodel import step_costs, step_ops


def _sum(ops, part, phase, field):
    i = {"flops": 2, "bytes": 3}[field]
    return sum(op[i] for op in ops if op[0] == part and op[1] == phase)


def test_classifier_heads_forward_flops_and_bytes_match_a_hand_count():
    b, s, c = 1, 64, 32  # decoder output width 32 at full resolution; sem head on both dates (2B maps)
    ops = step_ops("baseline", size=s, batch=b, dtype=torch.bfloat16)
    flops = 2 * (2 * b) * s * s * 7 * c * 9 + 2 * b * s * s * 1 * c * 9  # 2 FLOPs per multiply-add, 3x3 kernels
    assert _sum(ops, "heads", "forward", "flops") == flops
    sem = (2 * b * c * s * s) + 7 * c * 9 + 7 + (2 * b * 7 * s * s)  # input + weight + bias + output
    change = (b * c * s * s) + c * 9 + 1 + (b * s * s)
    assert _sum(ops, "heads", "forward", "bytes") == 2 * (sem + change)  # bf16: 2 bytes per element


def test_backward_is_charged_to_the_part_whose_forward_made_it():
    ops = step_ops("textscd", size=64, batch=1)
    fwd, bwd = _sum(ops, "encoder", "forward", "flops"), _sum(ops, "encoder", "backward", "flops")
    # every conv's backward costs twice its forward (input and weight gradients), except the first
    # conv, whose input (the image) needs no gradient
    assert 1.8 * fwd < bwd <= 2 * fwd
    assert _sum(ops, "tgi", "backward", "flops") > 0 and _sum(ops, "loss", "backward", "flops") == 0


def test_parts_add_up_to_the_step_and_only_textscd_has_tgi():
    rows = {kind: {r["part"]: r for r in step_costs(kind, size=64, batch=1)} for kind in ("baseline", "textscd")}
    for parts in rows.values():
        total = parts.pop("total")
        assert sum(r["ops"] for r in parts.values()) == total["ops"]
        assert sum(r["bound_ms"] for r in parts.values()) == pytest.approx(total["bound_ms"], rel=1e-3)
        assert total["bound_pairs_per_s"] == pytest.approx(1 / (total["bound_ms"] / 1e3), rel=1e-2)
    assert "tgi" in rows["textscd"] and "tgi" not in rows["baseline"]
    assert rows["textscd"]["encoder"]["fwd_gflop"] == rows["baseline"]["encoder"]["fwd_gflop"]


def test_fp32_moves_about_twice_the_bytes_of_bf16_through_the_encoder():
    bf16 = _sum(step_ops("baseline", size=64, batch=1, dtype=torch.bfloat16), "encoder", "forward", "bytes")
    fp32 = _sum(step_ops("baseline", size=64, batch=1, dtype=torch.float32), "encoder", "forward", "bytes")
    # not exactly 2x: max-pool indices (int64) and BatchNorm's saved statistics (fp32) keep their size
    assert 1.95 * bf16 < fp32 < 2 * bf16


def test_bench_cost_cli_prints_rows_and_rejects_an_unknown_profile_and_cuda_graphs_without_a_gpu():
    base = [sys.executable, "-m", "textscd_lib", "bench", "--no-write", "--size", "64", "--batch", "1"]
    out = subprocess.run([*base, "--cost"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    totals = {r["model"]: r for r in rows if r["part"] == "total"}
    assert set(totals) == {"baseline", "textscd"} and all(r["bound_pairs_per_s"] > 0 for r in totals.values())
    assert "roofline bound on NVIDIA H100 SXM" in out.stderr
    bad = subprocess.run([*base, "--cost", "--profile", "v100"], capture_output=True, text=True, timeout=120,
                         cwd=REPO)
    assert bad.returncode == 2 and "unknown profile 'v100'" in bad.stderr
    if not torch.cuda.is_available():
        cpu = subprocess.run([*base, "--device", "cpu", "--cuda-graphs"], capture_output=True, text=True,
                             timeout=120, cwd=REPO)
        assert cpu.returncode == 2 and "--cuda-graphs needs a CUDA device" in cpu.stderr


def test_cost_model_flops_equal_torch_flop_counter_on_a_real_cpu_step_plus_the_attention_it_misses():
    """The meta-device count against torch's FlopCounterMode over a real fp32 step (what `textscd bench` reports)."""
    from torch.utils.flop_counter import FlopCounterMode

    from textscd_lib.models.losses import total_loss
    from textscd_lib.models.textscd import build_model

    torch.manual_seed(0)
    model = build_model("textscd", weights=None).train()
    x1, x2 = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64)
    f_text, mask = torch.randn(1, 50, 512), torch.ones(1, 50, dtype=torch.bool)
    label = torch.randint(0, 7, (1, 64, 64))
    target = {"label1": label, "label2": label, "change": (label > 0).float()}
    with FlopCounterMode(display=False) as counter:
        loss, _ = total_loss(model(x1, x2, f_text, mask), target, as_float=False)
        loss.backward()
    ops = step_ops("textscd", size=64, batch=1, dtype=torch.float32)
    # torch's counter has no formula for the CPU flash-attention kernel, so it misses TGI's attention; the
    # meta run decomposes attention into matmuls and counts them: QK^T and AV, 2·N·L·C FLOPs each forward,
    # twice that backward, over N = 8² + 4² + 2² visual tokens (levels 1-3 of a 64² tile), L = 50, C = 128
    attention = 3 * (2 * 2 * (8 * 8 + 4 * 4 + 2 * 2) * 50 * 128)
    assert sum(op[2] for op in ops) == counter.get_total_flops() + attention


def test_cost_figure_has_one_bar_per_part_and_model():
    import matplotlib

    matplotlib.use("Agg")
    from textscd_lib.perf.costmodel import cost_figure

    costs = {kind: step_costs(kind, size=64, batch=1) for kind in ("baseline", "textscd")}
    fig = cost_figure(costs)
    ax = fig.axes[0]
    parts = [t.get_text() for t in ax.get_yticklabels()]
    assert "tgi" in parts and "encoder" in parts and "total" not in parts
    assert len(ax.patches) == 2 * len(parts)  # a bar per part and model (Baseline's tgi bar is 0 wide)
    assert any("at best" in t.get_text() for t in ax.get_legend().get_texts())


def test_the_narrow_decoder_tail_moves_fewer_bytes_than_the_paper_tail():
    def total(tail):
        rows = step_costs("textscd", size=128, batch=1, tail=tail)
        return next(r for r in rows if r["part"] == "total")

    paper, narrow, stride4 = total("paper"), total("narrow"), total("stride4")
    assert paper["tail"] == "paper" and narrow["tail"] == "narrow"
    assert narrow["fwd_gb"] + narrow["bwd_gb"] < paper["fwd_gb"] + paper["bwd_gb"]
    assert stride4["fwd_gflop"] < narrow["fwd_gflop"] < paper["fwd_gflop"]
    assert narrow["bound_ms"] < paper["bound_ms"]
