"""Benchmarks: ``textscd bench`` (appendix 08 and docs/performance.md).

One JSON line per case — train-step and inference throughput (pairs/s) for Baseline and TextSCD, peak memory,
FLOPs per step (``torch.utils.flop_counter``) and achieved TFLOP/s, TGI overhead against Baseline, and data
loading from PNG vs the decoded cache — printed, and appended to ``results/benchmarks/<device>.jsonl`` only when
asked (``write=True``, ``textscd bench --record``): that folder is the committed record of measured machines, and
a toy-size run must not add to it by accident.
Warm-up steps are excluded, the device is synchronised before each timer, and the median of repeats is kept.

Every row records the fast-path switches it ran with (``docs/performance.md``): the decoder ``tail``,
``cudnn_benchmark``, ``mask_once`` (TGI), ``host_syncs`` (the old step's ``.tolist()`` of the loss parts, and with
``--pipeline`` the per-batch index copy of the text lookup) and ``fast_cosine`` (L_sim), so a change is measured
by two runs that differ in one switch. The old paths are built in :mod:`textscd_lib.perf.variants`; the model
and the loss keep only their own. ``--pipeline`` adds ``train_step_pipeline``: the
step fed by the trainer's own batches (a device-resident uint8 set, augmentation on the device, the text
features looked up by index), i.e. what the trainer runs per step.
"""

from __future__ import annotations

import json
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from textscd_lib.common.device import pick_device
from textscd_lib.common.paths import resolve
from textscd_lib.engine.batches import BatchSource, Normalizer
from textscd_lib.engine.inference import forward_batch
from textscd_lib.models.textscd import TAILS, count_parameters
from textscd_lib.perf.costmodel import step_costs
from textscd_lib.perf.harness import (
    BenchConfig,
    _slug,
    bench_loss,
    bench_model,
    device_name,
    set_fast_path,
    step_inputs,
    timed,
)
from textscd_lib.perf.loading import loading_benchmark
from textscd_lib.perf.step_profile import profile_parts


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (Linux: KiB)


def _flops(fn: Callable[[], None]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _graphed(step: Callable[[], None], zero_grad: Callable[[], None] | None = None) -> Callable[[], None]:
    """``step`` captured once as a CUDA graph; returns its replay (PyTorch's whole-network capture recipe:
    warm-up on a side stream, gradients set to None before capture so the graph owns them). Static inputs:
    the bench's tensors never change, so replaying is the whole step without Python or launch overhead."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            if zero_grad:
                zero_grad()
            step()
    torch.cuda.current_stream().wait_stream(side)
    if zero_grad:
        zero_grad()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph.replay


def _pipeline_step(cfg: BenchConfig, inp, model, opt) -> Callable[[], None]:
    """One trainer step fed by the trainer's batches: a device-resident uint8 set of 4 batches (random),
    augmented on the device, the text features looked up by index (``--pipeline``)."""
    g = np.random.default_rng(0)
    n, s = 4 * cfg.batch, cfg.size
    images = g.integers(0, 256, (n, 2, s, s, 3), dtype=np.uint8)
    labels = g.integers(0, 7, (n, 2, s, s), dtype=np.uint8)
    labels[:, 1] = np.where(labels[:, 0] > 0, labels[:, 1], 0)
    norm = Normalizer.create([[128.0] * 3, [64.0] * 3] * 2, inp.device)
    src = BatchSource(images, labels, inp.device, norm, resident=True, channels_last=inp.channels_last)
    feats = (inp.f_text[:1].expand(n, -1, -1).contiguous(), inp.mask[:1].expand(n, -1).contiguous())
    aug = torch.Generator().manual_seed(0)
    loss_fn = bench_loss(cfg)
    order = [np.arange(i, i + cfg.batch) for i in range(0, n, cfg.batch)]
    stream = iter(())

    def step():
        nonlocal stream
        batch = next(stream, None)
        if batch is None:
            stream = src.batches(order, aug)
            batch = next(stream)
        if cfg.host_syncs:
            batch.pop("idx_t")  # the old lookup: indices copied from the host every step
        out = forward_batch(model, batch, feats, inp.autocast())
        loss, _ = loss_fn(out, batch, as_float=cfg.host_syncs)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def model_cases(cfg: BenchConfig) -> list[dict]:
    """Train-step and inference throughput of each model on random inputs of the configured shape, with the
    process-wide switches of ``cfg`` set for the measurement only."""
    inp = step_inputs(cfg)
    with set_fast_path(cfg, inp.device) as flags:
        rows = [row for kind in cfg.models for row in _model_rows(kind, cfg, inp)]
    base = {r["case"]: r for r in rows if r["model"] == "baseline"}
    for r in rows:
        if r["model"] == "textscd" and r["case"] in base:
            r["tgi_overhead_pct"] = round(100 * (r["step_ms_median"] / base[r["case"]]["step_ms_median"] - 1), 1)
    common = {"device": device_name(inp.device), "size": cfg.size, "batch": cfg.batch,
              "precision": "bf16" if inp.bf16 else "fp32", "channels_last": inp.channels_last,
              "compile": cfg.compile, "torch": torch.__version__, **flags}
    return [{**common, **r} for r in rows]


def _step_functions(cfg: BenchConfig, inp, fwd, opt) -> dict[str, Callable[[], None]]:
    """The timed calls of one model: the train step, inference, and their CUDA-graph-capturable forms."""
    x1, x2, f_text, mask, batch = inp.x1, inp.x2, inp.f_text, inp.mask, inp.batch
    loss_fn = bench_loss(cfg)

    def autocast():
        return inp.autocast(cache_enabled=not cfg.cuda_graphs)

    def train_step():
        with autocast():
            loss, _ = loss_fn(fwd(x1, x2, f_text, mask), batch, as_float=cfg.host_syncs)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def infer():
        with torch.inference_mode(), autocast():
            fwd(x1, x2, f_text, mask)

    def graph_step():  # no zero_grad inside: the captured backward overwrites .grad
        with autocast():
            loss, _ = loss_fn(fwd(x1, x2, f_text, mask), batch, as_float=False)  # no sync
        loss.backward()
        opt.step()

    def graph_infer():
        with torch.no_grad(), autocast():
            fwd(x1, x2, f_text, mask)

    return {"train": train_step, "infer": infer, "graph_step": graph_step, "graph_infer": graph_infer}


def _model_rows(kind: str, cfg: BenchConfig, inp) -> list[dict]:
    """The timed rows of one model (train step, inference, and the optional pipeline and CUDA-graph cases)."""
    device, b = inp.device, cfg.batch
    model, opt = bench_model(kind, cfg, inp)
    total, trainable = count_parameters(model)
    fwd = torch.compile(model) if cfg.compile else model
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    fns = _step_functions(cfg, inp, fwd, opt)
    t_train = timed(fns["train"], device, cfg.warmup, cfg.repeats)
    peak = _peak_memory_mb(device)
    flops_train = _flops(fns["train"])
    cases = [("train_step", t_train, flops_train)]
    if cfg.pipeline:
        cases.append(("train_step_pipeline", timed(_pipeline_step(cfg, inp, fwd, opt), device, cfg.warmup,
                                                    cfg.repeats), flops_train))
    if cfg.cuda_graphs:
        replay = _graphed(fns["graph_step"], lambda: opt.zero_grad(set_to_none=True))
        cases.append(("train_step_cuda_graph", timed(replay, device, cfg.warmup, cfg.repeats), flops_train))
    model.eval()
    cases.append(("inference", timed(fns["infer"], device, cfg.warmup, cfg.repeats), None))
    if cfg.cuda_graphs:
        cases.append(("inference_cuda_graph", timed(_graphed(fns["graph_infer"]), device, cfg.warmup,
                                                    cfg.repeats), None))
    rows = []
    for case, times, flops in cases:
        med = statistics.median(times)
        row = {"case": case, "model": kind, "pairs_per_s": round(b / med, 2),
               "step_ms_median": round(med * 1e3, 2), "step_ms_min": round(min(times) * 1e3, 2),
               "params_total": total, "params_trainable": trainable}
        if flops:
            row.update(flops_per_step=flops, tflops_per_s=round(flops / med / 1e12, 3),
                       peak_memory_mb=round(peak, 1))
        rows.append(row)
    return rows


def loading_cases(cfg: BenchConfig) -> list[dict]:
    """Data loading from PNG vs the decoded uint8 cache (chapter 01)."""
    if not cfg.data_root:
        return []

    rep = loading_benchmark(resolve(cfg.data_root), split="train")
    return [{"case": "data_loading", "device": "cpu", **rep}]


def check_config(cfg: BenchConfig) -> None:
    """Reject settings the model cannot run (before any timing starts)."""
    if cfg.cuda_graphs and pick_device(cfg.device).type != "cuda":
        raise ValueError("--cuda-graphs needs a CUDA device (CUDA graphs replay GPU kernels); "
                         f"--device {cfg.device} resolves to {pick_device(cfg.device)}")
    if cfg.compile and pick_device(cfg.device).type != "cuda":
        raise ValueError("--compile is timed on CUDA only (on a CPU torch.compile needs a C++ toolchain and "
                         f"minutes of compiling); --device {cfg.device} resolves to {pick_device(cfg.device)}")
    if cfg.tail not in TAILS:
        raise ValueError(f"--tail {cfg.tail!r}: choose from {', '.join(TAILS)}")
    if cfg.size < 64 or cfg.size % 32:
        raise ValueError(f"--size {cfg.size}: use a multiple of 32, at least 64 (the encoder's stride is 32)")
    if cfg.batch < 1 or cfg.repeats < 1 or cfg.warmup < 0:
        raise ValueError(f"--batch {cfg.batch} / --repeats {cfg.repeats} / --warmup {cfg.warmup}: need ≥ 1 / ≥ 1 / ≥ 0")
    if cfg.data_root and not resolve(cfg.data_root).is_dir():
        raise FileNotFoundError(f"--data {cfg.data_root}: no such dataset folder")


def run_bench(cfg: BenchConfig, write: bool = False) -> list[dict]:
    """Every timed case of ``cfg``; appended to ``results/benchmarks/<device>.jsonl`` only with ``write``."""
    check_config(cfg)
    rows = model_cases(cfg) + loading_cases(cfg)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    rows = [{"time": stamp, **r} for r in rows]
    if write:
        _append(rows, resolve(cfg.out_dir) / f"{_slug(rows[0]['device'] if rows else 'cpu')}.jsonl")
    return rows


def run_parts(cfg: BenchConfig, steps: int = 3, write: bool = False) -> list[dict]:
    """``textscd bench --parts``: :func:`textscd_lib.perf.step_profile.profile_parts` (measured time per model
    part), appended to ``results/benchmarks/<device>.jsonl`` as ``part_time`` rows with ``write``."""

    if cfg.compile or cfg.cuda_graphs:
        raise ValueError("--parts profiles the eager step part by part; torch.compile and CUDA graphs fuse or replay "
                         "the parts as one, so drop --compile / --cuda-graphs (time those with plain `textscd bench`)")
    check_config(cfg)
    rows = profile_parts(cfg, steps=steps)
    if write and rows:
        _append(rows, resolve(cfg.out_dir) / f"{_slug(rows[0]['device'])}.jsonl")
    return rows


def _append(rows: list[dict], path: Path) -> None:
    """Append JSON lines (a benchmark log only grows; each line is written whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)


def run_cost(cfg: BenchConfig, profile: str = "h100-sxm", write: bool = False) -> list[dict]:
    """``textscd bench --cost``: :func:`textscd_lib.perf.costmodel.step_costs` for each model (no timing, any
    machine), appended to ``results/benchmarks/cost-model.jsonl`` with ``write``."""

    if cfg.size < 64 or cfg.size % 32 or cfg.batch < 1:
        raise ValueError(f"--size {cfg.size} / --batch {cfg.batch}: use a multiple of 32 (≥ 64) and a batch ≥ 1")
    dtype = torch.float32 if cfg.precision == "fp32" else torch.bfloat16  # the GPU fast path unless asked
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    rows = [{"time": stamp, **r} for kind in cfg.models
            for r in step_costs(kind, cfg.size, cfg.batch, profile=profile, dtype=dtype, tail=cfg.tail)]
    if write:
        _append(rows, resolve(cfg.out_dir) / "cost-model.jsonl")
    return rows

