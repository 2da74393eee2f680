"""Decoder-tail study (chapter 04/05): does a cheaper decoder tail keep the accuracy?

Trains Baseline and TextSCD with a given decoder tail (``build_model(tail=...)``, see
``textscd_lib.models.textscd.TAILS``) in the setting of the committed ``results/cpu-30ep`` run: the embedded
mini-SECOND at its native 128², oracle captions, the text encoder ``auto`` (all-MiniLM-L6-v2 offline), a
randomly initialised ResNet34 offline, seed 0, 30 epochs, the paper's recipe otherwise. Each (tail, model) is one
resumable run in its own run folder ``<root>/tail-<tail>-<model>/`` (its own lock, so the two models of a tail
can train at once) (default root ``/tmp/acc``, outside the repository): run the same
command again after an interruption and it continues from ``last.pt``. ``table`` prints the comparison
(best epoch by val F_scd, as the trainer picks it) next to the committed cpu-30ep numbers.

    OMP_NUM_THREADS=1 nice -n 15 .venv/bin/python tools/tail_study.py train --tail narrow --model baseline
    .venv/bin/python tools/tail_study.py table --tails paper narrow

Run it from the repository root: the embedded mini-SECOND lives in ``data/`` there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

MODELS = ("baseline", "textscd")
METRICS = ("F_scd", "mIoU", "OA", "SeK")
COMMITTED = Path("results/cpu-30ep/metrics/training_summary.json")


def run_name(tail: str, model: str) -> str:
    """One run folder per (tail, model): a run folder is locked by the process writing it."""
    return f"tail-{tail}-{model}"


def train_one(tail: str, model: str, root: str, epochs: int, seed: int) -> dict:
    """One resumable 30-epoch run of ``model`` with decoder ``tail`` under ``root/tail-<tail>-<model>`` (the pipeline
    makes the data folder, the oracle captions and the text features with the run's seed, as chapter 05 does)."""
    from textscd_lib.course.pipeline import train_pipeline
    from textscd_lib.engine.config import TrainConfig

    cfg = TrainConfig(run=run_name(tail, model), results_root=root, model=model, captions="oracle", text_encoder="auto",
                      image_weights="auto", epochs=epochs, batch_size=8, lr=0.1, size=None, device="cpu", seed=seed,
                      resume=True, tail=tail)
    return train_pipeline(cfg, export=False)


def best_row(log_json: Path) -> dict | None:
    """The epoch with the highest finite val F_scd in a run's ``log.json`` (the trainer's ``best.pt``)."""
    if not log_json.is_file():
        return None
    rows = [r for r in json.loads(log_json.read_text()) if r.get("val_F_scd") == r.get("val_F_scd")]
    if not rows:
        return None
    best = max(rows, key=lambda r: r["val_F_scd"])
    return {"epoch": best["epoch"], "epochs": rows[-1]["epoch"], **{m: 100 * best[f"val_{m}"] for m in METRICS},
            "s/epoch": sum(r["train_seconds"] for r in rows) / len(rows)}


def table(tails: list[str], root: str) -> str:
    """Markdown table: the committed cpu-30ep run and every (tail, model) found under ``root``."""
    lines = ["| run | model | best epoch / run | F_scd | mIoU | OA | SeK | train s/epoch |",
             "|---|---|---|---|---|---|---|---|"]
    if COMMITTED.is_file():
        committed = json.loads(COMMITTED.read_text())["models"]
        for model in MODELS:
            b = committed[model]["best"]
            secs = [h["train_seconds"] for h in committed[model]["history"]]
            lines.append(f"| committed cpu-30ep (tail paper, other machine) | {model} | {b['epoch']} / "
                         f"{len(secs)} | " + " | ".join(f"{100 * b[m]:.2f}" for m in METRICS)
                         + f" | {sum(secs) / len(secs):.0f} |")
    for tail in tails:
        for model in MODELS:
            r = best_row(Path(root) / run_name(tail, model) / "checkpoints" / model / "log.json")
            if r is None:
                lines.append(f"| tail {tail} (this machine) | {model} | not run | | | | | |")
                continue
            lines.append(f"| tail {tail} (this machine) | {model} | {r['epoch']} / {r['epochs']} | "
                         + " | ".join(f"{r[m]:.2f}" for m in METRICS) + f" | {r['s/epoch']:.0f} |")
    return "\n".join(lines)


def per_epoch(tails: list[str], root: str) -> str:
    """Markdown table of val SeK per epoch (×100): the committed cpu-30ep run (tail paper) beside each tail
    found under ``root``, epoch by epoch, so that unfinished runs can be compared at equal epochs."""
    cols, series = [], []
    if COMMITTED.is_file():
        committed = json.loads(COMMITTED.read_text())["models"]
        for model in MODELS:
            cols.append(f"{model} cpu-30ep")
            series.append({h["epoch"]: h["val_SeK"] for h in committed[model]["history"]})
    for tail in tails:
        for model in MODELS:
            f = Path(root) / run_name(tail, model) / "checkpoints" / model / "log.json"
            if f.is_file():
                cols.append(f"{model} {tail}")
                series.append({r["epoch"]: r["val_SeK"] for r in json.loads(f.read_text())})
    last = max((max(s) for s in series[2:] if s), default=0)
    lines = ["| epoch | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for e in range(1, last + 1):
        lines.append(f"| {e} | " + " | ".join(f"{100 * s[e]:.2f}" if e in s else "" for s in series) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train one (tail, model) run, resuming where it stopped")
    t.add_argument("--tail", required=True)
    t.add_argument("--model", required=True, choices=MODELS)
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--root", default="/tmp/acc")
    s = sub.add_parser("table", help="print the comparison table (markdown)")
    s.add_argument("--tails", nargs="+", default=["paper", "narrow"])
    s.add_argument("--root", default="/tmp/acc")
    args = ap.parse_args(argv)
    if args.cmd == "train":
        r = train_one(args.tail, args.model, args.root, args.epochs, args.seed)
        print(json.dumps({"tail": args.tail, "model": args.model, "best": r["best"], "epochs_run": r["epochs_run"]}))
    else:
        print(table(args.tails, args.root) + "\n\nval SeK (x100) per epoch:\n\n" + per_epoch(args.tails, args.root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
