"""When does TextSCD start to read its text? Reading and judging the learning-dynamics measurements.

``tools/text_dynamics.py`` trains TextSCD in chapter 05's setting and measures, every few epochs, one JSON line
per (run, epoch) in ``results/text-dynamics/<run>.jsonl``: the TGI's share of its output, the part that depends on
what the caption says, the attention entropy over the caption's tokens, gradient norms of the TGI against the
image encoder, and val SeK with oracle, empty and shuffled captions. Chapter 07 and ``docs/results.md`` read them
through :func:`load_dynamics` and judge them with :func:`reading_onset` (docs/text-dynamics.md explains each
measure and what we chose where the paper is silent).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = ["run", "seed", "epoch", "tgi_share", "tgi_vs_empty", "entropy", "grad_ratio", "sek_oracle",
           "gap_empty", "gap_shuffled"]


def _row(rec: dict, source: Path, line: int) -> dict:
    """One measurement as a flat row (per-level values averaged over the levels)."""
    try:
        return {"run": rec["run"], "seed": int(rec["seed"]), "epoch": int(rec["epoch"]),
                "tgi_share": float(np.mean(list(rec["tgi_share"].values()))),
                "tgi_vs_empty": float(np.mean(list(rec["tgi_vs_empty"].values()))),
                "entropy": float(np.mean(list(rec["attention_entropy"].values()))),
                "grad_ratio": float(rec["grad"]["ratio"]), "sek_oracle": float(rec["sek"]["oracle"]),
                "gap_empty": float(rec["gap_empty"]), "gap_shuffled": float(rec["gap_shuffled"])}
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{source}:{line}: not a text-dynamics measurement ({type(e).__name__}: {e})") from None


def load_dynamics(folder: str | Path) -> pd.DataFrame:
    """Every ``*.jsonl`` measurement under ``folder`` as one table (:data:`COLUMNS`), sorted by seed and epoch.
    A line that is not a measurement stops with its file and line number; a repeated (run, epoch) too."""
    rows = []
    for path in sorted(Path(folder).glob("*.jsonl")):
        for i, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if text.strip():
                try:
                    rec = json.loads(text)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{i}: not JSON ({e.msg})") from None
                rows.append(_row(rec, path, i))
    df = pd.DataFrame(rows, columns=COLUMNS)
    dup = df[df.duplicated(["run", "epoch"], keep=False)]
    if len(dup):
        raise ValueError(f"{folder}: epoch measured twice in {sorted(set(dup.run))}: {sorted(set(dup.epoch))}")
    return df.sort_values(["seed", "epoch"]).reset_index(drop=True)


def reading_onset(df: pd.DataFrame, noise: Callable[[int], float]) -> dict[int, int | None]:
    """Per seed, the first measured epoch from which TextSCD reads its caption at every later measurement: oracle
    captions score at least ``noise(epoch)`` SeK above empty ones (our rule). None when no such epoch was
    measured."""
    out = {}
    for seed, g in df.groupby("seed"):
        g = g.sort_values("epoch")
        reads = [gap >= noise(int(e)) for e, gap in zip(g.epoch, g.gap_empty)]
        onset = None
        for k in range(len(reads) - 1, -1, -1):
            if not reads[k]:
                break
            onset = int(g.epoch.iloc[k])
        out[int(seed)] = onset
    return out


def plot_dynamics(df: pd.DataFrame, noise: Callable[[int], float], axes) -> None:
    """Four panels over epochs, one line per seed: the TGI's share of its output (and the caption-dependent part),
    attention entropy, the TGI / encoder gradient ratio, and oracle − empty / shuffled SeK with the noise."""
    (a, b), (c, d) = axes
    for k, (seed, g) in enumerate(df.groupby("seed")):
        col = f"C{k}"  # one colour per seed in every panel; solid = first measure, dashed = second
        a.plot(g.epoch, g.tgi_share, "o-", color=col, label=f"seed {seed}: ‖F_o − F_diff‖ / ‖F_diff‖")
        a.plot(g.epoch, g.tgi_vs_empty, "s--", color=col, label=f"seed {seed}: oracle vs empty")
        b.plot(g.epoch, g.entropy, "o-", color=col, label=f"seed {seed}")
        c.plot(g.epoch, g.grad_ratio, "o-", color=col, label=f"seed {seed}")
        d.plot(g.epoch, g.gap_empty, "o-", color=col, label=f"seed {seed}: oracle − empty")
        d.plot(g.epoch, g.gap_shuffled, "s--", color=col, label=f"seed {seed}: oracle − shuffled")
    epochs = sorted(df.epoch.unique())
    d.fill_between(epochs, [-noise(e) for e in epochs], [noise(e) for e in epochs], color="0.85",
                   label="± seed noise")
    a.set(title="What the TGI adds (mean over levels)", xlabel="epoch", ylabel="share of ‖F_diff‖")
    b.set(title="Attention entropy over the caption (1 = uniform)", xlabel="epoch")
    c.set(title="Gradient norm: TGI / image encoder", xlabel="epoch", yscale="log")
    d.set(title="Val SeK: oracle captions minus others", xlabel="epoch", ylabel="SeK points")
    for ax in (a, b, c, d):
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
