"""Checking a SECOND-format dataset: every pair decoded once, every problem one line naming the file
(chapter 01, ``notebooks/01_data_exploration.ipynb``; ``textscd data validate``).

:func:`check_pair` decodes one pair (readable files, RGB images, known label colours/values, equal sizes,
``label1 > 0 == label2 > 0``); :func:`validate` runs it over a folder and, when all is well, summarises the
class fractions, the from→to transitions and the change ratios (:class:`ValidationReport`). Oddities that do
not make a pair unusable are warnings, counted per file (:func:`pair_warnings`): changed pixels whose class is
the same on both dates (a change that changes nothing).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from textscd_lib.data.second import (
    CLASSES,
    NUM_CLASSES,
    Pair,
    SecondFormatError,
    read_image,
    read_label,
    scan,
)


def check_pair(pair: Pair) -> tuple[tuple[np.ndarray, ...] | None, list[str]]:
    """Decode one pair and check it (chapter 01): readable, RGB images, known label colours/values, equal
    sizes, ``label1 > 0 == label2 > 0``. Returns ``((im1, im2, label1, label2) or None, problems)``."""
    arrays, problems = [], []
    for path, reader in zip(pair.files, (read_image, read_image, read_label, read_label)):
        try:
            arrays.append(reader(path))
        except SecondFormatError as e:
            problems.append(str(e))
            arrays.append(None)
    shapes = [a.shape[:2] if a is not None else None for a in arrays]
    ref = next((s for s in shapes if s is not None), None)
    for path, s in zip(pair.files, shapes):
        if s is not None and s != ref:
            ref_path = pair.files[shapes.index(ref)]
            problems.append(f"{path}: size mismatch, {s[1]}x{s[0]} but its twin {ref_path} is {ref[1]}x{ref[0]}")
    if problems:
        return None, problems
    l1, l2 = arrays[2], arrays[3]
    a, b = int(((l1 > 0) & (l2 == 0)).sum()), int(((l1 == 0) & (l2 > 0)).sum())
    if a or b:
        problems.append(f"{pair.label1} vs {pair.label2}: change masks disagree in {a + b} pixels "
                        f"(label1 > 0 but label2 = 0 in {a}, label2 > 0 but label1 = 0 in {b})")
        return None, problems
    return tuple(arrays), []


def pair_warnings(pair: Pair, label1: np.ndarray, label2: np.ndarray) -> list[str]:
    """Warnings about a valid pair (chapter 01): changed pixels (label > 0) with the same class on both
    dates, counted, one line naming the files."""
    same = int(((label1 > 0) & (label1 == label2)).sum())
    if not same:
        return []
    changed = int((label1 > 0).sum())
    return [f"WARNING {pair.label1} vs {pair.label2}: {same} of {changed} changed pixels have the same class on "
            "both dates (a change that changes nothing)"]


@dataclass
class ValidationReport:
    """Result of :func:`validate` (chapter 01): ``ok``, one line per problem, warnings (counted per file,
    not errors) and a summary dict."""

    root: Path
    problems: list[str] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        """A one-screen text summary, or the problem lines."""
        if not self.ok:
            return "\n".join([f"INVALID {self.root}: {len(self.problems)} problems", *self.problems])
        s = self.summary
        shown = self.warnings[:20] + ([f"WARNING ... and {len(self.warnings) - 20} more files"]
                                      if len(self.warnings) > 20 else [])
        lines = [f"OK {self.root}: {s['pairs']} pairs " + ", ".join(f"{k or 'flat'}={v}" for k, v in
                                                                    s["splits"].items()),
                 f"  sizes: {', '.join(s['sizes'])}; label formats: {s['label_formats']}",
                 f"  change ratio: mean {s['change_ratio']['mean']:.3f}, min {s['change_ratio']['min']:.3f}, "
                 f"max {s['change_ratio']['max']:.3f}",
                 f"  {'class':<16}{'date 1 %':>10}{'date 2 %':>10}"]
        for c in CLASSES:
            lines.append(f"  {c:<16}{100 * s['class_fraction']['date1'][c]:>10.2f}"
                         f"{100 * s['class_fraction']['date2'][c]:>10.2f}")
        lines.append("  top transitions (from → to, % of changed pixels):")
        for t in s["top_transitions"][:8]:
            lines.append(f"    {t['from']:>14} → {t['to']:<14} {100 * t['fraction']:6.2f}")
        return "\n".join(lines + shown)


def summarize(labels: list[tuple[np.ndarray, np.ndarray]], pairs: list[Pair]) -> dict:
    """Class fractions per date, from→to transition counts (7×7), change ratios (chapter 01)."""
    counts = np.zeros((2, len(CLASSES)), np.int64)
    trans = np.zeros((len(CLASSES), len(CLASSES)), np.int64)
    ratios = []
    for l1, l2 in labels:
        k = NUM_CLASSES
        counts[0] += np.bincount(l1.ravel(), minlength=k)[:k]
        counts[1] += np.bincount(l2.ravel(), minlength=k)[:k]
        trans += np.bincount(l1.ravel().astype(np.int64) * k + l2.ravel(), minlength=k * k)[:k * k].reshape(k, k)
        ratios.append(float((l1 > 0).mean()))
    total = max(int(counts[0].sum()), 1)
    changed = max(int(trans[1:, 1:].sum()), 1)
    top = sorted(((int(trans[i, j]), i, j) for i in range(1, NUM_CLASSES) for j in range(1, NUM_CLASSES)
                  if trans[i, j]), reverse=True)
    splits: dict[str, int] = {}
    for p in pairs:
        splits[p.split] = splits.get(p.split, 0) + 1
    r = np.array(ratios or [0.0])
    return {
        "pairs": len(pairs), "splits": splits,
        "sizes": sorted({f"{a.shape[1]}x{a.shape[0]}" for a, _ in labels}),
        "class_fraction": {f"date{d + 1}": {c: float(counts[d, i] / total) for i, c in enumerate(CLASSES)}
                           for d in range(2)},
        "transitions": trans.tolist(),
        "top_transitions": [{"from": CLASSES[i], "to": CLASSES[j], "pixels": n, "fraction": n / changed}
                            for n, i, j in top],
        "change_ratio": {"mean": float(r.mean()), "min": float(r.min()), "max": float(r.max())},
    }


def _label_format(path: Path) -> str:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return "rgb" if im.mode == "RGB" else "index"
    except Exception:  # noqa: BLE001
        return "unreadable"


def validate(root: str | Path, split: str | None = None, workers: int | None = None) -> ValidationReport:
    """Check every pair under ``root`` (chapter 01; ``textscd data validate``). Decodes with a thread pool."""
    root = Path(root)
    pairs, problems = scan(root, split)
    labels: list[tuple[np.ndarray, np.ndarray]] = []
    with ThreadPoolExecutor(max_workers=workers or 4) as ex:
        warnings: list[str] = []
        for pair, (arrays, probs) in zip(pairs, ex.map(check_pair, pairs)):
            problems += probs
            if arrays is not None:
                labels.append((arrays[2], arrays[3]))
                warnings += pair_warnings(pair, arrays[2], arrays[3])
    rep = ValidationReport(root, problems, warnings=warnings)
    if rep.ok:
        rep.summary = summarize(labels, pairs)
        fmts = sorted({_label_format(p.label1) for p in pairs[:: max(1, len(pairs) // 20)]})
        rep.summary["label_formats"] = "/".join(fmts)
        rep.summary["warnings"] = len(warnings)
    return rep

