"""Measured time per part of one training step (appendix 08, docs/performance.md; ``textscd bench --parts``).

The cost model (:mod:`textscd_lib.perf.costmodel`) says how fast each part of TextSCD *could* run; this module
says how long it *does* take on this machine. One training step (forward, the loss of eq. (9)-(12),
backward, SGD) runs under ``torch.profiler``; forward hooks open a named range around every top-level part
of the model (``encoder``, ``fuse``, ``tgi``, ``sem_in``, ``sem_decoder``, ``change_decoder``, ``heads``;
what the model's own ``forward`` does between them is ``glue``), the loss and the optimizer get their own
range. Each backward function is charged to the part whose forward operation made it (the profiler's
autograd sequence numbers link the two). The autograd engine's gradient accumulation and the SGD step are
``optimizer``.

The clock is the device's: on CUDA the summed kernel time of each part, on CPU the operations' time on the
calling thread. ``total`` adds the parts and compares them with the step's wall time measured without the
profiler: on a GPU, ``busy_pct`` well under 100 % means the GPU waits for the host (launch and Python
overhead), which CUDA graphs or ``torch.compile`` remove and faster kernels do not. Each part also gets
the cost model's FLOPs and bytes and the rates they imply (``gflop_per_s``, ``gb_per_s``: how well its
kernels use the machine); where the device is one of the cost model's datasheet profiles, also its roofline
bound and ``of_bound_pct``, the bound as a share of the measured time (100 % = an ideal kernel).
"""

from __future__ import annotations

import os
import statistics
import time
from collections import defaultdict
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function

from textscd_lib.perf.costmodel import PART_OF_MODULE, PARTS, step_costs
from textscd_lib.perf.harness import bench_loss, bench_model, device_name, set_fast_path, step_inputs, timed

RANGE = "part:"
STEP_PARTS = (*PARTS, "optimizer")
_ACCUMULATE = "AccumulateGrad"


@contextmanager
def part_ranges(model: nn.Module):
    """Open a profiler range ``part:<name>`` around each top-level part of ``model`` while inside."""
    stack: list[record_function] = []
    handles = []

    def enter(part: str):
        def hook(_module, _args):
            rf = record_function(RANGE + part)
            rf.__enter__()
            stack.append(rf)
        return hook

    def leave(_module, _args, _out):
        if stack:
            stack.pop().__exit__(None, None, None)

    for name, top in model.named_children():
        units = list(top.children()) if isinstance(top, (nn.ModuleList, nn.ModuleDict)) else [top]
        for unit in units:  # containers are never called themselves; their members are
            handles += [unit.register_forward_pre_hook(enter(PART_OF_MODULE.get(name, name))), unit.register_forward_hook(leave)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        while stack:
            stack.pop().__exit__(None, None, None)


def _range_part(event) -> str | None:
    while event is not None:
        if event.name.startswith(RANGE):
            return event.name[len(RANGE):]
        event = event.cpu_parent
    return None


def _phase(part: str) -> str:
    return "update" if part == "optimizer" else "fwd"


def attribute(events, cuda: bool) -> dict[tuple[str, str], float]:
    """Microseconds per ``(part, phase)`` from profiler ``events``: phase "fwd", "bwd", or "update" (the SGD
    step and zero_grad); kernel time on CUDA (``cuda=True``), operation time on the host thread otherwise.
    Unmatched backward functions go to ``other`` (none are expected)."""
    def clock(e) -> float:
        return e.device_time_total if cuda else e.cpu_time_total

    host = [e for e in events if e.device_type == DeviceType.CPU]
    acc: dict[tuple[str, str], float] = defaultdict(float)
    made_by: dict[int, str] = {}
    for e in host:
        if e.name.startswith(RANGE):  # a range's own time: its total less the part ranges nested in it
            part = e.name[len(RANGE):]
            acc[(part, _phase(part))] += clock(e)
            outer = _range_part(e.cpu_parent)
            if outer is not None:
                acc[(outer, _phase(outer))] -= clock(e)
        elif (e.sequence_nr is not None and e.sequence_nr >= 0 and not e.name.startswith("autograd::")
              and e.sequence_nr not in made_by):
            part = _range_part(e)
            if part is not None:
                made_by[e.sequence_nr] = part
    for e in host:
        if e.name.startswith("autograd::engine::evaluate_function"):
            part = "optimizer" if e.name.endswith(_ACCUMULATE) else made_by.get(e.sequence_nr, "other")
            acc[(part, "bwd")] += clock(e)
    return dict(acc)


def _profile_name(device_name: str) -> str | None:
    """The cost model's datasheet profile for a CUDA device name, if it has one."""
    n = device_name.upper()
    if "H100" in n and ("SXM" in n or "HBM3" in n):
        return "h100-sxm"
    for key, prof in (("H200", "h200"), ("A100", "a100"), ("3090", "rtx3090")):
        if key in n:
            return prof
    return None


def profile_parts(cfg, steps: int = 3) -> list[dict]:
    """``textscd bench --parts``: per model in ``cfg.models`` one row per part (forward, backward and total
    ms per step, share) and a ``total`` row (sum of parts, unprofiled wall time, ``busy_pct``). ``cfg`` is a
    :class:`textscd_lib.perf.bench.BenchConfig`; ``steps`` profiled steps are averaged after ``cfg.warmup``."""

    if steps < 1:
        raise ValueError(f"steps={steps}: profile at least one step")
    inp = step_inputs(cfg)
    with set_fast_path(cfg, inp.device):  # cudnn.benchmark as the bench sets it, restored afterwards
        return _profile_models(cfg, inp, steps)


def _profile_models(cfg, inp, steps: int) -> list[dict]:
    """:func:`profile_parts` for each model of ``cfg`` on the step inputs ``inp``."""
    loss_fn = bench_loss(cfg)
    cuda = inp.device.type == "cuda"
    dev_name = device_name(inp.device)
    profile_key = _profile_name(dev_name) if cuda else None
    rows = []
    for kind in cfg.models:
        model, opt = bench_model(kind, cfg, inp)

        def step(model=model, opt=opt):
            with inp.autocast():
                with record_function(RANGE + "glue"):
                    out = model(inp.x1, inp.x2, inp.f_text, inp.mask)
                with record_function(RANGE + "loss"):
                    loss, _ = loss_fn(out, inp.batch, as_float=False)
            loss.backward()
            with record_function(RANGE + "optimizer"):
                opt.step()
                opt.zero_grad(set_to_none=True)

        wall = statistics.median(timed(step, inp.device, cfg.warmup, cfg.repeats))
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        # Kineto's own log: on CPU it only says "gpuGetDeviceCount failed" and "profiler_start"; on CUDA keep
        # its errors (a missing CUPTI shows there). KINETO_LOG_LEVEL set by the user wins.
        os.environ.setdefault("KINETO_LOG_LEVEL", "5" if cuda else "6")
        with part_ranges(model), profile(activities=activities) as prof:
            for _ in range(steps):
                step()
            if cuda:
                torch.cuda.synchronize(inp.device)
        per_step = {k: v / steps / 1e3 for k, v in attribute(prof.events(), cuda).items()}  # µs -> ms
        if cuda and sum(per_step.values()) <= 0:
            raise RuntimeError("torch.profiler recorded no GPU kernel time (is CUPTI available to this process?); "
                               "--parts needs it on CUDA")
        dtype = torch.bfloat16 if inp.bf16 else torch.float32
        costs = {r["part"]: r for r in step_costs(kind, cfg.size, cfg.batch, profile_key or "h100-sxm", dtype,
                                                     tail=getattr(cfg, "tail", "paper"))}
        rows += _rows(kind, per_step, wall * 1e3, costs, profile_key)
        del model, opt
    common = {"case": "part_time", "device": dev_name, "size": cfg.size, "batch": cfg.batch,
              "precision": "bf16" if inp.bf16 else "fp32", "channels_last": inp.channels_last,
              "clock": "GPU kernel time" if cuda else "CPU time on the calling thread", "profiled_steps": steps,
              "torch": torch.__version__, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "tail": getattr(cfg, "tail", "paper"), "fast_cosine": getattr(cfg, "fast_cosine", False)}
    return [{**common, **r} for r in rows]


def _rows(kind: str, per_step: dict[tuple[str, str], float], wall_ms: float, costs: dict[str, dict],
          profile_key: str | None) -> list[dict]:
    """Rows of one model: measured ms per phase, share, the cost model's GFLOP and GB with the achieved rates,
    and (only with ``profile_key``, a datasheet that matches the device) the roofline bound."""
    present = {p for p, _ in per_step}
    parts = [p for p in STEP_PARTS if p in present] + sorted(present - set(STEP_PARTS))
    total = sum(per_step.values())

    def counted(p: str, ms: float) -> dict:
        if p not in costs:  # the optimizer: the cost model counts forward, loss and backward only
            return {}
        c = costs[p]
        gflop, gb = c["fwd_gflop"] + c["bwd_gflop"], c["fwd_gb"] + c["bwd_gb"]
        out = {"gflop": round(gflop, 3), "gb": round(gb, 3),
               "gflop_per_s": round(gflop / ms * 1e3, 1) if ms and gflop else None,  # None: no FLOPs to rate
               "gb_per_s": round(gb / ms * 1e3, 1) if ms else None}
        if profile_key:
            out.update(bound_ms=c["bound_ms"], of_bound_pct=round(100 * c["bound_ms"] / ms, 1) if ms else None)
        return out

    rows = []
    for p in parts:
        fwd, bwd, upd = (per_step.get((p, ph), 0.0) for ph in ("fwd", "bwd", "update"))
        ms = fwd + bwd + upd
        rows.append({"model": kind, "part": p, "fwd_ms": round(fwd, 3), "bwd_ms": round(bwd, 3),
                     "update_ms": round(upd, 3), "ms": round(ms, 3),
                     "share_pct": round(100 * ms / total, 1) if total else 0.0, **counted(p, ms)})
    last = {"model": kind, "part": "total", "ms": round(total, 3), "wall_ms": round(wall_ms, 3),
            "busy_pct": round(100 * total / wall_ms, 1), **counted("total", wall_ms)}
    if profile_key:
        last["profile"] = profile_key
    return rows + [last]


def format_parts(rows: list[dict]) -> str:
    """A plain-text table of one model's :func:`profile_parts` rows (what ``textscd bench --parts`` prints)."""
    head, last = rows[0], rows[-1]
    bound = "bound_ms" in last
    lines = [f"{head['model']}: one training step, {head['batch']} pairs of {head['size']}², {head['precision']} on "
             f"{head['device']} · clock: {head['clock']}",
             f"{'part':15s} {'fwd ms':>8s} {'bwd ms':>8s} {'upd ms':>7s} {'ms':>8s} {'share':>6s} {'GFLOP/s':>8s} "
             f"{'GB/s':>7s}" + (f" {'bound ms':>8s} {'of bound':>8s}" if bound else "")]

    def rate(r, key, width):
        return f"{r[key]:{width}.1f}" if r.get(key) is not None else f"{'–':>{width}s}"

    for r in rows[:-1]:
        line = (f"{r['part']:15s} {r['fwd_ms']:8.2f} {r['bwd_ms']:8.2f} {r['update_ms']:7.2f} {r['ms']:8.2f} "
                f"{r['share_pct']:5.1f}% {rate(r, 'gflop_per_s', 8)} {rate(r, 'gb_per_s', 7)}")
        if bound and "bound_ms" in r:
            line += f" {r['bound_ms']:8.2f} {r['of_bound_pct'] or 0:7.1f}%"
        lines.append(line)
    lines.append(f"{'sum of parts':15s} {'':25s} {last['ms']:8.2f}   wall time of the step (unprofiled): "
                 f"{last['wall_ms']:.2f} ms · busy {last['busy_pct']:.0f}% · {rate(last, 'gflop_per_s', 1)} GFLOP/s")
    if bound:
        lines.append(f"roofline bound ({last['profile']}): {last['bound_ms']:.2f} ms = {last['of_bound_pct']:.0f}% "
                     f"of the wall time")
    return "\n".join(lines)


def parts_figure(rows: list[dict]):
    """Measured ms per part for each model in ``rows`` (forward, backward, update stacked), each bar labelled
    with the GFLOP/s its kernels achieved (chapter 05, "Where this machine's step time goes")."""
    import matplotlib.pyplot as plt

    kinds = list(dict.fromkeys(r["model"] for r in rows))
    present = {r["part"] for r in rows if r["part"] != "total"}
    parts = [p for p in STEP_PARTS if p in present] + sorted(present - set(STEP_PARTS))
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(parts) + 1.6))
    height = 0.8 / len(kinds)
    y = np.arange(len(parts))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, kind in enumerate(kinds):
        by_part = {r["part"]: r for r in rows if r["model"] == kind}
        left = np.zeros(len(parts))
        for phase, alpha in (("fwd", 1.0), ("bwd", 0.55), ("update", 0.3)):
            ms = np.array([by_part[p][f"{phase}_ms"] if p in by_part else 0.0 for p in parts])
            ax.barh(y + k * height, ms, height, left=left, color=colours[k], alpha=alpha,
                    label=f"{kind} · {phase}")
            left += ms
        for i, p in enumerate(parts):
            rate = by_part.get(p, {}).get("gflop_per_s")
            if rate:
                ax.text(left[i], y[i] + k * height, f" {rate:.0f} GFLOP/s", va="center", fontsize=7)
    ax.set_yticks(y + height * (len(kinds) - 1) / 2, parts)
    ax.invert_yaxis()
    ax.set_xlim(0, ax.get_xlim()[1] * 1.18)  # room for the labels
    head = rows[0]
    ax.set_xlabel(f"measured ms per training step ({head['batch']} pairs of {head['size']}², {head['precision']}; "
                  f"{head['clock']})")
    ax.set_title(f"Where this machine's step time goes · {head['device']}", fontsize=9)
    ax.legend(fontsize=7, loc="lower right", ncol=len(kinds))
    fig.tight_layout()
    return fig
