"""What each false detection costs: oracle fixes per error type and a boundary tolerance curve (chapter 06;
``textscd errors``).

Every wrong pixel of a pair has one of five types (:data:`ERROR_TYPES`, assigned per connected component by
`textscd_lib.analysis.records`): a false alarm or a miss near a true change (``boundary``) or away from it
(``isolated``), or a change found with a wrong class on a date (``wrong class``). Following TIDE's idea of
*oracle fixes* (fix one error type, re-score, the gain is what that type cost), :func:`attribution_table`
answers "how many SeK points does each type cost?" on the pooled 7×7 confusion matrix of the SECOND protocol
(`textscd_lib.metrics.scores_from_confusion`):

- a **fix** makes false-alarm pixels unchanged on both dates and miss / wrong-class pixels equal to the truth
  (:func:`oracle_fix` does it on maps, for checking);
- mode ``isolated``: each type fixed alone. The gains do **not** add up to the gap to 100: SeK is a product of
  kappa and exp(IoU_c), so what one fix is worth depends on what else is still wrong;
- mode ``progressive``: the types fixed one after another in :data:`ERROR_TYPES` order, cumulatively; the last
  row reaches 100 (everything fixed). Each gain is then the cost of a type *given the earlier ones fixed*.

A fix changes only confusion counts, so nothing is re-scored map by map: :func:`confusion_delta` gives, for
any labelling of pixels (error type, component, distance bin), what fixing each label adds to H; deltas add up
over tiles and over labels, and :func:`fixed_scores` scores ``H + delta``. :func:`tolerance_curve` forgives
every wrong pixel within k px of a true change boundary (:func:`boundary_distance`), k = 0..8.

Every table scores :data:`METRICS` and the change-only :data:`CHANGE_METRICS` (IoU_c and the change F1 of the
2×2 change confusion, `textscd_lib.metrics.change_confusion`), so a semantic method and a change-only one can be
compared on what both have. For a **binary** method (``binary=True``: a change mask per pair, no classes) the
confusion ``H`` is that of its scoring maps (`textscd_lib.analysis.records.maps_of_change_mask`): only the change
metrics and mIoU are defined; OA, SeK and F_scd are NaN, and so are the wrong-class rows (not applicable, never
a zero gain).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from textscd_lib.metrics import change_confusion, scores_from_change_masks, scores_from_confusion

N = 7                                       # classes, 0 = unchanged
ERROR_TYPES = ("false alarm boundary", "false alarm isolated", "miss boundary", "miss isolated", "wrong class")
FALSE_ALARM_TYPES = (0, 1)                  # indices into ERROR_TYPES fixed to "unchanged"
MODES = ("isolated", "progressive")
METRICS = ("OA", "mIoU", "SeK", "F_scd")    # the order the report prints them
CHANGE_METRICS = ("IoU_c", "change_F1")     # change only: defined for a binary method too
SCORED = METRICS + CHANGE_METRICS           # every table's metrics
WRONG_CLASS_TYPE = ERROR_TYPES.index("wrong class")
TOLERANCE_PX = tuple(range(9))              # k = 0..8 px
ATTRIBUTION_COLUMNS = ("method", "error", "mode", "metric", "base", "fixed", "gain")
TOLERANCE_COLUMNS = ("method", "k", "k_share_of_diagonal", "metric", "value")


def oracle_fix(pred: tuple, label: tuple, mask: np.ndarray, to: str = "truth") -> tuple[np.ndarray, np.ndarray]:
    """The prediction ``(map1, map2)`` with the pixels of ``mask`` fixed (chapter 06): set to the truth
    (``to="truth"``, for misses and wrong classes) or to unchanged on both dates (``to="unchanged"``, for false
    alarms). Returns new maps; the inputs are not modified."""
    if to not in ("truth", "unchanged"):
        raise ValueError(f"oracle_fix: to must be 'truth' or 'unchanged', got {to!r}")
    mask = np.asarray(mask, bool)
    out = []
    for p, t in zip(pred, label):
        p = np.array(p, dtype=np.uint8, copy=True)
        p[mask] = np.asarray(t, np.uint8)[mask] if to == "truth" else 0
        out.append(p)
    return out[0], out[1]


def confusion_delta(pred: tuple, label: tuple, index: np.ndarray, n: int,
                    to_unchanged: Sequence[bool] | np.ndarray | None = None) -> np.ndarray:
    """What fixing each labelled group of pixels adds to the 7×7 confusion H (both dates), shape (n, 7, 7),
    int64 (chapter 06).

    ``index`` holds a group 0..n−1 per pixel, or −1 / any value ≥ n for "not fixed". Group g is fixed to the
    truth, or to unchanged where ``to_unchanged[g]``. ``H + delta[g]`` is then the confusion of the prediction
    with group g fixed, and ``H + delta[G].sum(0)`` with all groups of G fixed (groups do not overlap)."""
    idx = np.asarray(index).ravel().astype(np.int64)
    sel = (idx >= 0) & (idx < n)
    g = idx[sel]
    unch = np.zeros(n, bool) if to_unchanged is None else np.asarray(to_unchanged, bool)
    out = np.zeros(n * N * N, np.int64)
    for p, t in zip(pred, label):
        p = np.asarray(p).ravel()[sel].astype(np.int64)
        t = np.asarray(t).ravel()[sel].astype(np.int64)
        newp = np.where(unch[g], 0, t)
        out += np.bincount(g * N * N + newp * N + t, minlength=n * N * N)
        out -= np.bincount(g * N * N + p * N + t, minlength=n * N * N)
    return out.reshape(n, N, N)


def boundary_distance(label: tuple, dist_out: np.ndarray | None = None) -> np.ndarray:
    """Distance in px of every pixel to the boundary of the true change (chapter 06): for an unchanged pixel
    the distance to the nearest changed one, for a changed pixel to the nearest unchanged one (so pixels on
    either side of an edge are 1 px away). ``inf`` where the tile has no edge. ``dist_out``: the first part,
    when already computed (`textscd_lib.analysis.records.distance_to`)."""
    from scipy import ndimage

    change = (np.asarray(label[0]) > 0) | (np.asarray(label[1]) > 0)
    if not change.any() or change.all():
        return np.full(change.shape, np.inf)
    if dist_out is None:
        dist_out = ndimage.distance_transform_edt(~change)
    return np.where(change, ndimage.distance_transform_edt(change), dist_out)


def tolerance_bins(dist: np.ndarray, wrong: np.ndarray, k_max: int = TOLERANCE_PX[-1]) -> np.ndarray:
    """Per pixel the smallest k (1..k_max) at which :func:`tolerance_curve` forgives it, −1 for a correct pixel
    or one farther than ``k_max`` px (a group index for :func:`confusion_delta` with n = k_max + 1)."""
    b = np.ceil(np.where(np.isfinite(dist), dist, k_max + 1)).astype(np.int64)
    return np.where(wrong & (b <= k_max), b, -1)


def _clean(v) -> float:
    return float("nan") if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def fixed_scores(H: np.ndarray, delta: np.ndarray | None = None, binary: bool = False) -> dict[str, float]:
    """:data:`SCORED` (×100, as the report prints them) of ``H + delta`` (chapter 06). ``binary``: a change-only
    method, scored on the change confusion alone (OA, SeK, F_scd NaN: not applicable)."""
    H = np.asarray(H, np.int64) + (0 if delta is None else np.asarray(delta, np.int64))
    change = scores_from_change_masks(change_confusion(H))
    s = change if binary else scores_from_confusion(H)
    return {**{m: 100 * _clean(s[m]) for m in METRICS}, **{m: 100 * _clean(change[m]) for m in CHANGE_METRICS}}


def attribution_table(H: np.ndarray, deltas: np.ndarray, method: str = "A", binary: bool = False) -> pd.DataFrame:
    """Oracle-fix attribution of one method (chapter 06), columns :data:`ATTRIBUTION_COLUMNS`, values ×100,
    one row per error type, mode and metric of :data:`SCORED`.

    ``H``: the pooled 7×7 confusion; ``deltas``: (5, 7, 7), what fixing each of :data:`ERROR_TYPES` adds to it
    (summed over tiles, :func:`confusion_delta`). Mode ``isolated`` fixes one type; ``progressive`` fixes the
    types in order, cumulatively (its last row has everything fixed). ``binary``: a change-only method; its
    wrong-class rows are NaN (not applicable), the misses' progressive row already has everything fixed."""
    deltas = np.asarray(deltas, np.int64)
    base = fixed_scores(H, binary=binary)
    rows = []
    cum = np.zeros((N, N), np.int64)
    for t, name in enumerate(ERROR_TYPES):
        cum = cum + deltas[t]
        for mode, d in (("isolated", deltas[t]), ("progressive", cum)):
            fixed = fixed_scores(H, d, binary)
            if binary and t == WRONG_CLASS_TYPE:
                fixed = dict.fromkeys(SCORED, float("nan"))
            rows += [{"method": method, "error": name, "mode": mode, "metric": m, "base": base[m],
                      "fixed": fixed[m], "gain": fixed[m] - base[m]} for m in SCORED]
    return pd.DataFrame(rows, columns=list(ATTRIBUTION_COLUMNS))


def tolerance_curve(H: np.ndarray, bin_deltas: np.ndarray, diagonal_px: float, method: str = "A",
                    binary: bool = False) -> pd.DataFrame:
    """Scores (×100) when every wrong pixel within k px of a true change boundary counts as correct, k = 0..8
    (chapter 06); columns :data:`TOLERANCE_COLUMNS`. ``bin_deltas[b]`` (shape (9, 7, 7)) is what forgiving
    the pixels of :func:`tolerance_bins` b adds to ``H``; ``diagonal_px`` the tile diagonal, so k can be read as
    a share of the tile (the same k means less on a larger tile). ``binary``: a change-only method (its curve
    is on the change metrics; the semantic ones are NaN)."""
    bin_deltas = np.asarray(bin_deltas, np.int64)
    rows = []
    for k in TOLERANCE_PX:
        s = fixed_scores(H, bin_deltas[:k + 1].sum(0), binary)
        rows += [{"method": method, "k": k, "k_share_of_diagonal": k / diagonal_px if diagonal_px else float("nan"),
                  "metric": m, "value": s[m]} for m in SCORED]
    return pd.DataFrame(rows, columns=list(TOLERANCE_COLUMNS))


def sanity_scores(H: np.ndarray) -> dict[str, dict[str, float]]:
    """Two reference lines for any method (chapter 06), ×100: the truth as the prediction (every count on the
    diagonal: SeK 100) and an all-unchanged prediction (every pixel in row 0: the floor a method must beat)."""
    H = np.asarray(H, np.int64)
    truth = H.sum(0)
    floor = np.zeros_like(H)
    floor[0] = truth
    return {"truth as prediction": fixed_scores(np.diag(truth)), "all unchanged": fixed_scores(floor)}


def shares(pixels: Mapping[str, int | None]) -> dict[str, float]:
    """Each error type's share (%) of the wrong pixels; they add to 100 (NaN when nothing is wrong). A type
    given as None (not applicable: wrong class for a binary method) has a NaN share and adds nothing."""
    counted = {t: int(pixels.get(t) or 0) for t in ERROR_TYPES if t not in pixels or pixels[t] is not None}
    total = sum(counted.values())
    return {t: (100 * counted[t] / total if total and t in counted else float("nan")) for t in ERROR_TYPES}


SIZE_BINS = (0, 16, 64, 256, 1024, 4096)          # component area in px: <16, 16-63, ..., >=4096
CHANGED_BINS = (0.0, 0.05, 0.2, 0.5)             # changed share of the tile: none, <5 %, 5-20 %, 20-50 %, >=50 %
SLICE_COLUMNS = ("method", "slice", "value", "error", "components", "pixels",
                 *(f"gain_{m}" for m in SCORED))


def size_bin(area) -> np.ndarray:
    """'<16 px', '16–63 px', ..., '≥4096 px' for component areas (chapter 06 slices)."""
    edges = SIZE_BINS[1:]
    names = [f"<{edges[0]} px", *(f"{a}–{b - 1} px" for a, b in zip(edges, edges[1:])), f"≥{edges[-1]} px"]
    return np.array(names, dtype=object)[np.searchsorted(edges, np.asarray(area), side="right")]


def changed_bin(share) -> np.ndarray:
    """'no change', '<5 %', '5–20 %', '20–50 %', '≥50 %' for the changed share of a tile (chapter 06 slices)."""
    share = np.asarray(share, float)
    names = np.array(["<5 %", "5–20 %", "20–50 %", "≥50 %"], dtype=object)
    out = names[np.clip(np.searchsorted(CHANGED_BINS[1:], share, side="right"), 0, 3)]
    return np.where(share <= 0, "no change", out)


def slice_table(H: np.ndarray, components: pd.DataFrame, component_delta: np.ndarray, changed_share: Mapping,
                method: str = "A", binary: bool = False) -> pd.DataFrame:
    """Component counts, pixels and the gain of fixing just those components (isolated oracle fix, ×100) per
    slice of the components (chapter 06): size bin, transition (predicted for a false alarm, true otherwise),
    the changed share of the tile (``changed_share[tile]``, 0..1), cause (scene log) and what the caption
    names; each per error type and over ``all`` types. Columns :data:`SLICE_COLUMNS`; ``binary`` as in
    :func:`fixed_scores`."""
    c = components.reset_index(drop=True)
    if c.empty:
        return pd.DataFrame(columns=list(SLICE_COLUMNS))
    err = (c["error"] + " " + c["kind"].fillna("")).str.strip()
    dims = {"size": size_bin(c["area"]),
            "transition": np.where(c["error"] == "false alarm", c["predicted"], c["true"]),
            "changed share of tile": changed_bin(c["tile"].map(changed_share).fillna(0).to_numpy()),
            "cause": c["cause"].fillna("").to_numpy(), "caption names": c["caption_names"].fillna("").to_numpy()}
    base = fixed_scores(H, binary=binary)
    delta = np.asarray(component_delta, np.int64).reshape(len(c), -1)
    rows = []
    for dim, values in dims.items():
        if not (pd.Series(values) != "").any():
            continue                                  # no scene log / no captions: no such slice
        for error in ("all", *ERROR_TYPES):
            sel = np.ones(len(c), bool) if error == "all" else (err == error).to_numpy()
            for value in sorted(set(values[sel])):
                m = sel & (values == value)
                s = fixed_scores(H, delta[m].sum(0).reshape(N, N), binary)
                rows.append({"method": method, "slice": dim, "value": value, "error": error,
                             "components": int(m.sum()), "pixels": int(c.loc[m, "area"].sum()),
                             **{f"gain_{k}": s[k] - base[k] for k in SCORED}})
    return pd.DataFrame(rows, columns=list(SLICE_COLUMNS))
