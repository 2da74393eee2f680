"""Which pixels listen to each word? TGI's cross-attention drawn over the image: chapter 04 (text-guided
interaction) shows it for a freshly initialised TGI, chapter 05 (training) for the trained TextSCD.

Eq. (7) lets every pixel of ``F_diff`` attend to the caption's L = 50 tokens; with ``return_attention=True``
TextSCD returns the softmax weights per TGI level, shape (B, heads, H_i·W_i, L), where level i has stride
:data:`textscd_lib.models.image_encoder.STRIDES` [i]. For one word (token j) we average the heads and upsample the
H_i×W_i map to the image: a heat map of which pixels listen to that word.

- :func:`pick_pair` — a val pair whose caption names buildings (else the first with a caption).
- :func:`word_positions` — which words to show: land-cover words first, then other content words.
- :func:`attention_map` — one word's heat map at one level, at image resolution.
- :func:`attention_figure` — the figure of chapters 04 and 05: the pair, then one row per word, one column
  per TGI level.
- :func:`trained_attention` — a trained checkpoint's attention for one pair, with the text features it was
  trained with.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from textscd_lib.common.paths import resolve
from textscd_lib.engine.checkpoints import load_model
from textscd_lib.models.image_encoder import STRIDES
from textscd_lib.text.features import TextFeatures, features_path

# Land-cover words a caption may use, in the order they are preferred for the figure.
WORDS = ("buildings", "building", "water", "trees", "tree", "playground", "vegetation", "grass", "ground", "bare")


def pick_pair(names: Sequence[str], captions: Mapping[str, str], tokens: Callable[[str], list[str]]) -> int:
    """Index of the pair to draw (chapters 04, 05): the first whose caption says "building(s)" within the
    tokens the encoder keeps (``tokens``, e.g. ``TextEncoder.tokens``), else the first with a caption, else 0."""
    def names_building(n: str) -> bool:
        return any(t.lower() in ("building", "buildings") for t in tokens(captions.get(n, "")))

    return next((i for i, n in enumerate(names) if names_building(n)),
                next((i for i, n in enumerate(names) if captions.get(n)), 0))


def word_positions(tokens: Sequence[str], words: Sequence[str] = WORDS, k: int = 3) -> list[tuple[str, int]]:
    """Up to ``k`` (word, token index) pairs to draw (chapters 04, 05): land-cover words first (in the order of
    ``words``), then the first content words (alphabetic, longer than 3 letters); each word once."""
    found = sorted(((t, i) for i, t in enumerate(tokens) if t.lower() in words),
                   key=lambda ti: list(words).index(ti[0].lower()))
    found += [(t, i) for i, t in enumerate(tokens) if t.isalpha() and len(t) > 3 and (t, i) not in found]
    seen: set[str] = set()
    out = []
    for t, i in found:
        if t.lower() not in seen:
            seen.add(t.lower())
            out.append((t, i))
    return out[:k]


def attention_map(attention: torch.Tensor, token: int, image_size: tuple[int, int], stride: int,
                  item: int = 0) -> np.ndarray:
    """One word's attention at one TGI level as an (H, W) map over the image (chapters 04, 05).

    ``attention``: (B, heads, h·w, L) softmax weights of eq. (7) at a level of stride ``stride``, where
    h = ⌈H/stride⌉ and w = ⌈W/stride⌉ (ResNet34's feature size); the heads are averaged and the h×w map
    upsampled bilinearly to ``image_size`` = (H, W)."""
    H, W = image_size
    h, w = -(-H // stride), -(-W // stride)
    if attention.shape[2] != h * w:
        raise ValueError(f"attention has {attention.shape[2]} query pixels; a {H}x{W} image at stride {stride} "
                         f"gives {h}x{w} = {h * w}")
    a = attention[item, :, :, token].float().mean(0).view(1, 1, h, w)    # heads averaged
    return F.interpolate(a, size=(H, W), mode="bilinear", align_corners=False)[0, 0].cpu().numpy()


def real_tokens(attention: Mapping[int, torch.Tensor], item: int = 0) -> int:
    """How many tokens are real (not padding) for pair ``item``: the masked softmax of eq. (7) gives padded
    tokens exactly zero weight, so they are the tokens no pixel of any head attends to (chapters 04, 05)."""
    a = next(iter(attention.values()))[item]  # (heads, h·w, L)
    return max(1, int((a.sum(dim=(0, 1)) > 0).sum()))


def attention_figure(attention: Mapping[int, torch.Tensor], tokens: Sequence[str], im1: np.ndarray,
                     im2: np.ndarray, label2: np.ndarray, caption: str, title: str, k: int = 3):
    """The attention figure of chapters 04 and 05, returned (save it with `textscd_lib.analysis.plots.save_figure`).

    First row: date 1, date 2, the changed pixels and the caption. Then one row per word of
    :func:`word_positions` and one column per TGI level: :func:`attention_map` over the date-2 image, in units
    of uniform attention (weight × n, n = :func:`real_tokens`), all maps on one colour scale. The colour bar
    marks 1 — what every real token gets when a pixel attends uniformly — with a dashed line."""
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    picks = word_positions(tokens, k=k)
    levels = sorted(attention)
    n = real_tokens(attention)
    heats = {(j, level): n * attention_map(attention[level], j, im2.shape[:2], STRIDES[level])
             for _, j in picks for level in levels}
    norm = Normalize(0.0, max([2.0, *(float(h.max()) for h in heats.values())]))
    cols = 1 + max(3, len(levels))
    fig, axes = plt.subplots(len(picks) + 1, cols, figsize=(2.5 * cols + 1, 2.6 * (len(picks) + 1)), squeeze=False)
    for ax, img, head in ((axes[0, 0], im1, "date 1"), (axes[0, 1], im2, "date 2")):
        ax.imshow(img)
        ax.set_title(head, fontsize=8)
    axes[0, 2].imshow(np.asarray(label2) > 0, cmap="gray")
    axes[0, 2].set_title("changed pixels", fontsize=8)
    for ax in axes[0, 3:]:
        ax.axis("off")
    axes[0, 3].text(0, 0.5, "\n".join(textwrap.wrap(caption, 40)[:8]), fontsize=7, va="center")
    for r, (word, j) in enumerate(picks, start=1):
        axes[r, 0].text(0.5, 0.5, f"'{word}'\n(token {j})", ha="center", va="center", fontsize=10)
        axes[r, 0].axis("off")
        for c, level in enumerate(levels, start=1):
            axes[r, c].imshow(im2)
            axes[r, c].imshow(heats[(j, level)], cmap="inferno", norm=norm, alpha=0.6)
            axes[r, c].set_title(f"level {level} (stride {STRIDES[level]})", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if picks:
        bar = fig.colorbar(ScalarMappable(norm, "inferno"), ax=axes[1:, 1:].ravel().tolist(), fraction=0.03, pad=0.02)
        bar.ax.axhline(1.0, color="white", ls="--", lw=1.5)
        bar.set_label(f"attention × n (n = {n} real tokens); 1 = uniform, dashed", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def trained_attention(checkpoint: str | Path, run_path: str | Path, name: str, x1: torch.Tensor,
                      x2: torch.Tensor, device="cpu") -> tuple[dict[int, torch.Tensor], dict]:
    """TGI attention of a trained TextSCD for pair ``name`` (chapter 05): loads ``checkpoint`` and the
    text features chapter 05 trained it with (the run's ``cache/text_features/<encoder>__<captions>.pt``, or
    the prebuilt file its config names), looks the pair's caption up there and runs ``x1``, ``x2`` (one
    normalised pair, (1, 3, H, W)). Returns ``({level: (1, heads, h·w, L)}, the checkpoint's metadata)``."""

    model = load_model(checkpoint, device)
    if not model.uses_text:
        raise ValueError(f"{checkpoint}: a {model.kind} checkpoint has no TGI attention; pass TextSCD's")
    cfg = model.checkpoint.get("config", {})
    if cfg.get("text_features"):
        path = resolve(cfg["text_features"])
    else:
        path = features_path(run_path, model.checkpoint["text_features"], cfg["captions"])
    F_text, mask = TextFeatures.load(path).lookup([name])
    with torch.no_grad():
        out = model(x1.to(device), x2.to(device), F_text.to(device), mask.to(device), return_attention=True)
    return {level: a.cpu() for level, a in out["attention"].items()}, model.checkpoint
