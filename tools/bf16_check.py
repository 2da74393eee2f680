"""Does bf16 autocast on the CPU keep the 30-epoch result? The accuracy check for a numerics-changing speed-up.

Trains Baseline or TextSCD in the committed run ``cpu-30ep``'s setting (chapter 05 with EPOCHS=30, seed 0, the
embedded mini-SECOND at 128², batch 8, lr 0.1, oracle captions) with ``precision="bf16"``, and compares its best
val SeK with the fp32 score the committed run recorded (``results/cpu-30ep/metrics/train_<model>.json``). Our
acceptance rule: |bf16 − fp32| below the 30-epoch seed-to-seed spread (``analysis.ablation.seed_noise(30)``).
One JSON line per model is appended to ``results/benchmarks/bf16-accuracy.jsonl`` (wall time, machine, scores).

Resumable: the run lives under ``$TEXTSCD_HOME`` (put it in /tmp); rerunning the same command resumes from
``last.pt``.

    TEXTSCD_HOME=/tmp/bf16-home OMP_NUM_THREADS=1 python tools/bf16_check.py --model textscd
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "results" / "benchmarks" / "bf16-accuracy.jsonl"
REFERENCE_RUN = "cpu-30ep"


def reference(model: str) -> dict:
    """The committed fp32 run's record for ``model``: best val scores, seed, epochs."""
    path = ROOT / "results" / REFERENCE_RUN / "metrics" / f"train_{model}.json"
    rec = json.loads(path.read_text(encoding="utf-8"))
    run = json.loads((ROOT / "results" / REFERENCE_RUN / "run.json").read_text(encoding="utf-8"))
    eff = run["effective"][f"train_{model}"]
    return {"file": f"results/{REFERENCE_RUN}/metrics/train_{model}.json", "best": rec["best"],
            "seed": eff["seed"], "epochs": eff["epochs"], "fp32_seconds": epoch_seconds(rec["history"])}


def epoch_seconds(history: list[dict]) -> float:
    """Training + validation seconds summed over a run's epochs (the same measure whether or not it resumed)."""
    return sum(r.get("train_seconds", 0.0) + r.get("val_seconds", 0.0) for r in history)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=["textscd", "baseline"], required=True)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run", default=None, help="run name under $TEXTSCD_HOME/results (default bf16-<model>)")
    ap.add_argument("--no-record", action="store_true", help="print only (tiny checks)")
    ap.add_argument("--max-steps-per-epoch", type=int, default=None, help="tiny checks only")
    args = ap.parse_args(argv)
    from textscd_lib.analysis.ablation import seed_noise
    from textscd_lib.course.pipeline import train_pipeline
    from textscd_lib.engine.trainer import TrainConfig
    cfg = TrainConfig(data_root="", run=args.run or f"bf16-{args.model}", model=args.model, captions="oracle",
                      text_encoder="auto", image_weights="auto", epochs=args.epochs, batch_size=8, lr=0.1,
                      size=None, device="cpu", seed=args.seed, precision="bf16", resume=True,
                      max_steps_per_epoch=args.max_steps_per_epoch)
    t0 = time.perf_counter()
    result = train_pipeline(cfg, export=False)
    wall = time.perf_counter() - t0
    ref = reference(args.model)
    if (ref["seed"], ref["epochs"]) != (args.seed, args.epochs):
        print(f"note: the fp32 record ({ref['file']}) is seed {ref['seed']}, {ref['epochs']} epochs; "
              f"this run is seed {args.seed}, {args.epochs} epochs: not the same setting", flush=True)
    best = result["best"] or {"SeK": result["history"][-1].get("val_SeK", float("nan"))}  # no finite F_scd yet
    bf16, fp32 = 100 * best["SeK"], 100 * ref["best"]["SeK"]
    noise = seed_noise(args.epochs)
    row = {"model": args.model, "seed": args.seed, "epochs": args.epochs, "precision": result["precision"],
           "bf16_best_SeK": round(bf16, 2), "fp32_best_SeK": round(fp32, 2), "difference": round(bf16 - fp32, 2),
           "noise": noise, "accepted": abs(bf16 - fp32) < noise, "fp32_record": ref["file"],
           "wall_s_this_call": round(wall, 1), "epoch_seconds": round(epoch_seconds(result["history"]), 1),
           "fp32_epoch_seconds": round(ref["fp32_seconds"], 1), "threads": int(os.environ.get("OMP_NUM_THREADS", "0") or 0),
           "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
           "resumed": bool(result.get("resumed_from")), "date": time.strftime("%Y-%m-%d")}
    print(json.dumps(row), flush=True)
    if not args.no_record and args.epochs == 30 and result["history"][-1]["epoch"] == args.epochs:
        RECORD.parent.mkdir(parents=True, exist_ok=True)
        with RECORD.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
