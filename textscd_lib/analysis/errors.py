"""Error analysis of semantic change maps: chapter 06 (metrics and error analysis).

Everything here works on *index maps* (H×W, values 0..6, 0 = unchanged; `textscd_lib.data.second.CLASSES`):

- :func:`error_map` — every pixel of one pair in one of five categories (:data:`ERROR_CATEGORIES`):
  correct unchanged, correct change, false alarm (change predicted where none), miss (change not
  predicted), right change / wrong class. The paper (§4.2, Fig. 4) claims TGI "mitigates false
  detections and omissions": these maps count exactly those.
- :func:`tile_scores` / :func:`worst_tiles` / :func:`rank_tiles` — SeK and F_scd of every tile from a per-tile
  confusion matrix (`textscd_lib.metrics`, docs/facts.md#metrics: SeK = κ·exp(IoU_c)/e), and the tiles worst
  by a score or by an amount of error (:data:`RANKINGS`).
- :func:`fix_cause_map` — where TextSCD fixes or causes errors compared with Baseline, pixel by pixel.
- :func:`table1` — Table 1 in the paper's format, the paper's rows labelled as the paper's (SECOND)
  beside ours (labelled with the dataset and the run).
- :func:`draw_panels`, :func:`draw_error_row`, :func:`error_legend`, :func:`wrap_caption` — the figure rows
  of chapter 06 (errors over the images, truth and prediction in the SECOND colours, the caption below).

Neighbours: `textscd_lib.analysis.caption_errors` (does the caption name the transitions that went wrong?) and
`textscd_lib.engine.predictions` (a model's maps in memory, shared with chapter 07, `textscd_lib.analysis.ablation`).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from textscd_lib.analysis.plots import colorize
from textscd_lib.metrics import METRIC_COLUMNS, SCDConfusion, to_numpy

# --------------------------------------------------------------------------------------------------
# per-pixel error categories
# --------------------------------------------------------------------------------------------------
CORRECT_UNCHANGED, CORRECT_CHANGE, FALSE_ALARM, MISS, WRONG_CLASS = range(5)
ERROR_CATEGORIES = ("correct unchanged", "correct change", "false alarm", "miss", "right change, wrong class")
# Colours for the categories (RGB uint8), chosen apart from the SECOND class colours: white, dark grey,
# magenta (false alarm), cyan (miss), amber (wrong class).
ERROR_COLORS = np.array([[255, 255, 255], [60, 60, 60], [255, 0, 255], [0, 220, 255], [255, 190, 0]],
                        dtype=np.uint8)


def error_map(pred1, pred2, label1, label2) -> np.ndarray:
    """Per-pixel error category of one pair (chapter 06), uint8 with values in :data:`ERROR_CATEGORIES`.

    A pixel is *changed* in the truth when ``label1 > 0`` (docs/facts.md#the-second-dataset) and *predicted changed* when
    ``pred1 > 0`` or ``pred2 > 0``:

    - correct unchanged: truth unchanged, predicted unchanged;
    - false alarm: truth unchanged, change predicted;
    - miss: truth changed, no change predicted on either date;
    - correct change: truth changed, both dates' classes right;
    - right change, wrong class: truth changed, change predicted, at least one date's class wrong
      (a change found on one date only counts here too: its "unchanged" on the other date is a wrong class).

    Works on any leading batch shape.
    """
    p1, p2, l1, l2 = (to_numpy(x) for x in (pred1, pred2, label1, label2))   # comparisons only: no copies
    if not (p1.shape == p2.shape == l1.shape == l2.shape):
        raise ValueError(f"error_map: shapes differ: pred {p1.shape}/{p2.shape}, label {l1.shape}/{l2.shape}")
    true_change = (l1 > 0) | (l2 > 0)
    pred_change = (p1 > 0) | (p2 > 0)
    both_right = (p1 == l1) & (p2 == l2)
    out = np.full(l1.shape, WRONG_CLASS, dtype=np.uint8)
    out[~true_change & ~pred_change] = CORRECT_UNCHANGED
    out[~true_change & pred_change] = FALSE_ALARM
    out[true_change & ~pred_change] = MISS
    out[true_change & pred_change & both_right] = CORRECT_CHANGE
    return out


def error_counts(err: np.ndarray) -> dict[str, int]:
    """Pixels per error category of one or many error maps (chapter 06)."""
    counts = np.bincount(to_numpy(err).ravel(), minlength=len(ERROR_CATEGORIES))
    return {name: int(c) for name, c in zip(ERROR_CATEGORIES, counts)}


def colorize_errors(err: np.ndarray) -> np.ndarray:
    """Error map → RGB (H, W, 3) uint8 in :data:`ERROR_COLORS` (chapter 06)."""
    return ERROR_COLORS[to_numpy(err)]


def overlay_errors(image: np.ndarray, err: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """The error categories blended over an RGB image (chapter 06); correct pixels are left untouched,
    so the eye lands on false alarms, misses and wrong classes."""
    image = to_numpy(image).astype(np.float32)
    err = to_numpy(err)
    col = ERROR_COLORS[err].astype(np.float32)
    a = np.where(np.isin(err, (FALSE_ALARM, MISS, WRONG_CLASS)), alpha, 0.0)[..., None]
    return (image * (1 - a) + col * a).round().clip(0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# per-tile scores
# --------------------------------------------------------------------------------------------------
def tile_scores(names: Sequence[str], preds: Mapping[str, tuple], labels: Mapping[str, tuple]) -> pd.DataFrame:
    """SeK, F_scd, mIoU, OA and error-category fractions of every tile (chapter 06).

    ``preds[name]`` and ``labels[name]`` are ``(map1, map2)`` index maps. Scores come from one confusion
    matrix per tile (`textscd_lib.metrics.SCDConfusion`, docs/facts.md#metrics), as fractions (×100 for tables).
    """

    rows = []
    for name in names:
        p1, p2 = preds[name]
        l1, l2 = labels[name]
        conf = SCDConfusion()
        conf.update(to_numpy(p1), to_numpy(p2), to_numpy(l1), to_numpy(l2))
        s = conf.scores()
        err = error_map(p1, p2, l1, l2)
        frac = np.bincount(err.ravel(), minlength=len(ERROR_CATEGORIES)) / err.size
        row = {"name": name, **{k: float(s[k]) for k in ("SeK", "F_scd", "mIoU", "OA")},
               "changed": float((to_numpy(l1) > 0).mean())}
        row.update({c: float(f) for c, f in zip(ERROR_CATEGORIES[2:], frac[2:])})
        rows.append(row)
    return pd.DataFrame(rows).set_index("name")


# Scores where higher is better; every other column of a tile table (error pixels, fractions, component counts)
# is an amount of error, where higher is worse.
HIGHER_IS_BETTER = frozenset({"SeK", "F_scd", "mIoU", "OA", "IoU_c", "IoU_nc", "kappa", "correct change",
                              "correct unchanged"})


def worst_tiles(scores: pd.DataFrame, k: int = 6, by: str = "SeK") -> pd.DataFrame:
    """The ``k`` worst tiles by column ``by`` (chapter 06): the lowest scores (``by`` in :data:`HIGHER_IS_BETTER`)
    or the most error (any other column, e.g. "false alarm", "miss", "fa_isolated"). Tiles where ``by`` is
    undefined (NaN: e.g. SeK with no change in the truth and none predicted) are left out; ties keep the
    tiles with more false alarm first, then the name order."""
    if by not in scores.columns:
        raise ValueError(f"worst_tiles: no column {by!r} (have {', '.join(map(str, scores.columns))})")
    t = scores.dropna(subset=[by]).rename_axis("_tile").reset_index()
    keys, asc = [by], [by in HIGHER_IS_BETTER]
    if "false alarm" in t.columns and by != "false alarm":
        keys, asc = keys + ["false alarm"], asc + [False]
    out = t.sort_values(keys + ["_tile"], ascending=asc + [True], kind="stable").head(k)
    return out.set_index("_tile").rename_axis(scores.index.name)


# The rankings of `textscd errors --rank-by` and chapter 06 over a records tile table
# (`textscd_lib.analysis.records`): name -> (column, what it means)
RANKINGS: dict[str, tuple[str, str]] = {
    "false-alarm-area": ("false alarm", "most false-alarm pixels"),
    "isolated-false-alarms": ("fa_isolated", "most isolated false-alarm components"),
    "miss-area": ("miss", "most missed pixels"),
    "sek": ("SeK", "lowest SeK"),
    "difference": ("wrong_diff", "largest difference in wrong pixels between the two methods"),
}


def rank_tiles(tiles: pd.DataFrame, by: str = "false-alarm-area", k: int | None = None,
               compare: pd.DataFrame | None = None) -> pd.DataFrame:
    """Tiles of a records table ranked by one of :data:`RANKINGS`, worst first (chapter 06, ``textscd errors``).

    ``difference`` needs ``compare`` (the other method's tile table): ``wrong_diff`` = wrong pixels (false
    alarm + miss + wrong class) of ``compare`` minus those of ``tiles``, ranked by its size whatever its sign; a
    category NaN in either table (a binary method's wrong class: not applicable) is left out of both sums."""
    if by not in RANKINGS:
        raise ValueError(f"unknown ranking {by!r}; choose one of {', '.join(RANKINGS)}")
    col = RANKINGS[by][0]
    t = tiles.copy()
    if by == "difference":
        if compare is None:
            raise ValueError("ranking 'difference' needs a second method (--compare)")
        wrong = [c for c in ERROR_CATEGORIES[2:] if not (t[c].isna().any() or compare[c].isna().any())]
        t["wrong_diff"] = compare.loc[t.index, wrong].sum(axis=1) - t[wrong].sum(axis=1)
        order = t["wrong_diff"].abs().rename("_key")
        t = t.assign(_key=order).rename_axis("_tile").reset_index()
        t = t.sort_values(["_key", "_tile"], ascending=[False, True], kind="stable").drop(columns="_key")
        t = t.set_index("_tile").rename_axis(tiles.index.name)
    else:
        t = worst_tiles(t, k=len(t), by=col)
    return t if k is None else t.head(k)


# --------------------------------------------------------------------------------------------------
# Baseline vs TextSCD
# --------------------------------------------------------------------------------------------------
BOTH_RIGHT, FIXED, CAUSED, BOTH_WRONG = range(4)
FIX_CATEGORIES = ("both right", "fixed by TextSCD", "caused by TextSCD", "both wrong")
FIX_COLORS = np.array([[255, 255, 255], [0, 190, 190], [230, 110, 0], [110, 110, 110]], dtype=np.uint8)


def fix_cause_map(base: tuple, text: tuple, label: tuple) -> np.ndarray:
    """Per pixel: both right, fixed by TextSCD (Baseline wrong, TextSCD right), caused by TextSCD, or both
    wrong (chapter 06). ``base``, ``text`` and ``label`` are ``(map1, map2)``; right = both dates' classes
    equal the truth."""
    l1, l2 = (to_numpy(x) for x in label)
    rb = (to_numpy(base[0]) == l1) & (to_numpy(base[1]) == l2)
    rt = (to_numpy(text[0]) == l1) & (to_numpy(text[1]) == l2)
    out = np.full(l1.shape, BOTH_WRONG, dtype=np.uint8)
    out[rb & rt] = BOTH_RIGHT
    out[~rb & rt] = FIXED
    out[rb & ~rt] = CAUSED
    return out


# --------------------------------------------------------------------------------------------------
# Table 1
# --------------------------------------------------------------------------------------------------
# docs/facts.md#the-papers-numbers — the paper's Table 1 (SECOND val split, ×100).
PAPER_TABLE1: tuple[tuple[str, float, float, float, float], ...] = (
    ("HRSCD-S4", 57.04, 69.94, 85.97, 16.72),
    ("SCDNet", 59.34, 71.28, 86.57, 19.26),
    ("MTSCD", 60.50, 71.52, 86.70, 20.26),
    ("HGINet", 61.02, 71.54, 87.21, 21.28),
    ("Baseline", 60.67, 72.25, 87.18, 20.90),
    ("+TGI (TextSCD)", 61.90, 72.38, 87.67, 21.66),
)
PAPER_SOURCE = "paper, SECOND"


def table1(ours: Mapping[str, Mapping[str, float]] | None = None, dataset: str = "mini-SECOND",
           run: str = "demo", include_paper: bool = True) -> pd.DataFrame:
    """Table 1 in the paper's format (chapter 06): rows ``method``, columns F_scd, mIoU, OA, SeK (×100) and
    ``source``. The paper's rows carry source "paper, SECOND"; ``ours`` (method → scores as fractions, e.g.
    from ``SCDConfusion.scores()``) carry "ours, <dataset>, run <run>" — numbers on different datasets,
    side by side, never mixed up."""
    rows = []
    if include_paper:
        rows += [{"method": m, **dict(zip(METRIC_COLUMNS, v)), "source": PAPER_SOURCE}
                 for m, *v in PAPER_TABLE1]
    for method, scores in (ours or {}).items():
        missing = [k for k in METRIC_COLUMNS if k not in scores]
        if missing:
            raise ValueError(f"table1: scores of {method!r} lack {missing} (have {sorted(scores)})")
        rows.append({"method": method, **{k: round(100 * float(scores[k]), 2) for k in METRIC_COLUMNS},
                     "source": f"ours, {dataset}, run {run}"})
    return pd.DataFrame(rows, columns=["method", *METRIC_COLUMNS, "source"])

# --------------------------------------------------------------------------------------------------
# figure rows (chapter 06)
# --------------------------------------------------------------------------------------------------
def wrap_caption(caption: str, width: int = 60) -> str:
    """A caption wrapped to ``width`` characters for a figure; "(empty caption)" when there is none
    (chapter 06, under each tile)."""
    return textwrap.fill(caption or "(empty caption)", width)


def error_legend(categories: Sequence[int] = range(len(ERROR_CATEGORIES))) -> list:
    """Matplotlib patches naming the error categories in :data:`ERROR_COLORS` (chapter 06's figures);
    ``categories`` picks some, e.g. ``(FALSE_ALARM, MISS, WRONG_CLASS)``."""
    from matplotlib.patches import Patch

    return [Patch(facecolor=ERROR_COLORS[i] / 255, edgecolor="0.3", label=ERROR_CATEGORIES[i]) for i in categories]


def fix_legend() -> list:
    """Matplotlib patches naming the :data:`FIX_CATEGORIES` in :data:`FIX_COLORS` (chapter 06)."""
    from matplotlib.patches import Patch

    return [Patch(facecolor=FIX_COLORS[i] / 255, edgecolor="0.3", label=c) for i, c in enumerate(FIX_CATEGORIES)]


def draw_panels(axes, panels: Sequence[tuple[np.ndarray, str]]) -> None:
    """Draw ``(image, title)`` panels on a row of axes, pixels as they are, no ticks (chapter 06)."""
    for ax, (img, title) in zip(axes, panels):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.axis("off")


def error_row_panels(im1, im2, labels: tuple, preds: tuple, err: np.ndarray, model: str = "TextSCD") -> list:
    """The five panels of one pair in chapter 06's error-map figure: both dates with the errors blended over
    them (:func:`overlay_errors`), truth 1 | 2 and ``model`` 1 | 2 side by side in the SECOND colours, and
    the error map itself (:func:`colorize_errors`)."""

    def side_by_side(a, b):
        gap = np.zeros((a.shape[0], 2, 3), np.uint8)
        return np.hstack([colorize(a), gap, colorize(b)])

    return [(overlay_errors(im1, err), "date 1 + errors"), (overlay_errors(im2, err), "date 2 + errors"),
            (side_by_side(*labels), "truth 1 | 2"), (side_by_side(*preds), f"{model} 1 | 2"),
            (colorize_errors(err), "error map")]


def draw_error_row(axes, im1, im2, labels: tuple, preds: tuple, err: np.ndarray, model: str = "TextSCD") -> None:
    """One pair on five axes (chapter 06, "Error maps"): :func:`error_row_panels` drawn with
    :func:`draw_panels`. Give the axes width ratios 1, 1, 2, 2, 1 (the middle two hold two maps)."""
    draw_panels(axes, error_row_panels(im1, im2, labels, preds, err, model))
