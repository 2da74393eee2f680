"""`textscd bench --parts`: measured time per model part, charged to the right part in both passes."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO

from textscd_lib.models import tgi
from textscd_lib.perf.bench import BenchConfig
from textscd_lib.perf.step_profile import _profile_name, _rows, format_parts, parts_figure, profile_parts

SLEEP_S = 0.2


class _SlowBackward(torch.autograd.Function):
    """Identity whose backward sleeps: a known cost that must land in the backward of the part using it."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        time.sleep(SLEEP_S)
        return grad


@pytest.fixture(scope="module")
def slow_tgi_rows():
    """TextSCD profiled on CPU with TGI made slow by a known amount in forward and in backward."""
    original = tgi.TGI.forward

    def slow_forward(self, *args, **kwargs):
        time.sleep(SLEEP_S)
        return _SlowBackward.apply(original(self, *args, **kwargs))

    mp = pytest.MonkeyPatch()
    mp.setattr(tgi.TGI, "forward", slow_forward)
    try:
        cfg = BenchConfig(device="cpu", size=64, batch=2, warmup=1, repeats=1)
        yield profile_parts(cfg, steps=1)
    finally:
        mp.undo()


def _by_part(rows, model):
    return {r["part"]: r for r in rows if r["model"] == model}


def test_a_known_cost_is_charged_to_its_part_in_forward_and_in_backward(slow_tgi_rows):
    parts = _by_part(slow_tgi_rows, "textscd")
    levels = 3  # TGI runs at levels 1, 2, 3: three sleeps each way per step
    assert parts["tgi"]["fwd_ms"] >= levels * SLEEP_S * 1e3
    assert parts["tgi"]["bwd_ms"] >= levels * SLEEP_S * 1e3
    base = _by_part(slow_tgi_rows, "baseline")
    for name, r in parts.items():  # the sleeps went to no other part (the glue range holds TGI's ranges)
        if name not in ("tgi", "total"):
            assert abs(r["fwd_ms"] - base[name]["fwd_ms"]) < SLEEP_S * 1e3, name
            assert abs(r["bwd_ms"] - base[name]["bwd_ms"]) < SLEEP_S * 1e3, name


def test_every_backward_function_is_matched_to_a_part_and_the_parts_add_up(slow_tgi_rows):
    for model in ("baseline", "textscd"):
        parts = _by_part(slow_tgi_rows, model)
        assert "other" not in parts  # no backward function left unattributed
        assert ("tgi" in parts) == (model == "textscd")
        assert {"encoder", "fuse", "sem_decoder", "change_decoder", "heads", "loss", "optimizer"} <= set(parts)
        assert all(parts[p]["bwd_ms"] > 0 for p in ("encoder", "fuse", "sem_decoder", "heads"))
        assert parts["optimizer"]["update_ms"] > 0
        total = parts.pop("total")
        assert total["ms"] == pytest.approx(sum(r["ms"] for r in parts.values()), abs=0.01)
        assert sum(r["share_pct"] for r in parts.values()) == pytest.approx(100, abs=0.5)
        assert total["wall_ms"] > 0 and total["busy_pct"] > 0
        assert "bound_ms" not in total  # a CPU has no datasheet profile
        # the cost model's FLOPs ride along: the encoder does most of the arithmetic
        assert parts["encoder"]["gflop"] == max(r.get("gflop", 0) for r in parts.values())


def test_format_parts_prints_one_line_per_part_and_the_wall_time(slow_tgi_rows):
    rows = [r for r in slow_tgi_rows if r["model"] == "textscd"]
    text = format_parts(rows)
    for r in rows[:-1]:
        assert f"\n{r['part']:16s}" in text
    assert "wall time of the step" in text and "CPU time on the calling thread" in text


def _cost(gflop, gb, bound_ms):
    return {"fwd_gflop": gflop / 2, "bwd_gflop": gflop / 2, "fwd_gb": gb / 2, "bwd_gb": gb / 2, "bound_ms": bound_ms}


def test_rows_add_the_cost_models_rates_and_the_bound_only_where_the_gpu_has_a_datasheet_profile():
    per_step = {("encoder", "fwd"): 4.0, ("encoder", "bwd"): 6.0, ("optimizer", "update"): 2.0}
    costs = {"encoder": _cost(100.0, 3.0, 5.0), "total": _cost(120.0, 6.0, 6.0)}
    enc, opt, total = _rows("textscd", per_step, wall_ms=24.0, costs=costs, profile_key="h100-sxm")
    assert enc["ms"] == 10.0 and enc["share_pct"] == pytest.approx(83.3, abs=0.1)
    assert enc["gflop_per_s"] == 10000.0 and enc["gb_per_s"] == 300.0 and enc["of_bound_pct"] == 50.0
    assert "bound_ms" not in opt and "gflop" not in opt and opt["update_ms"] == 2.0  # not in the cost model
    assert total["busy_pct"] == 50.0 and total["of_bound_pct"] == 25.0 and total["profile"] == "h100-sxm"
    assert total["gflop_per_s"] == 5000.0  # the step's FLOPs over its wall time
    enc_cpu = _rows("textscd", per_step, wall_ms=24.0, costs=costs, profile_key=None)[0]
    assert "bound_ms" not in enc_cpu and enc_cpu["gflop_per_s"] == 10000.0


@pytest.mark.parametrize("name, key", [("NVIDIA H100 80GB HBM3", "h100-sxm"), ("NVIDIA H100 PCIe", None),
                                       ("NVIDIA H200", "h200"), ("NVIDIA A100-SXM4-80GB", "a100"),
                                       ("NVIDIA GeForce RTX 3090", "rtx3090"), ("Tesla T4", None)])
def test_gpu_names_map_to_the_cost_models_datasheet_profiles(name, key):
    assert _profile_name(name) == key


def test_bench_parts_cli_prints_json_rows_and_the_table(tmp_path):
    cmd = [sys.executable, "-m", "textscd_lib", "bench", "--device", "cpu", "--size", "64", "--batch", "2",
           "--warmup", "1", "--repeats", "1", "--models", "baseline", "--parts", "--no-write"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert {r["case"] for r in rows} == {"part_time"} and rows[-1]["part"] == "total"
    assert "sum of parts" in out.stderr and "gpuGetDeviceCount" not in out.stderr


def test_parts_figure_draws_each_part_once_in_the_cost_models_order(slow_tgi_rows):
    import matplotlib

    matplotlib.use("Agg")
    fig = parts_figure(slow_tgi_rows)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[:3] == ["encoder", "fuse", "tgi"] and labels[-1] == "optimizer" and len(set(labels)) == len(labels)
    assert any("GFLOP/s" in t.get_text() for t in fig.axes[0].texts)


def test_on_cuda_the_clock_is_kernel_time_and_nested_ranges_are_not_counted_twice():
    """The CUDA path on fake profiler events: device (kernel) time, not host time, and a part range nested in
    the glue range is taken out of the glue."""
    from types import SimpleNamespace

    from torch.autograd import DeviceType

    from textscd_lib.perf.step_profile import attribute

    def ev(name, host_us, kernel_us, parent=None, seq=-1, device=DeviceType.CPU):
        return SimpleNamespace(name=name, cpu_time_total=host_us, device_time_total=kernel_us, cpu_parent=parent,
                               sequence_nr=seq, device_type=device)

    glue = ev("part:glue", 1000, 90)
    enc = ev("part:encoder", 700, 60, parent=glue)
    conv = ev("aten::convolution", 600, 60, parent=enc, seq=7)
    cat = ev("aten::cat", 50, 5, parent=glue, seq=8)
    back_conv = ev("autograd::engine::evaluate_function: ConvolutionBackward0", 400, 120, seq=7)
    back_cat = ev("autograd::engine::evaluate_function: CatBackward0", 30, 4, seq=8)
    accumulate = ev("autograd::engine::evaluate_function: torch::autograd::AccumulateGrad", 20, 2)
    opt = ev("part:optimizer", 300, 25)
    kernel = ev("void cudnn::conv_kernel", 0, 60, device=DeviceType.CUDA)  # device-side events are skipped
    got = attribute([glue, enc, conv, cat, back_conv, back_cat, accumulate, opt, kernel], cuda=True)
    assert got == {("glue", "fwd"): 30, ("encoder", "fwd"): 60, ("encoder", "bwd"): 120, ("glue", "bwd"): 4,
                   ("optimizer", "bwd"): 2, ("optimizer", "update"): 25}
    assert attribute([glue, enc, conv], cuda=False) == {("glue", "fwd"): 300, ("encoder", "fwd"): 700}


@pytest.mark.parametrize("flag", ["--compile", "--cuda-graphs"])
def test_bench_parts_refuses_compiled_or_graphed_steps_with_a_clear_message(flag):
    cmd = [sys.executable, "-m", "textscd_lib", "bench", "--device", "cpu", "--size", "64", "--parts", flag,
           "--no-write"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 2 and "--parts profiles the eager step" in out.stderr
