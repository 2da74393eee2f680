"""``textscd bench``: throughput, memory, FLOPs, TGI overhead, data loading (JSON lines).

Rows are printed; they are appended to the committed record ``results/benchmarks/`` only with ``--record``, so
that a trial run (a toy size, a test) never changes what the repository reports as measured."""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmark train step / inference / data loading; JSON lines",
                       description="Benchmark the train step, inference and data loading; print JSON lines. "
                                   "Nothing is written unless --record is given: results/benchmarks/ is the "
                                   "committed record of measured machines.")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--size", type=int, default=512, help="image side in pixels (default 512)")
    p.add_argument("--batch", type=int, default=8, help="pairs per step (default 8)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--channels-last", default="auto", choices=["auto", "on", "off"])
    p.add_argument("--compile", action="store_true", help="torch.compile the model first")
    p.add_argument("--models", default="baseline,textscd", help="comma-separated: baseline,textscd")
    p.add_argument("--text-dim", type=int, default=512, help="D_t of the cached text features (512 CLIP, 384 MiniLM)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--data", default="", help="a dataset root to also time PNG vs cached loading")
    p.add_argument("--record", action="store_true",
                   help="also append the rows to results/benchmarks/ (the committed record); without it, print only")
    p.add_argument("--no-write", action="store_true", help="print only (the default; kept for older scripts)")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="also time each step replayed as one captured CUDA graph (CUDA only)")
    p.add_argument("--cost", action="store_true",
                   help="no timing: FLOPs and bytes per model part and the roofline bound (meta device, any machine)")
    p.add_argument("--parts", action="store_true",
                   help="measured time per model part (torch.profiler: GPU kernel time on CUDA, CPU time on CPU), "
                        "with the roofline bound where the GPU has a profile")
    p.add_argument("--profile", default="h100-sxm", help="datasheet peaks for --cost: h100-sxm, h200, a100, rtx3090")
    f = p.add_argument_group("fast path switches (each row records them; the old paths are built in "
                             "perf/variants.py; docs/performance.md)")
    f.add_argument("--tail", default="paper", help="decoder tail: paper (default) | narrow | stride4")
    f.add_argument("--cudnn-benchmark", default="on", choices=["on", "off"],
                   help="torch.backends.cudnn.benchmark on CUDA (default on; shapes are static)")
    f.add_argument("--mask-once", default="off", choices=["on", "off"],
                   help="TGI's text mask prepared once per forward (on, a variant) or at each level (off, the model)")
    f.add_argument("--host-syncs", action="store_true",
                   help="put back the old step's host syncs (loss parts read with .tolist(); with --pipeline "
                        "also the text lookup's per-step index copy)")
    f.add_argument("--fast-cosine", action="store_true", help="L_sim's cosine written out (rounding differs)")
    f.add_argument("--pipeline", action="store_true",
                   help="also time the step fed by the trainer's batches (augmentation and text lookup on the device)")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    from textscd_lib.perf.bench import BenchConfig, run_bench, run_cost

    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    from textscd_lib.models.kinds import KINDS

    bad = [m for m in models if m not in KINDS]
    if bad:
        raise ValueError(f"--models: unknown model(s) {bad}; choose from {', '.join(KINDS)}")
    cfg = BenchConfig(device=args.device, size=args.size, batch=args.batch, precision=args.precision,
                      channels_last=args.channels_last, compile=args.compile, models=models,
                      text_dim=args.text_dim, warmup=args.warmup, repeats=args.repeats, data_root=args.data,
                      cuda_graphs=args.cuda_graphs, tail=args.tail, cudnn_benchmark=args.cudnn_benchmark == "on",
                      mask_once=args.mask_once == "on", host_syncs=args.host_syncs, fast_cosine=args.fast_cosine,
                      pipeline=args.pipeline)
    if args.cost:
        from textscd_lib.perf.costmodel import format_costs

        rows = run_cost(cfg, profile=args.profile, write=args.record and not args.no_write)
        for kind in models:
            print(format_costs([r for r in rows if r["model"] == kind]) + "\n", file=sys.stderr)
        for row in rows:
            print(json.dumps(row), flush=True)
        return 0
    if args.parts:
        from textscd_lib.perf.bench import run_parts
        from textscd_lib.perf.step_profile import format_parts

        rows = run_parts(cfg, write=args.record and not args.no_write)
        for kind in models:
            print(format_parts([r for r in rows if r["model"] == kind]) + "\n", file=sys.stderr)
        for row in rows:
            print(json.dumps(row), flush=True)
        return 0
    for row in run_bench(cfg, write=args.record and not args.no_write):
        print(json.dumps(row), flush=True)
    return 0
