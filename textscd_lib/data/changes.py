"""mini-SECOND change events: which regions change class between the dates, and the designed ambiguity
(chapter 01, ``notebooks/01_data_exploration.ipynb``; chapter 07 asks when text helps).

Regions change class at SECOND-like frequencies (:data:`TRANSITIONS`: vegetation→building, ground→building,
tree→ground, …; about 20 % of the pixels on average): buildings are demolished whole, construction sites get
new buildings fitted inside them, other changes are smooth blobs.

``ambiguity`` is a designed property of this synthetic data, **not a claim about SECOND**: in that fraction
of scenes one pair of classes (:data:`AMBIGUOUS_PAIRS`: low vegetation/tree, or ground/playground) is drawn
with one shared texture inside the changed regions, so the pixels cannot say which of the two it is; only
the pair's description (a caption naming the true class) can. Here the forced change is painted; the shared
texture is drawn by :func:`textscd_lib.data.synthetic.make_pair`.
"""

from __future__ import annotations

import numpy as np

from textscd_lib.data.scene import LV, B, G, P, T, W, blob_mask, place_rects
from textscd_lib.data.second import NUM_CLASSES

# (from, to): weight — SECOND-like transition frequencies (building, low vegetation, ground dominate).
TRANSITIONS: dict[tuple[int, int], float] = {
    (LV, B): 0.20, (G, B): 0.18, (B, G): 0.07, (T, B): 0.05, (LV, G): 0.11, (G, LV): 0.09, (T, G): 0.06,
    (T, LV): 0.04, (LV, T): 0.035, (G, T): 0.025, (B, LV): 0.03, (W, G): 0.012, (G, W): 0.008, (LV, W): 0.006,
    (W, LV): 0.01, (G, P): 0.01, (LV, P): 0.008, (P, G): 0.006, (P, LV): 0.004,
}
AMBIGUOUS_PAIRS: tuple[tuple[str, str], ...] = (("low vegetation", "tree"), ("ground", "playground"))
_WHERE = (("top left", "top", "top right"), ("left", "centre", "right"), ("bottom left", "bottom", "bottom right"))


def where_words(rows: np.ndarray, cols: np.ndarray, size: int) -> str:
    """Centroid of a region → 'top left' / 'centre' / … (a 3×3 grid over the tile; chapter 02 captions)."""
    r, c = min(int(rows.mean() * 3 / size), 2), min(int(cols.mean() * 3 / size), 2)
    return _WHERE[r][c]


def _pick_transition(rng, lc1, free, forced: tuple[int, set[int]] | None = None) -> tuple[int, int] | None:
    """A (from, to) drawn from TRANSITIONS among those whose from-class is present; ``forced = (c, pair)``
    keeps transitions with class c on one side and a class outside the ambiguous pair on the other."""
    avail = np.bincount(lc1[free], minlength=NUM_CLASSES) / lc1.size
    items = [(ft, w) for ft, w in TRANSITIONS.items()
             if (forced is None or (forced[0] in ft and not set(ft) <= forced[1])) and avail[ft[0]] > 0.01]
    if not items:
        return None
    w = np.array([x[1] for x in items])
    return items[rng.choice(len(items), p=w / w.sum())][0]


def change_events(rng, lc1, builds, plays, forced: tuple[int, set[int]] | None):
    """Paint up to 10 change events into a copy of ``lc1`` until a drawn target changed fraction is reached
    (chapter 01); ``forced = (class, ambiguous pair)`` makes the first event involve that class. Returns
    ``(lc2, date-2 buildings, date-2 playgrounds, event map)`` (0 = no event, e = the e-th event)."""
    s = lc1.shape[0]
    k = s / 128
    lc2, builds2, plays2 = lc1.copy(), list(builds), list(plays)
    events = np.zeros((s, s), np.int16)
    target = float(np.clip(rng.beta(2.6, 8.4), 0.02, 0.6))
    for e in range(1, 11):
        free = events == 0
        if forced and (events > 0).any():  # the forced (ambiguous) event happened
            forced = None
        ft = _pick_transition(rng, lc1, free, forced)
        if ft is None and forced:
            forced = None
            continue
        if ft is None or (not forced and (lc1 != lc2).mean() >= target):
            break
        f, t = ft
        if f == B:  # demolition: whole buildings
            cand = [b for b in builds2 if b in builds and free[b[0]:b[2], b[1]:b[3]].all()]
            if not cand:
                continue
            chosen = [cand[i] for i in rng.choice(len(cand), min(len(cand), int(rng.integers(1, 6))), replace=False)]
            region = np.zeros((s, s), bool)
            for b in chosen:
                region[b[0]:b[2], b[1]:b[3]] = True
                builds2.remove(b)
        else:
            ys, xs = np.nonzero((lc1 == f) & free)
            i = rng.integers(len(ys))
            lo, hi = (0.06, 0.2) if t == B else (0.02, 0.09)
            area = min(max(target - (lc1 != lc2).mean(), lo), rng.uniform(lo, hi)) * s * s
            blob = blob_mask(rng, s, ys[i], xs[i], np.sqrt(area / np.pi) * rng.uniform(1.0, 1.4)) & free
            region = blob & (lc1 == f)
        if region.sum() < 4:
            continue
        if t == B:  # construction: new buildings fitted inside the site, maybe a bare construction site
            site = blob & (lc1 != W) & (lc1 != B) if f != B else region
            rects = place_rects(rng, site.copy(), int(rng.integers(3, 14)), max(3, int(6 * k)), int(18 * k), 10)
            if not rects:
                continue
            if f != G and rng.random() < 0.2:
                lc2[region] = G
                events[region] = e
            new = [(*r, int(rng.integers(4))) for r in rects]
            for r0, c0, r1, c1, _ in new:
                lc2[r0:r1, c0:c1] = B
                events[r0:r1, c0:c1] = e
            builds2 += new
            continue
        if t == P:
            rows, cols = np.nonzero(region)
            r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
            if min(r1 - r0, c1 - c0) < 8 * k:
                continue
            dr, dc = (r1 - r0) // 6, (c1 - c0) // 6
            rect = (int(r0 + dr), int(c0 + dc), int(r1 - dr), int(c1 - dc), str(rng.choice(["track", "field"])))
            region = np.zeros((s, s), bool)
            region[rect[0]:rect[2], rect[1]:rect[3]] = True
            plays2.append(rect)
        lc2[region] = t
        events[region] = e
    if (P not in np.unique(lc2)) and plays2:
        plays2 = []
    return lc2, builds2, plays2, events

