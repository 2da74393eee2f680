"""Error records: every false alarm and every miss as a connected component, with its size, place, transition,
distance to the truth, kind and likely cause: chapter 06 (metrics and error analysis); ``textscd errors``.

The paper claims (§4.2, Fig. 4) that text guidance "mitigates false detections and omissions". A per-pixel
error map (:func:`textscd_lib.analysis.errors.error_map`) counts those pixels; this module turns them into
*objects* a person can reason about:

- a **component** is a connected region (8-connected, ``scipy.ndimage.label``) of false-alarm, miss or
  wrong-class pixels (changed in truth and prediction, a date's class wrong) of one tile, so every wrong pixel
  lies in one component of one of five error types (`textscd_lib.analysis.attribution.ERROR_TYPES`). It gets its area, bounding box, date(s), predicted and true transition (from → to,
  the majority inside it), and its distance in pixels (``scipy.ndimage.distance_transform_edt``): for a false
  alarm to the nearest *true* change, for a miss to the nearest *predicted* change.
- its **kind**: ``boundary`` when that distance is at most :data:`BOUNDARY_PX` pixels (the rim of a real
  change drawn too wide, or a real change drawn too small), ``isolated`` otherwise (a change invented, or
  a change missed, away from anything the other side saw). Why 3 px: the decoder's finest features have
  stride 4 (ResNet34, `textscd_lib.models.image_encoder.STRIDES`), so an edge placed one feature cell off lands
  up to 3 px away after upsampling; hand-drawn SECOND edges and mini-SECOND's 1–2 px misregistration are
  uncertain by about as much. ``reach_px`` (the farthest pixel) tells a thin rim from a blob that grows out
  of a true change.
- where a **scene log** exists (mini-SECOND, `textscd_lib.data.synthetic.read_scene_log`): the change event whose
  box it overlaps, and a ``cause`` from the pseudo-changes of the tile (seasonal vegetation for a vegetation
  false alarm, misregistration, haze, blur; "designed ambiguity" for a miss of an ambiguous class pair);
- where **captions** exist: whether the caption names the predicted classes, the true classes, both or
  neither (`textscd_lib.analysis.caption_errors.classes_mentioned`).

:func:`tile_analysis` does one tile, with its confusions and what fixing each error type, component or
boundary-distance bin adds to them (for `textscd_lib.analysis.attribution`); :func:`tile_records` returns its
rows; :func:`records` does many tiles (as data frames). Per tile it also keeps the four
metrics (one 7×7 confusion matrix of the tile, `textscd_lib.metrics.scores_from_confusion`), the pixels per
error category and the component counts.

A **change-only (binary) method** predicts a change mask and no classes. :func:`maps_of_change_mask` turns the
mask into scoring maps (the true classes where it found a change, a placeholder class where it invented one), and
``tile_analysis(..., binary=True)`` keeps what applies: false alarms and misses with their kinds, the change
scores (IoU_c, change F1, mIoU); a false alarm's predicted transition is :data:`CHANGED_NO_CLASS`, and OA, SeK,
F_scd and the wrong-class counts are NaN (not applicable), never zero.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage

from textscd_lib.analysis import attribution as A
from textscd_lib.analysis.caption_errors import classes_mentioned
from textscd_lib.analysis.errors import ERROR_CATEGORIES, FALSE_ALARM, MISS, WRONG_CLASS, error_map
from textscd_lib.data.second import CLASSES
from textscd_lib.metrics import (
    METRIC_COLUMNS,
    change_confusion,
    scores_from_change_masks,
    scores_from_confusion,
)

BOUNDARY_PX = 3                      # see the module docstring: one stride-4 feature cell
STRUCTURE = np.ones((3, 3), bool)    # 8-connected components
ERRORS = ("false alarm", "miss", "wrong class")
KINDS = ("boundary", "isolated")
# pseudo-changes every mini-SECOND pair has (illumination, colour shift, shadow, noise) explain nothing apart;
# these do, in this order of preference
NOTABLE_PSEUDO = ("seasonal vegetation", "misregistration", "haze", "blur")
VEGETATION = {"low vegetation", "tree"}
N = len(CLASSES)
CHANGED_NO_CLASS = "changed (no class)"   # what a binary method predicts where it predicts a change
PLACEHOLDER_CLASS = 1                     # a binary false alarm's class in its scoring maps (never reported)
WRONG_CLASS_COLUMNS = (ERROR_CATEGORIES[WRONG_CLASS], "wc_components", "wc_px")   # NaN for a binary method
COMPONENT_COLUMNS = ("tile", "error", "id", "area", "r0", "c0", "r1", "c1", "date", "predicted", "true",
                     "distance_px", "reach_px", "kind", "event", "cause", "caption_names")


def confusion_of(pred: tuple, label: tuple) -> np.ndarray:
    """The tile's 7×7 confusion matrix H[pred, truth] over both dates (`textscd_lib.metrics`), as int64."""
    p1, p2, l1, l2 = (np.asarray(x, dtype=np.uint8) for x in (*pred, *label))   # codes ≤ 48 fit in uint8
    return (np.bincount((p1 * N + l1).ravel(), minlength=N * N)
            + np.bincount((p2 * N + l2).ravel(), minlength=N * N)).reshape(N, N)


def maps_of_change_mask(mask: np.ndarray, label: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Scoring maps ``(pred1, pred2)`` of a binary change prediction (chapter 06; ``textscd errors`` on a change-only
    method): the true classes where the mask and the truth are both changed (so no pixel is a wrong class),
    :data:`PLACEHOLDER_CLASS` on both dates where only the mask is (a false alarm), 0 elsewhere. Their error map
    has false alarms and misses exactly where the mask and the truth's change disagree."""
    mask = np.asarray(mask, bool)
    out = [np.where(mask, np.where(np.asarray(t) > 0, t, PLACEHOLDER_CLASS), 0).astype(np.uint8) for t in label]
    return out[0], out[1]


def transition_name(code: int) -> str:
    """'low vegetation→building' for a code ``from * 7 + to``; 'unchanged' for (0, 0) (chapter 06)."""
    a, b = divmod(int(code), N)
    return "unchanged" if a == b == 0 else f"{CLASSES[a]}→{CLASSES[b]}"


def _classes(transition: str) -> set[str]:
    return set() if transition == "unchanged" else set(transition.split("→")) - {"unchanged"}


def caption_naming(mentioned: set[str] | None, predicted: str, true: str) -> str:
    """Does a caption (its mentioned classes) name the ``predicted`` transition's classes, the ``true`` one's,
    ``both`` or ``neither``? ``""`` when there is no caption (chapter 06)."""
    if mentioned is None:
        return ""
    p, t = bool(_classes(predicted) & mentioned), bool(_classes(true) & mentioned)
    return "both" if p and t else "predicted" if p else "true" if t else "neither"


def _majority(labels: np.ndarray, n: int, codes: np.ndarray) -> np.ndarray:
    """Per component the most frequent code; ``labels`` (1..n) and ``codes`` are those of its pixels only."""
    counts = np.bincount(labels * (N * N) + codes, minlength=(n + 1) * N * N).reshape(n + 1, N * N)
    return counts[1:].argmax(1)


def _overlapping_event(scene: Mapping | None, box: tuple[int, int, int, int], scale: float, pad: int,
                       transition: str = "") -> str:
    """The scene-log change event whose bounding box (padded by ``pad`` px) overlaps ``box`` the most; an event
    of the same ``transition`` as the component is preferred to any other."""
    best, best_key = "", (False, 0.0)
    for ev in (scene or {}).get("changes", []):
        r0, c0, r1, c1 = (v * scale for v in ev["bbox"])
        h = min(box[2], r1 + pad) - max(box[0], r0 - pad)
        w = min(box[3], c1 + pad) - max(box[1], c0 - pad)
        name = f"{ev['from']}→{ev['to']}"
        key = (name == transition, h * w)
        if h > 0 and w > 0 and key > best_key:
            best, best_key = name, key
    return best


def _cause(scene: Mapping | None, error: str, predicted: str, true: str) -> str:
    """Which logged pseudo-change (or designed ambiguity) may explain a component; "" without a scene log."""
    if scene is None:
        return ""
    if error != "false alarm":
        for amb in scene.get("ambiguous", []):
            if _classes(true) & set(amb.get("classes", [])):
                return "designed ambiguity"
    kinds = {p.get("kind") for p in scene.get("pseudo_changes", [])}
    for k in NOTABLE_PSEUDO:
        if k in kinds and (k != "seasonal vegetation" or _classes(true if error == "miss" else predicted)
                           & VEGETATION):
            return k
    return "none logged"


def distance_to(mask: np.ndarray) -> np.ndarray | None:
    """Euclidean distance (px) of every pixel to the nearest pixel of ``mask``; None when ``mask`` is empty."""
    return ndimage.distance_transform_edt(~mask) if mask.any() else None


@dataclass
class TileErrors:
    """Everything one tile contributes (chapter 06): the tile row, the component rows (false alarms, misses,
    wrong classes, in that order), the tile's 7×7 confusion ``H``, the 37×37 from→to confusion ``T``, and what
    fixing each error type / each component / each tolerance bin adds to ``H``
    (`textscd_lib.analysis.attribution.confusion_delta`): ``type_delta`` (5, 7, 7) in
    `~textscd_lib.analysis.attribution.ERROR_TYPES` order, ``component_delta`` (one per component row) and
    ``tolerance_delta`` (9, 7, 7)."""

    row: dict
    components: list[dict]
    H: np.ndarray
    T: np.ndarray
    type_delta: np.ndarray
    component_delta: np.ndarray
    tolerance_delta: np.ndarray


def _component_rows(ctx: dict, error: str, lab: np.ndarray, n: int, dist: np.ndarray | None) -> list[dict]:
    """One row per component of ``lab`` (one error of one tile); ``ctx`` holds the tile's maps and context."""
    at = np.flatnonzero(lab)                 # the components' pixels only: errors are a small part of a tile
    labels = lab.ravel()[at].astype(np.int64)
    area = np.bincount(labels, minlength=n + 1)[1:]
    slices = ndimage.find_objects(lab)
    dmin, dmax = np.full(n, np.nan), np.full(n, np.nan)
    if dist is not None and n:
        order = np.argsort(labels, kind="stable")
        d, starts = dist.ravel()[at][order], np.concatenate([[0], np.cumsum(area)[:-1]])
        dmin, dmax = np.minimum.reduceat(d, starts), np.maximum.reduceat(d, starts)
    p1, p2, l1, l2 = (x.ravel()[at] for x in ctx["maps"])
    on1 = (p1 != l1) if error == "wrong class" else (p1 > 0)
    on2 = (p2 != l2) if error == "wrong class" else (p1 > 0) & (p2 > 0)
    first = np.bincount(labels, weights=on1, minlength=n + 1)[1:]
    second = np.bincount(labels, weights=on2, minlength=n + 1)[1:]
    ptr, ttr = (_majority(labels, n, ctx[k].ravel()[at].astype(np.int64)) for k in ("pcode", "tcode"))
    rows = []
    for i, sl in enumerate(slices):
        box = (sl[0].start, sl[1].start, sl[0].stop, sl[1].stop)
        predicted, true = transition_name(ptr[i]), transition_name(ttr[i])
        if ctx["binary"] and error == "false alarm":
            predicted = CHANGED_NO_CLASS
        rows.append({"tile": ctx["name"], "error": error, "id": i + 1, "area": int(area[i]), "r0": box[0],
                     "c0": box[1], "r1": box[2], "c1": box[3], "date": _date(error, area[i], first[i], second[i]),
                     "predicted": predicted, "true": true, "distance_px": float(dmin[i]),
                     "reach_px": float(dmax[i]), "kind": _kind(error, dmin[i], ctx["boundary_px"]),
                     "event": _overlapping_event(ctx["scene"], box, ctx["scale"], ctx["boundary_px"], true),
                     "cause": _cause(ctx["scene"], error, predicted, true),
                     "caption_names": caption_naming(ctx["mentioned"], predicted, true)})
    return rows


def _kind(error: str, distance: float, boundary_px: int) -> str:
    if error == "wrong class":
        return ""
    return "boundary" if distance <= boundary_px else "isolated"    # NaN (nothing on the other side): isolated


def _date(error: str, area: int, first: float, second: float) -> str:
    """False alarm: the date(s) predicted changed (``second`` = both); miss: both; wrong class: the date(s)
    whose class is wrong (``first`` = date 1 wrong, ``second`` = date 2 wrong)."""
    if error == "miss":
        return "both"
    if error == "false alarm":
        return "both" if second * 2 >= area else "1" if first > area - first else "2"
    if first * 2 >= area and second * 2 >= area:
        return "both"
    return "1" if first >= second else "2"


def _type_index(c: dict) -> int:
    return A.ERROR_TYPES.index(f"{c['error']} {c['kind']}".strip())


def tile_analysis(name: str, pred: tuple, label: tuple, caption: str | None = None, scene: Mapping | None = None,
                  boundary_px: int = BOUNDARY_PX, dist_true: np.ndarray | None = None,
                  depth: np.ndarray | None = None, binary: bool = False) -> TileErrors:
    """The records, confusions and fix deltas of one tile (chapter 06; see :class:`TileErrors`).

    ``pred`` and ``label`` are ``(map1, map2)`` index maps (0 = unchanged). Every wrong pixel lies in exactly
    one component: a false alarm or a miss (``kind`` boundary / isolated by :data:`BOUNDARY_PX`) or a wrong
    class (changed in truth and prediction, a date's class wrong; ``kind`` empty, ``distance_px`` the depth
    inside the true change). ``caption`` (None = no caption) and ``scene`` (the tile's scene-log record) fill
    ``caption_names``, ``event`` and ``cause``. ``dist_true`` / ``depth``: :func:`distance_to` of the true
    change / of the true unchanged area, when already computed (they are the same for every method scored on
    this tile). ``binary``: ``pred`` are the scoring maps of a change-only method (:func:`maps_of_change_mask`);
    the tile row's semantic scores and wrong-class counts are NaN, ``T`` is zero (no from→to types)."""
    p1, p2, l1, l2 = (np.asarray(x, dtype=np.uint8) for x in (*pred, *label))
    err = error_map(p1, p2, l1, l2)
    H = confusion_of((p1, p2), (l1, l2))
    row = _tile_row(name, H, err, binary)
    true_change, pred_change = l1 > 0, (p1 > 0) | (p2 > 0)
    if dist_true is None:                    # None again when there is no change: cheap to recompute
        dist_true = distance_to(true_change)
    if depth is None:
        depth = distance_to(~true_change)
    ctx = {"name": name, "maps": (p1, p2, l1, l2), "pcode": p1 * N + p2, "tcode": l1 * N + l2,
           "boundary_px": boundary_px, "scene": scene, "binary": binary, "mentioned": classes_mentioned(caption) if caption is not None
           else None, "scale": err.shape[0] / scene["size"] if scene and scene.get("size") else 1.0}
    comps, cid, offset = [], np.zeros(err.shape, np.int64), 0
    for error, cat, dist in (("false alarm", FALSE_ALARM, dist_true), ("miss", MISS, None),
                             ("wrong class", WRONG_CLASS, depth)):
        lab, n = ndimage.label(err == cat, STRUCTURE)
        if error == "miss" and n:
            dist = distance_to(pred_change)
        comps += _component_rows(ctx, error, lab, n, dist)
        cid[lab > 0] = lab[lab > 0] + offset
        offset += n
    _count_kinds(row, comps)
    if binary:
        row.update(dict.fromkeys(WRONG_CLASS_COLUMNS, float("nan")))
    types = np.array([_type_index(c) for c in comps], np.int64)
    comp_delta = A.confusion_delta((p1, p2), (l1, l2), cid - 1, offset, np.isin(types, A.FALSE_ALARM_TYPES))
    type_delta = np.zeros((len(A.ERROR_TYPES), N, N), np.int64)
    np.add.at(type_delta, types, comp_delta)
    dist_edge = np.where(true_change, depth, dist_true) if dist_true is not None and depth is not None else np.inf
    bins = A.tolerance_bins(np.broadcast_to(dist_edge, err.shape), err >= FALSE_ALARM)
    tol = A.confusion_delta((p1, p2), (l1, l2), bins, len(A.TOLERANCE_PX))
    row["changed"], row["pixels"] = int(true_change.sum()), int(true_change.size)
    T = np.zeros((1 + (N - 1) ** 2,) * 2, np.int64) if binary else transition_confusion((p1, p2), (l1, l2))
    return TileErrors(row, comps, H, T, type_delta, comp_delta, tol)


def _tile_row(name: str, H: np.ndarray, err: np.ndarray, binary: bool = False) -> dict:
    """The tile's metrics (semantic ones NaN for a binary method), change scores and pixels per category."""
    change = scores_from_change_masks(change_confusion(H))
    s = change if binary else scores_from_confusion(H)
    row: dict = {"tile": name, **{k: float(s[k]) for k in METRIC_COLUMNS},
                 "IoU_c": float(change["IoU_c"]), "change_F1": float(change["change_F1"])}
    row.update({c: int(v) for c, v in zip(ERROR_CATEGORIES, np.bincount(err.ravel(), minlength=5))})
    return row


def _count_kinds(row: dict, comps: list[dict]) -> None:
    """Per error and kind, the components and their pixels (``fa_isolated``, ``miss_boundary_px``, ``wc``...)."""
    for key in ("fa", "miss"):
        row.update({f"{key}_{k}": 0 for k in ("components", "boundary", "isolated", "boundary_px", "isolated_px")})
    row.update({"wc_components": 0, "wc_px": 0})
    for c in comps:
        key = {"false alarm": "fa", "miss": "miss", "wrong class": "wc"}[c["error"]]
        row[f"{key}_components"] += 1
        if key == "wc":
            row["wc_px"] += c["area"]
        else:
            row[f"{key}_{c['kind']}"] += 1
            row[f"{key}_{c['kind']}_px"] += c["area"]


def transition_confusion(pred: tuple, label: tuple) -> np.ndarray:
    """The tile's 37×37 from→to confusion (codes of `textscd_lib.metrics.transition_codes`: 0 unchanged, else
    1 + 6·(c1 − 1) + (c2 − 1); a pixel changed on one date only counts as unchanged) for the other SeK
    convention, `textscd_lib.metrics.scores_from_transitions`. Maps are index maps 0..6 (uint8)."""
    k = 1 + (N - 1) ** 2

    def codes(a, b):
        a, b = np.asarray(a, np.int16), np.asarray(b, np.int16)
        return np.where((a > 0) & (b > 0), (N - 1) * a + b - N + 1, 0).astype(np.int32)   # 1 + 6(a−1) + (b−1)

    return np.bincount((codes(*pred) * k + codes(*label)).ravel(), minlength=k * k).reshape(k, k)


def tile_records(name: str, pred: tuple, label: tuple, caption: str | None = None, scene: Mapping | None = None,
                 boundary_px: int = BOUNDARY_PX, dist_true: np.ndarray | None = None) -> tuple[dict, list[dict]]:
    """The records of one tile (chapter 06): ``(tile row, component rows)`` of :func:`tile_analysis`.

    The tile row holds the four metrics of the tile (NaN where undefined), the pixels of each category of
    ``error_map`` and, per error (false alarm, miss) and kind, the components and their pixels; wrong classes
    in ``wc_components`` / ``wc_px``."""
    t = tile_analysis(name, pred, label, caption, scene, boundary_px, dist_true)
    return t.row, t.components


def records(names: Iterable[str], get_maps: Callable[[str], tuple[tuple, tuple]],
            captions: Mapping[str, str] | None = None, scene_log: Mapping[str, Mapping] | None = None,
            boundary_px: int = BOUNDARY_PX, progress: Callable | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`tile_records` for many tiles (chapter 06): ``(tiles, components)`` data frames.

    ``get_maps(name)`` returns ``((pred1, pred2), (label1, label2))``, so maps may come from memory or be
    read from disk one tile at a time. A tile missing from ``captions`` has no caption (``caption_names``
    stays empty); ``progress`` wraps the name iterator (e.g. ``tqdm``)."""
    names = list(names)
    rows, comps = [], []
    for name in (progress(names) if progress else names):
        pred, label = get_maps(name)
        cap = captions.get(name) if captions is not None else None
        row, c = tile_records(name, pred, label, cap, (scene_log or {}).get(name), boundary_px)
        rows.append(row)
        comps += c
    tiles = pd.DataFrame(rows).set_index("tile") if rows else pd.DataFrame()
    return tiles, pd.DataFrame(comps, columns=list(COMPONENT_COLUMNS))
