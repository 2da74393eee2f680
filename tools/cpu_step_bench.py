"""Seconds per training step of the demo's setting on the CPU (TextSCD and Baseline, batch 8, 128²): the
library's model, losses (eq. (12) + CE) and SGD as the trainer builds them, in fp32, bf16 autocast
(``torch.autocast("cpu", dtype=torch.bfloat16)``), channels_last, and both. Variants are interleaved
(each repeat times every variant once) so a change of the shared machine's load hits them alike. ``--compile``
adds ``torch.compile`` (inductor, which needs a C++ compiler on the CPU) in fp32 and under bf16; its compile time
is reported apart and left out of the step time.
Appends one JSON line to results/benchmarks/cpu-step.jsonl with the machine (lscpu model name, whether the
CPU has avx512_bf16 / amx_bf16) and the load average before and after.

    OMP_NUM_THREADS=1 python tools/cpu_step_bench.py --repeats 3
    OMP_NUM_THREADS=1 python tools/cpu_step_bench.py --compile --variants compile --models textscd   # one compile
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "results" / "benchmarks" / "cpu-step.jsonl"
VARIANTS = {"fp32": (False, False), "bf16": (True, False), "channels_last": (False, True), "bf16+cl": (True, True)}
COMPILED = {"compile": (False, False, True), "bf16+compile": (True, False, True)}


def machine() -> dict:
    """CPU model, bf16 flags, cores, torch version."""
    text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    info = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    flags = info.get("Flags", "").split()
    return {"cpu": info.get("Model name", "?").strip(), "avx512_bf16": "avx512_bf16" in flags,
            "amx_bf16": "amx_bf16" in flags, "cpus": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "python": platform.python_version()}


def make_step(kind: str, bf16: bool, channels_last: bool, compiled: bool = False, batch: int = 8, size: int = 128,
              text_dim: int = 512):
    """A zero-argument function doing one training step (forward, loss, backward, SGD step) on fixed random
    inputs; the model is built as the trainer builds it (random init: no weight download)."""
    from textscd_lib.models.losses import total_loss
    from textscd_lib.models.textscd import build_model
    torch.manual_seed(0)
    model = build_model(kind, text_dim=text_dim, weights=None).train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    forward = torch.compile(model) if compiled else model
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x1, x2 = (torch.randn(batch, 3, size, size).contiguous(memory_format=fmt) for _ in range(2))
    lab = {k: torch.randint(0, 7, (batch, size, size)) for k in ("label1", "label2")}
    b = {**lab, "change": (lab["label1"] > 0).float()}
    text = (torch.randn(batch, 50, text_dim), torch.arange(50).expand(batch, 50) < 12) if kind == "textscd" else ()

    def step():
        opt.zero_grad(set_to_none=True)
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with ctx:
            out = forward(x1, x2, *text)
        loss, _ = total_loss({k: v.float() for k, v in out.items()}, b, as_float=False)
        loss.backward()
        opt.step()
    return step


def bench(kinds, repeats: int, steps: int, variants: dict, size: int) -> tuple[dict, dict]:
    """``({kind: {variant: [seconds per step of each repeat]}}, {kind: {variant: warm-up seconds}})``, variants
    interleaved; the warm-up step (where torch.compile compiles) is timed apart."""
    runs = {k: {v: make_step(k, *flags, size=size) for v, flags in variants.items()} for k in kinds}
    warm = {k: {} for k in kinds}
    for k in kinds:
        for v, fn in runs[k].items():
            t0 = time.perf_counter()
            fn()
            warm[k][v] = time.perf_counter() - t0
    times = {k: {v: [] for v in variants} for k in kinds}
    for _ in range(repeats):
        for k in kinds:
            for v, fn in runs[k].items():
                t0 = time.perf_counter()
                for _ in range(steps):
                    fn()
                times[k][v].append((time.perf_counter() - t0) / steps)
    return times, warm


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=2, help="steps per timed repeat")
    p.add_argument("--no-record", action="store_true")
    p.add_argument("--compile", action="store_true", help="add torch.compile variants (fp32 and bf16)")
    p.add_argument("--size", type=int, default=128, help="tile size (128: the demo's; smaller for a quick check)")
    p.add_argument("--note", default="", help="what else ran on the machine (recorded)")
    p.add_argument("--variants", default=None,
                   help="comma-separated subset of the variants to time (fp32 is always kept: the reference)")
    p.add_argument("--models", default="textscd,baseline", help="comma-separated: textscd, baseline")
    args = p.parse_args(argv)
    load0 = os.getloadavg()
    variants = {**{v: (*f, False) for v, f in VARIANTS.items()}, **(COMPILED if args.compile else {})}
    if args.variants:
        wanted = {"fp32", *args.variants.split(",")}
        unknown = wanted - set(variants)
        if unknown:
            p.error(f"unknown variant(s) {sorted(unknown)}; known: {', '.join(variants)} (compile ones need --compile)")
        variants = {v: f for v, f in variants.items() if v in wanted}
    models = tuple(args.models.split(","))
    if not set(models) <= {"textscd", "baseline"}:
        p.error(f"--models: {args.models!r}; choose from textscd, baseline")
    times, warm = bench(models, args.repeats, args.steps, variants, args.size)
    summary = {k: {v: {"s_per_step": statistics.median(t), "all": t,
                       "speed_vs_fp32": statistics.median(tv["fp32"]) / statistics.median(t),
                   "warmup_s": warm[k][v]}
                   for v, t in tv.items()} for k, tv in times.items()}
    row = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(),
           "setting": f"batch 8, {args.size}x{args.size}, random init, random inputs, SGD lr 0.1 m 0.9 wd 5e-4",
           "repeats": args.repeats, "steps_per_repeat": args.steps, "loadavg_before": load0,
           "loadavg_after": os.getloadavg(),
           "note": args.note, "results": summary}
    for k, tv in summary.items():
        for v, s in tv.items():
            print(f"{k:>8} {v:>13}: {s['s_per_step']:.2f} s/step  x{s['speed_vs_fp32']:.2f} vs fp32 "
                  f"(first step {s['warmup_s']:.1f} s)")
    if not args.no_record:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        with open(OUT, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
