"""Figures in the SECOND colours: label maps, legends, pair rows, transition heatmaps (all chapters; 01 first).

Every chapter draws label maps with :func:`colorize` and the legend of :func:`legend_handles`, so a class has
the same colour everywhere (the official SECOND colours of :data:`textscd_lib.data.second.COLORS`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from textscd_lib.common.io import atomic_write
from textscd_lib.data.second import CLASSES, COLORS, index_to_rgb


def colorize(label: np.ndarray) -> np.ndarray:
    """Index label (H,W) 0..6 → RGB (H,W,3) uint8 in the SECOND colours (chapter 01)."""
    if hasattr(label, "detach"):
        label = label.detach().cpu().numpy()
    return index_to_rgb(np.asarray(label))


def legend_handles(include_unchanged: bool = True) -> list:
    """Matplotlib patches for the legend of SECOND label maps (chapter 01); white 'unchanged' gets an edge."""
    from matplotlib.patches import Patch

    return [Patch(facecolor=COLORS[i] / 255, edgecolor="0.3", linewidth=0.5, label=name)
            for i, name in enumerate(CLASSES) if include_unchanged or i]


def show_pair(ax_row, im1, im2, label1, label2, title: str | None = None) -> None:
    """Draw one pair on four axes: date-1 image, date-2 image, label 1, label 2 (chapter 01)."""
    heads = ("date 1", "date 2", "label 1", "label 2")
    for ax, arr, head in zip(ax_row, (im1, im2, colorize(label1), colorize(label2)), heads):
        ax.imshow(np.asarray(arr), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(head if title is None or head != "date 1" else f"{title} · {head}", fontsize=8)


def transition_heatmap(ax, transitions, normalize: bool = True, title: str = "from → to") -> None:
    """Heatmap of a 7×7 from→to count matrix over changed pixels (chapters 01, 06); rows = date-1 class."""
    t = np.asarray(transitions, dtype=np.float64)[1:, 1:]
    shown = 100 * t / max(t.sum(), 1) if normalize else t
    ax.imshow(shown, cmap="viridis")
    names = CLASSES[1:]
    ax.set_xticks(range(6), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(6), names, fontsize=8)
    ax.set_xlabel("date 2 class (to)")
    ax.set_ylabel("date 1 class (from)")
    ax.set_title(title + (" (% of changed pixels)" if normalize else ""), fontsize=9)
    for i in range(6):
        for j in range(6):
            if t[i, j]:
                ax.text(j, i, f"{shown[i, j]:.1f}" if normalize else f"{int(t[i, j])}", ha="center",
                        va="center", fontsize=7, color="w" if shown[i, j] < shown.max() / 2 else "k")


def save_figure(fig, run_path: str | Path, name: str) -> Path:
    """Save ``fig`` atomically to ``results/<run>/figures/<name>.png`` (every chapter); returns the path."""

    name = name if name.endswith(".png") else f"{name}.png"
    path = Path(run_path) / "figures" / name
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110, bbox_inches="tight"))
    return path
