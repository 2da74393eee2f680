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

COLUMNS = ["run", "intervention", "seed", "epoch", "tgi_share", "tgi_vs_empty", "entropy", "grad_ratio", "sek_oracle",
           "gap_empty", "gap_shuffled", "tgi_share_levels"]


def _row(rec: dict, source: Path, line: int) -> dict:
    """One measurement as a flat row (per-level values averaged over the levels)."""
    try:
        return {"run": rec["run"], "intervention": str(rec.get("intervention", "none")), "seed": int(rec["seed"]),
                "epoch": int(rec["epoch"]),
                "tgi_share": float(np.mean(list(rec["tgi_share"].values()))),
                "tgi_vs_empty": float(np.mean(list(rec["tgi_vs_empty"].values()))),
                "entropy": float(np.mean(list(rec["attention_entropy"].values()))),
                "grad_ratio": float(rec["grad"]["ratio"]), "sek_oracle": float(rec["sek"]["oracle"]),
                "gap_empty": float(rec["gap_empty"]), "gap_shuffled": float(rec["gap_shuffled"]),
                "tgi_share_levels": "/".join(f"{rec['tgi_share'][k]:.2f}" for k in sorted(rec["tgi_share"]))}
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


def _not_reading(g: pd.DataFrame, noise: Callable[[int], float]) -> int | None:
    """The last measured epoch at which oracle captions do not beat empty ones by the noise (None: none)."""
    miss = [int(e) for e, gap in zip(g.epoch, g.gap_empty) if gap < noise(int(e))]
    return max(miss) if miss else None


def compare_interventions(ref: pd.DataFrame, runs: pd.DataFrame, noise: Callable[[int], float]) -> pd.DataFrame:
    """One row per (intervention, seed) of ``runs`` against the reference run of the same seed (``ref``, cut to the
    intervention's last measured epoch, so both have the same horizon), judged by :func:`reading_onset`'s rule.
    ``verdict`` (our rule, the measured epochs of the two runs differ): *reads earlier* when the intervention reads
    at every measurement from an epoch at which the reference was measured not reading; *reads later* when it was
    measured not reading at or after the epoch from which the reference reads; otherwise *no difference these
    measurements can show*."""
    rows = []
    for (name, seed), g in runs.groupby(["intervention", "seed"], sort=True):
        g = g.sort_values("epoch")
        horizon = int(g.epoch.max())
        r = ref[(ref.seed == seed) & (ref.epoch <= horizon)].sort_values("epoch")
        on, ref_on = (reading_onset(x, noise).get(int(seed)) if len(x) else None for x in (g, r))
        ref_not, off = (_not_reading(x, noise) for x in (r, g))
        if on is not None and ref_not is not None and on <= ref_not:
            verdict = "reads earlier"
        elif ref_on is not None and off is not None and off >= ref_on:
            verdict = "reads later"
        else:
            verdict = "no difference these measurements can show"
        last, ref_last = g.iloc[-1], (r.iloc[-1] if len(r) else None)
        rows.append({"intervention": name, "seed": int(seed), "horizon": horizon,
                     "gaps": " ".join(f"{int(e)}:{v:+.2f}" for e, v in zip(g.epoch, g.gap_empty)),
                     "reference gaps": " ".join(f"{int(e)}:{v:+.2f}" for e, v in zip(r.epoch, r.gap_empty)),
                     "onset": on, "reference onset": ref_on, "verdict": verdict,
                     "entropy": float(last.entropy), "grad_ratio": float(last.grad_ratio),
                     "tgi_share_levels": last.get("tgi_share_levels", ""),
                     "reference tgi_share_levels": ref_last.get("tgi_share_levels", "") if ref_last is not None else "",
                     "sek_oracle": float(last.sek_oracle),
                     "reference sek_oracle": float(ref_last.sek_oracle) if ref_last is not None else float("nan"),
                     "reference epoch": int(ref_last.epoch) if ref_last is not None else None})
    out = pd.DataFrame(rows)
    for k in ("onset", "reference onset", "reference epoch"):   # whole epochs, <NA> where there is none
        if k in out:
            out[k] = out[k].astype("Int64")
    return out


def plot_interventions(ref: pd.DataFrame, runs: pd.DataFrame, noise: Callable[[int], float], axes) -> None:
    """Per seed one panel: oracle − empty SeK over epochs for the reference run (cut to the interventions' horizon)
    and each intervention, with the ± noise band."""
    horizon = int(runs.epoch.max())
    for ax, seed in zip(axes, sorted(runs.seed.unique())):
        r = ref[(ref.seed == seed) & (ref.epoch <= horizon)]
        ax.plot(r.epoch, r.gap_empty, "ko-", lw=2, label="reference (chapter 05's setting)")
        for name, g in runs[runs.seed == seed].groupby("intervention"):
            ax.plot(g.epoch, g.gap_empty, "o--", label=name)
        epochs = sorted(set(r.epoch) | set(runs.epoch))
        ax.fill_between(epochs, [-noise(e) for e in epochs], [noise(e) for e in epochs], color="0.85",
                        label="± seed noise")
        ax.set(title=f"seed {seed}: val SeK, oracle minus empty captions", xlabel="epoch", ylabel="SeK points")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)


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
