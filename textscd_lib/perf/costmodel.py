"""Where a training step's time goes, without a GPU: FLOPs and bytes moved per part of TextSCD (chapter 05,
docs/performance.md, appendix 08; ``textscd bench --cost``).

A GPU step of this model is bounded by two things per kernel: arithmetic (FLOPs / peak FLOP/s) and memory
traffic (bytes read + written / bandwidth). This module runs one training step -- forward, the loss of
eq. (9)-(12) and backward -- on PyTorch's ``meta`` device (shapes only, no arithmetic, seconds on any
machine) and counts, for every ATen operation, its FLOPs (``torch.utils.flop_counter``'s formulas) and the
bytes of its tensor inputs and outputs. Each operation is charged to the part of the model that made it:
``encoder`` (eq. 3-4), ``fuse`` (eq. 6), ``tgi`` (eq. 7), ``sem_in``, ``sem_decoder`` / ``change_decoder``
(eq. 8), ``heads``, ``loss``; backward operations are charged to the part whose forward made them.

The *roofline bound* of a part is ``sum over its ops of max(FLOPs / peak, bytes / bandwidth)``: the time of
ideal kernels at the datasheet's peak, so a real step is slower (kernels below peak, BatchNorm and ReLU as
separate passes, launch and Python overhead). It answers "how fast could this architecture go at best, and
which part would a change have to touch?", not "how fast is it". Counts are estimates of traffic: caches,
fused kernels and cuDNN's workspace change the real numbers.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry
from torch.utils.module_tracker import ModuleTracker

from textscd_lib.models.losses import total_loss
from textscd_lib.models.textscd import build_model

PARTS = ("encoder", "fuse", "tgi", "sem_in", "glue", "sem_decoder", "change_decoder", "heads", "loss")
PART_OF_MODULE = {"sem_head": "heads", "change_head": "heads"}  # top-level modules whose part has another name
# operations that move no data (views, metadata, allocation)
_FREE = {"view", "_unsafe_view", "t", "transpose", "permute", "expand", "slice", "select", "unsqueeze",
         "squeeze", "reshape", "as_strided", "detach", "alias", "split", "split_with_sizes", "chunk", "unbind",
         "empty", "empty_like", "empty_strided", "new_empty_strided", "lift_fresh", "_reshape_alias"}


@dataclass(frozen=True)
class DeviceProfile:
    """Datasheet peaks of one accelerator (dense bf16 tensor-core FLOP/s, memory bandwidth)."""
    name: str
    peak_tflops: float
    bandwidth_tbs: float


PROFILES = {
    "h100-sxm": DeviceProfile("NVIDIA H100 SXM (datasheet: 989 TFLOP/s bf16 dense, 3.35 TB/s HBM3)", 989.0, 3.35),
    "h200": DeviceProfile("NVIDIA H200 (datasheet: 989 TFLOP/s bf16 dense, 4.8 TB/s HBM3e)", 989.0, 4.8),
    "a100": DeviceProfile("NVIDIA A100 SXM 80GB (datasheet: 312 TFLOP/s bf16 dense, 2.04 TB/s)", 312.0, 2.04),
    "rtx3090": DeviceProfile("NVIDIA RTX 3090, the paper's GPU (datasheet: 71 TFLOP/s bf16 dense, 0.94 TB/s)",
                             71.0, 0.936),
}


def _nbytes(x) -> int:
    if isinstance(x, torch.Tensor):
        return x.numel() * x.element_size()
    if isinstance(x, (list, tuple)):
        return sum(_nbytes(y) for y in x)
    return 0


def _part(tracker: ModuleTracker) -> str:
    """The model part of the innermost module now running, from ModuleTracker's names ("TextSCD.tgi.1...")."""
    names = [p for p in tracker.parents if p != "Global"]
    if not names:
        return "loss"
    dotted = [p for p in names if "." in p]
    if not dotted:
        return "glue"  # the model's own forward: concatenations, slicing
    top = max(dotted, key=len).split(".")[1]
    return PART_OF_MODULE.get(top, top)


class _Tagger(TorchFunctionMode):
    """Above autograd: tag each new autograd node with the part that made it (for the backward's charge)."""

    def __init__(self, tracker: ModuleTracker) -> None:
        super().__init__()
        self.tracker = tracker

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        part = None
        for t in out if isinstance(out, (list, tuple)) else (out,):
            if isinstance(t, torch.Tensor) and t.grad_fn is not None:
                part = part or _part(self.tracker)
                _tag(t.grad_fn, part)
        return out


def _tag(node, part: str) -> None:
    """Tag ``node`` and the untagged nodes behind it (a composite op such as attention makes several)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if n is None or "part" in n.metadata:
            continue
        n.metadata["part"] = part
        stack.extend(nxt for nxt, _ in n.next_functions)


class _Counter(TorchDispatchMode):
    """Below autograd: count FLOPs and bytes of every ATen op, per (part, phase)."""

    def __init__(self, tracker: ModuleTracker) -> None:
        super().__init__()
        self.tracker = tracker
        self.ops: list[tuple[str, str, int, int]] = []  # (part, phase, flops, bytes)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func.__name__.split(".")[0] in _FREE:
            return out
        flops = 0
        if func._overloadpacket in flop_registry:
            try:
                flops = int(flop_registry[func._overloadpacket](*args, **kwargs, out_val=out))
            except TypeError:  # a formula that does not take these arguments: count bytes only
                flops = 0
        moved = _nbytes(list(args)) + _nbytes(list(kwargs.values())) + _nbytes(out)
        node = torch._C._current_autograd_node()
        if node is not None:
            part, phase = node.metadata.get("part", "loss"), "backward"
        else:
            part, phase = _part(self.tracker), "forward"
        self.ops.append((part, phase, flops, moved))
        return out


def step_ops(kind: str = "textscd", size: int = 512, batch: int = 8, dtype: torch.dtype = torch.bfloat16,
             text_dim: int = 512, width: int = 128, tail: str = "paper") -> list[tuple[str, str, int, int]]:
    """Every ATen op of one training step (forward, loss, backward) on the meta device:
    ``(part, phase, flops, bytes)``. ``dtype`` is the activations' (bf16 = the GPU fast path); the loss
    computes in fp32 as in training. ``tail``: the decoders' tail (``textscd_lib.models.textscd.TAILS``)."""

    with torch.device("meta"):
        model = build_model(kind, text_dim=text_dim, weights=None, width=width, tail=tail)
    model = model.to(dtype=dtype, memory_format=torch.channels_last).train()
    x1 = torch.empty(batch, 3, size, size, device="meta", dtype=dtype).to(memory_format=torch.channels_last)
    x2 = torch.empty_like(x1)
    f_text = torch.empty(batch, 50, text_dim, device="meta", dtype=dtype)
    mask = torch.ones(batch, 50, dtype=torch.bool, device="meta")
    label = torch.zeros(batch, size, size, dtype=torch.long, device="meta")
    target = {"label1": label, "label2": label, "change": torch.zeros(batch, size, size, device="meta")}
    tracker = ModuleTracker()
    with tracker, _Tagger(tracker), _Counter(tracker) as counter:
        out = model(x1, x2, f_text, mask)
        loss, _ = total_loss(out, target, as_float=False)
    with _Counter(tracker) as back:
        loss.backward()
    return counter.ops + back.ops


def step_costs(kind: str = "textscd", size: int = 512, batch: int = 8, profile: str = "h100-sxm",
               dtype: torch.dtype = torch.bfloat16, tail: str = "paper") -> list[dict]:
    """One row per part (and a ``total`` row): forward / backward FLOPs and bytes, op count, and the
    roofline bound in ms on ``profile`` (see the module docstring: a bound, not a prediction). The profiles
    hold bf16 tensor-core peaks, the GPU fast path's precision; with ``dtype=float32`` bytes double and the FLOP
    side of the bound is optimistic."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose from {sorted(PROFILES)}")
    prof = PROFILES[profile]
    peak, bw = prof.peak_tflops * 1e12, prof.bandwidth_tbs * 1e12
    acc: dict[str, dict] = defaultdict(lambda: {"fwd_gflop": 0.0, "bwd_gflop": 0.0, "fwd_gb": 0.0, "bwd_gb": 0.0,
                                                "ops": 0, "bound_ms": 0.0})
    for part, phase, flops, moved in step_ops(kind, size, batch, dtype, tail=tail):
        a = acc[part]
        p = "fwd" if phase == "forward" else "bwd"
        a[f"{p}_gflop"] += flops / 1e9
        a[f"{p}_gb"] += moved / 1e9
        a["ops"] += 1
        a["bound_ms"] += max(flops / peak, moved / bw) * 1e3
    order = [p for p in PARTS if p in acc] + sorted(set(acc) - set(PARTS))
    total = {k: sum(acc[p][k] for p in order) for k in ("fwd_gflop", "bwd_gflop", "fwd_gb", "bwd_gb", "ops",
                                                        "bound_ms")}
    precision = {torch.bfloat16: "bf16", torch.float32: "fp32"}.get(dtype, str(dtype))
    common = {"case": "cost_model", "model": kind, "size": size, "batch": batch, "precision": precision,
              "profile": profile, "profile_name": prof.name, "tail": tail}
    rows = []
    for part, a in [*((p, acc[p]) for p in order), ("total", total)]:
        row = {**common, "part": part, **{k: round(v, 3) if isinstance(v, float) else v for k, v in a.items()},
               "share_pct": round(100 * a["bound_ms"] / total["bound_ms"], 1)}
        if part == "total":
            row["bound_pairs_per_s"] = round(batch / (total["bound_ms"] / 1e3), 1)
        rows.append(row)
    return rows


def format_costs(rows: list[dict]) -> str:
    """A plain-text table of :func:`step_costs` rows (what ``textscd bench --cost`` prints)."""
    head = rows[0]
    lines = [f"{head['model']}: one training step, {head['batch']} pairs of {head['size']}², {head['precision']}; "
             f"roofline bound on {head['profile_name']}",
             f"{'part':16s} {'fwd GFLOP':>10s} {'bwd GFLOP':>10s} {'fwd GB':>8s} {'bwd GB':>8s} {'ops':>6s} "
             f"{'bound ms':>9s} {'share':>6s}"]
    for r in rows:
        lines.append(f"{r['part']:16s} {r['fwd_gflop']:10.1f} {r['bwd_gflop']:10.1f} {r['fwd_gb']:8.2f} "
                     f"{r['bwd_gb']:8.2f} {r['ops']:6d} {r['bound_ms']:9.2f} {r['share_pct']:5.1f}%")
    lines.append(f"bound: {rows[-1]['bound_pairs_per_s']:.0f} pairs/s at best (ideal kernels at datasheet peak)")
    if head["precision"] != "bf16":
        lines.append("note: the profiles hold bf16 tensor-core peaks; for fp32 the FLOP side of the bound is optimistic")
    return "\n".join(lines)


def cost_figure(costs: dict[str, list[dict]]):
    """Bars of each part's roofline bound (ms per step) for every model in ``costs`` (``{kind: step_costs
    rows}``), with the bound in pairs/s in the legend (chapter 05, "Where a GPU step's time goes")."""
    import matplotlib.pyplot as plt

    kinds = list(costs)
    parts = [p for p in PARTS if any(r["part"] == p for rows in costs.values() for r in rows)]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(parts) + 1.6))
    height = 0.8 / len(kinds)
    y = np.arange(len(parts))
    for k, kind in enumerate(kinds):
        by_part = {r["part"]: r for r in costs[kind]}
        ms = [by_part[p]["bound_ms"] if p in by_part else 0.0 for p in parts]
        total = by_part["total"]
        ax.barh(y + k * height, ms, height, label=f"{kind}: {total['bound_ms']:.1f} ms per step → at best "
                                                  f"{total['bound_pairs_per_s']:.0f} pairs/s")
    ax.set_yticks(y + height * (len(kinds) - 1) / 2, parts)
    ax.invert_yaxis()
    head = next(iter(costs.values()))[0]
    ax.set_xlabel(f"roofline bound, ms per training step ({head['batch']} pairs of {head['size']}², {head['precision']})")
    ax.set_title(f"Where a training step's time goes at best · {head['profile_name']}", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig
