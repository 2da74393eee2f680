"""Error records: every false alarm and every miss as a connected component, with its size, place, transition,
distance to the truth, kind and likely cause: chapter 06 (metrics and error analysis); ``textscd errors``.

The paper claims (§4.2, Fig. 4) that text guidance "mitigates false detections and omissions". A per-pixel
error map (:func:`textscd_lib.analysis.errors.error_map`) counts those pixels; this module turns them into
*objects* a person can reason about:

- a **component** is a connected region (8-connected, ``scipy.ndimage.label``) of false-alarm pixels or of
  miss pixels of one tile. It gets its area, bounding box, date(s), predicted and true transition (from → to,
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

:func:`tile_records` does one tile; :func:`records` many (as data frames). Per tile it also keeps the four
metrics (one 7×7 confusion matrix of the tile, `textscd_lib.metrics.scores_from_confusion`), the pixels per
error category and the component counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np
import pandas as pd
from scipy import ndimage

from textscd_lib.analysis.caption_errors import classes_mentioned
from textscd_lib.analysis.errors import ERROR_CATEGORIES, FALSE_ALARM, MISS, error_map
from textscd_lib.data.second import CLASSES
from textscd_lib.metrics import METRIC_COLUMNS, scores_from_confusion

BOUNDARY_PX = 3                      # see the module docstring: one stride-4 feature cell
STRUCTURE = np.ones((3, 3), bool)    # 8-connected components
ERRORS = ("false alarm", "miss")
KINDS = ("boundary", "isolated")
# pseudo-changes every mini-SECOND pair has (illumination, colour shift, shadow, noise) explain nothing apart;
# these do, in this order of preference
NOTABLE_PSEUDO = ("seasonal vegetation", "misregistration", "haze", "blur")
VEGETATION = {"low vegetation", "tree"}
N = len(CLASSES)
COMPONENT_COLUMNS = ("tile", "error", "id", "area", "r0", "c0", "r1", "c1", "date", "predicted", "true",
                     "distance_px", "reach_px", "kind", "event", "cause", "caption_names")


def confusion_of(pred: tuple, label: tuple) -> np.ndarray:
    """The tile's 7×7 confusion matrix H[pred, truth] over both dates (`textscd_lib.metrics`), as int64."""
    p1, p2, l1, l2 = (np.asarray(x, dtype=np.uint8) for x in (*pred, *label))   # codes ≤ 48 fit in uint8
    return (np.bincount((p1 * N + l1).ravel(), minlength=N * N)
            + np.bincount((p2 * N + l2).ravel(), minlength=N * N)).reshape(N, N)


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


def _majority(lab: np.ndarray, n: int, codes: np.ndarray) -> np.ndarray:
    on = lab > 0
    counts = np.bincount(lab[on].astype(np.int64) * (N * N) + codes[on], minlength=(n + 1) * N * N).reshape(n + 1, N * N)
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
    if error == "miss":
        for amb in scene.get("ambiguous", []):
            if _classes(true) & set(amb.get("classes", [])):
                return "designed ambiguity"
    kinds = {p.get("kind") for p in scene.get("pseudo_changes", [])}
    for k in NOTABLE_PSEUDO:
        if k in kinds and (k != "seasonal vegetation" or _classes(predicted if error == "false alarm" else true)
                           & VEGETATION):
            return k
    return "none logged"


def distance_to(mask: np.ndarray) -> np.ndarray | None:
    """Euclidean distance (px) of every pixel to the nearest pixel of ``mask``; None when ``mask`` is empty."""
    return ndimage.distance_transform_edt(~mask) if mask.any() else None


def tile_records(name: str, pred: tuple, label: tuple, caption: str | None = None, scene: Mapping | None = None,
                 boundary_px: int = BOUNDARY_PX, dist_true: np.ndarray | None = None) -> tuple[dict, list[dict]]:
    """The records of one tile (chapter 06): ``(tile row, component rows)``.

    ``pred`` and ``label`` are ``(map1, map2)`` index maps (0 = unchanged). The tile row holds the four
    metrics of the tile (NaN where undefined), the pixels of each category of ``error_map`` and, per error
    (false alarm, miss) and kind, the components and their pixels. ``caption`` (None = no caption) and
    ``scene`` (the tile's scene-log record, None = none) fill ``caption_names``, ``event`` and ``cause``.
    ``dist_true``: :func:`distance_to` of the true change, when already computed (it is the same for every
    method scored on this tile)."""
    p1, p2, l1, l2 = (np.asarray(x, dtype=np.uint8) for x in (*pred, *label))
    err = error_map(p1, p2, l1, l2)
    s = scores_from_confusion(confusion_of((p1, p2), (l1, l2)))
    row: dict = {"tile": name, **{k: float(s[k]) for k in METRIC_COLUMNS}}
    row.update({c: int(v) for c, v in zip(ERROR_CATEGORIES, np.bincount(err.ravel(), minlength=5))})
    true_change, pred_change = l1 > 0, (p1 > 0) | (p2 > 0)
    mentioned = classes_mentioned(caption) if caption is not None else None
    scale = err.shape[0] / scene["size"] if scene and scene.get("size") else 1.0
    pcode, tcode = p1 * N + p2, l1 * N + l2                  # uint8: ≤ 48
    comps: list[dict] = []
    if dist_true is None:
        dist_true = distance_to(true_change)
    for error, cat, other in (("false alarm", FALSE_ALARM, true_change), ("miss", MISS, pred_change)):
        lab, n = ndimage.label(err == cat, STRUCTURE)
        key = "fa" if error == "false alarm" else "miss"
        row.update({f"{key}_{k}": 0 for k in ("components", "boundary", "isolated", "boundary_px", "isolated_px")})
        if n == 0:
            continue
        area = np.bincount(lab.ravel(), minlength=n + 1)[1:]
        slices = ndimage.find_objects(lab)
        dmin, dmax = np.full(n, np.nan), np.full(n, np.nan)
        dist = dist_true if error == "false alarm" else distance_to(other)
        if dist is not None:
            for i, sl in enumerate(slices):
                d = dist[sl][lab[sl] == i + 1]
                dmin[i], dmax[i] = d.min(), d.max()
        both = np.bincount(lab.ravel(), weights=((p1 > 0) & (p2 > 0)).ravel(), minlength=n + 1)[1:]
        only1 = np.bincount(lab.ravel(), weights=(p1 > 0).ravel(), minlength=n + 1)[1:]
        ptr, ttr = _majority(lab, n, pcode), _majority(lab, n, tcode)
        for i, sl in enumerate(slices):
            box = (sl[0].start, sl[1].start, sl[0].stop, sl[1].stop)
            kind = "boundary" if dmin[i] <= boundary_px else "isolated"   # NaN (nothing on the other side): isolated
            date = ("both" if error == "miss" or both[i] * 2 >= area[i] else "1" if only1[i] > area[i] - only1[i]
                    else "2")
            predicted, true = transition_name(ptr[i]), transition_name(ttr[i])
            comps.append({"tile": name, "error": error, "id": i + 1, "area": int(area[i]), "r0": box[0],
                          "c0": box[1], "r1": box[2], "c1": box[3], "date": date, "predicted": predicted,
                          "true": true, "distance_px": float(dmin[i]), "reach_px": float(dmax[i]), "kind": kind,
                          "event": _overlapping_event(scene, box, scale, boundary_px, true),
                          "cause": _cause(scene, error, predicted, true),
                          "caption_names": caption_naming(mentioned, predicted, true)})
            row[f"{key}_{kind}"] += 1
            row[f"{key}_{kind}_px"] += int(area[i])
        row[f"{key}_components"] = n
    row["changed"] = int(true_change.sum())
    row["pixels"] = int(true_change.size)
    return row, comps


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
