"""Seed study of the demo setting (chapter 06/07, docs/facts.md "Noise between runs").

How much does TextSCD − Baseline move when only the seed changes, at the demo's six epochs? Trains Baseline and
TextSCD exactly as chapter 05 does on the CPU (embedded mini-SECOND at 128², oracle captions, text encoder
``auto``, paper recipe, 6 epochs) for each seed, one resumable run folder per (seed, model) under
``<root>/seed-<seed>/`` (default root ``/tmp/seeds``, outside the repository; the runs are
``tools/tail_study.py``'s with the paper tail). Seed 0 is the committed demo: its numbers must equal
``results/demo``'s, which checks that the study trains what the demo trains.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python tools/seed_study.py train --seed 1 --model baseline
    .venv/bin/python tools/seed_study.py table --seeds 0 1 2 3 [--json results/seed-study/demo-6ep.json]

Run it from the repository root (the embedded mini-SECOND lives in ``data/`` there).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tail_study import METRICS, MODELS, best_row, run_name, train_one  # noqa: E402

EPOCHS = 6  # the demo's CPU setting (chapter 05: EPOCHS None -> 6 on CPU)


def seed_root(root: str, seed: int) -> str:
    return str(Path(root) / f"seed-{seed}")


def rows(seeds: list[int], root: str, epochs: int) -> list[dict]:
    """One row per seed with both models' best-epoch scores (×100) and the difference; None where not run."""
    out = []
    for s in seeds:
        r = {"seed": s}
        for m in MODELS:
            b = best_row(Path(seed_root(root, s)) / run_name("paper", m) / "checkpoints" / m / "log.json")
            r[m] = None if b is None or b["epochs"] < epochs else {k: round(b[k], 2) for k in METRICS}
        if r["baseline"] and r["textscd"]:
            r["difference"] = {k: round(r["textscd"][k] - r["baseline"][k], 2) for k in METRICS}
        out.append(r)
    return out


def summary(table: list[dict]) -> dict:
    """Range and sample standard deviation of SeK per model and of the difference, over the finished seeds."""
    done = [r for r in table if "difference" in r]
    out = {"seeds": [r["seed"] for r in done]}
    for key, get in (("baseline", lambda r: r["baseline"]["SeK"]), ("textscd", lambda r: r["textscd"]["SeK"]),
                     ("difference", lambda r: r["difference"]["SeK"])):
        v = [get(r) for r in done]
        if len(v) >= 2:
            out[key] = {"min": min(v), "max": max(v), "range": round(max(v) - min(v), 2),
                        "std": round(statistics.stdev(v), 2), "mean": round(statistics.mean(v), 2)}
    return out


def markdown(table: list[dict]) -> str:
    lines = ["| seed | Baseline SeK | TextSCD SeK | TextSCD − Baseline SeK | F_scd (B / T) |", "|---|---|---|---|---|"]
    for r in table:
        if "difference" not in r:
            lines.append(f"| {r['seed']} | not finished | | | |")
            continue
        b, t, d = r["baseline"], r["textscd"], r["difference"]
        lines.append(f"| {r['seed']} | {b['SeK']:.2f} | {t['SeK']:.2f} | {d['SeK']:+.2f} | "
                     f"{b['F_scd']:.2f} / {t['F_scd']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train one (seed, model) run of the demo setting, resuming where it stopped")
    t.add_argument("--seed", type=int, required=True)
    t.add_argument("--model", required=True, choices=MODELS)
    t.add_argument("--epochs", type=int, default=EPOCHS)
    t.add_argument("--root", default="/tmp/seeds")
    s = sub.add_parser("table", help="the per-seed table (markdown) and the spread")
    s.add_argument("--seeds", type=int, nargs="+", required=True)
    s.add_argument("--epochs", type=int, default=EPOCHS)
    s.add_argument("--root", default="/tmp/seeds")
    s.add_argument("--json", help="also write the table and the spread to this file")
    args = p.parse_args(argv)
    if args.cmd == "train":
        r = train_one("paper", args.model, seed_root(args.root, args.seed), args.epochs, args.seed)
        print(json.dumps({"seed": args.seed, "model": args.model, "best": r["best"], "epochs_run": r["epochs_run"]}))
        return 0
    table = rows(args.seeds, args.root, args.epochs)
    print(markdown(table))
    spread = summary(table)
    print(json.dumps(spread, indent=1))
    if args.json:
        from textscd_lib.common.io import atomic_write_text  # whole file or nothing

        atomic_write_text(args.json, json.dumps({"setting": f"demo (chapter 05 on CPU), {args.epochs} epochs",
                                                 "rows": table, "spread": spread}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
