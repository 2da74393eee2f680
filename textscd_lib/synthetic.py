"""mini-SECOND: a seeded procedural generator of SECOND-like pairs, and its scene log (chapter 01).

Each pair is an aerial-looking 128×128 (or any size) scene: land-cover regions of all six SECOND classes with
their own textures (water, bare ground and roads, low vegetation, tree canopies, buildings with roofs and
shadows, sports fields with lines). Between the dates, regions change class at SECOND-like frequencies
(vegetation→building, ground→building, tree→ground, …; about 20 % of the pixels on average), and the whole
tile undergoes *pseudo-changes* that are not changes: illumination and colour shifts, seasonal vegetation tone,
shadow direction, 1–2 px misregistration, blur and noise — so that naive differencing fails, as on real data.

``ambiguity`` is a designed property of this synthetic data, **not a claim about SECOND**: in that fraction
of scenes one pair of classes (low vegetation/tree, or ground/playground) is drawn with one shared texture
inside the changed regions, so the pixels cannot say which of the two it is; only the pair's description
(a caption naming the true class) can. Chapter 07 uses it to ask "when does text help?".

Everything is vectorised numpy (smooth noise = bilinearly upsampled random grids): 300 pairs at 128² take
a few seconds. ``scene_log.jsonl`` describes each pair's changes for the caption writers (chapter 02).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from textscd_lib.second import CLASSES, COLORS, FOLDERS, split_names

log = logging.getLogger(__name__)

GENERATOR_VERSION = 2
DEMO_PARAMS = {"pairs": 300, "size": 128, "seed": 0, "ambiguity": 0.3, "val_fraction": 0.2}
FAST_PARAMS = {"pairs": 24, "size": 64, "seed": 0, "ambiguity": 0.3, "val_fraction": 1 / 3}
W, G, LV, T, B, P = 1, 2, 3, 4, 5, 6
# (from, to): weight — SECOND-like transition frequencies (building, low vegetation, ground dominate).
TRANSITIONS: dict[tuple[int, int], float] = {
    (LV, B): 0.20, (G, B): 0.18, (B, G): 0.07, (T, B): 0.05, (LV, G): 0.11, (G, LV): 0.09, (T, G): 0.06,
    (T, LV): 0.04, (LV, T): 0.035, (G, T): 0.025, (B, LV): 0.03, (W, G): 0.012, (G, W): 0.008, (LV, W): 0.006,
    (W, LV): 0.01, (G, P): 0.01, (LV, P): 0.008, (P, G): 0.006, (P, LV): 0.004,
}
AMBIGUOUS_PAIRS: tuple[tuple[str, str], ...] = (("low vegetation", "tree"), ("ground", "playground"))
_WHERE = (("top left", "top", "top right"), ("left", "centre", "right"), ("bottom left", "bottom", "bottom right"))


def smooth_noise(rng: np.random.Generator, size: int, cells: float, octaves: int = 1) -> np.ndarray:
    """Zero-mean, unit-std smooth noise (size×size): a (cells+1)² random grid upsampled bilinearly, summed
    over octaves (chapter 01)."""
    total = np.zeros((size, size), np.float32)
    amp = 1.0
    for o in range(octaves):
        c = max(1, int(round(cells * 2 ** o)))
        grid = rng.standard_normal((c + 1, c + 1)).astype(np.float32)
        x = np.linspace(0, c, size, dtype=np.float32)
        i0 = np.minimum(x.astype(np.int64), c - 1)
        f = x - i0
        f = f * f * (3 - 2 * f)  # smoothstep: no grid artefacts
        rows = grid[i0] * (1 - f)[:, None] + grid[i0 + 1] * f[:, None]
        total += amp * (rows[:, i0] * (1 - f)[None] + rows[:, i0 + 1] * f[None])
        amp *= 0.5
    return (total - total.mean()) / (total.std() + 1e-6)


def where_words(rows: np.ndarray, cols: np.ndarray, size: int) -> str:
    """Centroid of a region → 'top left' / 'centre' / … (a 3×3 grid over the tile; chapter 02 captions)."""
    r, c = min(int(rows.mean() * 3 / size), 2), min(int(cols.mean() * 3 / size), 2)
    return _WHERE[r][c]


def _blob(rng, size, cy, cx, radius) -> np.ndarray:
    yy, xx = np.ogrid[0:size, 0:size]
    a = rng.uniform(0.6, 1.6)
    d = np.sqrt(((yy - cy) / (radius * a)) ** 2 + ((xx - cx) / (radius / a)) ** 2)
    return d + 0.25 * smooth_noise(rng, size, 4) < 1.0


def _place_rects(rng, free: np.ndarray, n: int, lo: int, hi: int, tries: int = 4) -> list[tuple[int, int, int, int]]:
    """Up to ``n`` non-overlapping rectangles lying (≥ 95 %) inside ``free`` (updated in place)."""
    size, rects = free.shape[0], []
    ii = np.pad(free.cumsum(0).cumsum(1), ((1, 0), (1, 0)))  # integral image: O(1) area sums
    for _ in range(n * tries):
        if len(rects) >= n:
            break
        h, w = (int(v) for v in rng.integers(lo, hi + 1, size=2))
        r0, c0 = int(rng.integers(0, max(1, size - h))), int(rng.integers(0, max(1, size - w)))
        r1, c1 = min(r0 + h, size), min(c0 + w, size)
        inside = ii[r1, c1] - ii[r0, c1] - ii[r1, c0] + ii[r0, c0]
        if (r1 - r0) * (c1 - c0) and inside >= 0.95 * (r1 - r0) * (c1 - c0):
            rects.append((r0, c0, r1, c1))
            free[max(0, r0 - 2):r1 + 2, max(0, c0 - 2):c1 + 2] = False
            ii = np.pad(free.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    return rects


def _layout(rng, s: int):
    """Date-1 land cover (every pixel 1..6), building and playground instances, road mask."""
    k = s / 128
    kind = rng.choice(["urban", "suburban", "rural"], p=[0.45, 0.35, 0.2])
    f_ground, n_build = {"urban": (0.5, 22), "suburban": (0.35, 10), "rural": (0.25, 3)}[kind]
    veg, tree = smooth_noise(rng, s, 3, 2), smooth_noise(rng, s, 5, 2)
    lc = np.where(veg > np.quantile(veg, f_ground), LV, G).astype(np.uint8)
    lc[(lc == LV) & (tree > np.quantile(tree, rng.uniform(0.5, 0.8)))] = T
    yy, xx = np.mgrid[0:s, 0:s]
    if rng.random() < 0.18:  # a river or a pond
        if rng.random() < 0.6:
            centre = s * rng.uniform(0.2, 0.8) + 0.12 * s * smooth_noise(rng, s, 2)[:, :1]
            lc[np.abs(xx - centre) < s * rng.uniform(0.04, 0.1)] = W
        else:
            lc[_blob(rng, s, *rng.uniform(0.2, 0.8, 2) * s, s * rng.uniform(0.08, 0.18))] = W
    road = np.zeros((s, s), bool)
    for _ in range(rng.integers(0, 3) if kind != "rural" else rng.integers(0, 2)):
        pos, w = int(rng.uniform(0.15, 0.85) * s), max(2, int(rng.uniform(3, 6) * k))
        if rng.random() < 0.5:
            road[pos:pos + w] = True
        else:
            road[:, pos:pos + w] = True
    lc[road & (lc != W)] = G
    free = (lc != W) & ~road
    plays = []
    if rng.random() < 0.08:
        plays = [(*r, str(rng.choice(["track", "field"])))
                 for r in _place_rects(rng, free, 1, int(22 * k), int(36 * k))]
        for r0, c0, r1, c1, _ in plays:
            lc[r0:r1, c0:c1] = P
    n = int(rng.integers(max(0, n_build // 2), n_build + 1) * k * k)
    builds = [(*r, int(rng.integers(4))) for r in _place_rects(rng, free, n, max(3, int(6 * k)), int(16 * k))]
    for r0, c0, r1, c1, _ in builds:
        lc[r0:r1, c0:c1] = B
    return lc, builds, plays, road, kind


def _textures(rng, s: int) -> dict[int, np.ndarray]:
    """One float32 (s,s,3) texture per class, shared by both dates (unchanged areas match exactly)."""
    fine = smooth_noise(rng, s, s / 2)[..., None]
    tex = {}
    tone = smooth_noise(rng, s, 3)[..., None]
    tex[W] = np.array([42, 68, 84], np.float32) + 8 * tone + 3 * fine
    tex[G] = np.array([152, 140, 120], np.float32) * rng.uniform(0.9, 1.1) + 16 * smooth_noise(rng, s, 6)[..., None] \
        + 9 * fine
    tex[LV] = np.array([104, 128, 72], np.float32) + np.array([14, 16, 8]) * smooth_noise(rng, s, 5)[..., None] \
        + 5 * fine
    crowns = np.clip(smooth_noise(rng, s, s / 5), -1.5, 1.5)[..., None]
    tex[T] = np.array([46, 76, 40], np.float32) + np.array([14, 22, 12]) * crowns \
        - 14 * (crowns < -0.6) + 3 * fine
    tex[B] = np.array([150, 148, 150], np.float32) + 4 * fine
    tex[P] = np.array([172, 86, 66], np.float32) + 3 * fine
    return tex


_ROOFS = np.array([[176, 92, 72], [138, 138, 144], [84, 102, 140], [205, 203, 198]], np.float32)


def _render(lc, tex, builds, plays, road, look, override) -> np.ndarray:
    """Land cover → RGB float image: class textures, roofs, sports lines, shadows, ambiguity, look."""
    s = lc.shape[0]
    img = np.zeros((s, s, 3), np.float32)
    for c, t in tex.items():
        m = lc == c
        img[m] = t[m]
    m = road & (lc == G)
    img[m] = 0.35 * img[m] + np.float32(0.65 * 108)
    for r0, c0, r1, c1, roof in builds:
        m = lc[r0:r1, c0:c1] == B
        shade = np.ones((r1 - r0, c1 - c0, 1), np.float32)
        if (r1 - r0) >= (c1 - c0):  # ridge along the long side: two roof halves lit differently
            shade[:, : (c1 - c0) // 2] = 1.12
        else:
            shade[: (r1 - r0) // 2] = 1.12
        img[r0:r1, c0:c1][m] = (_ROOFS[roof] * shade + tex[B][r0:r1, c0:c1] - 150)[m]
    for r0, c0, r1, c1, kind in plays:
        sub = img[r0:r1, c0:c1]
        m = lc[r0:r1, c0:c1] == P
        if kind == "field":
            sub[m] = (tex[P][r0:r1, c0:c1] * np.array([0.4, 1.75, 1.0]))[m]
        lines = np.zeros(m.shape, bool)
        lines[[1, -2], 1:-1] = lines[1:-1, [1, -2]] = True
        lines[(r1 - r0) // 2, 1:-1] = True
        sub[lines & m] = 235
    dy, dx = look["shadow"]
    bm = lc == B
    sh = np.zeros_like(bm)
    sh[max(dy, 0):s + min(dy, 0), max(dx, 0):s + min(dx, 0)] = bm[max(-dy, 0):s - max(dy, 0), max(-dx, 0):s - max(dx, 0)]
    img[sh & ~bm] *= 0.55
    for mask, drawn in override:
        img[mask] = tex[drawn][mask]
    veg = (lc == LV) | (lc == T)
    img[veg] *= np.array(look["season"], np.float32)
    img = img * look["gain"] * np.array(look["white_balance"], np.float32) + look["offset"]
    if look["haze"]:
        img = (1 - look["haze"]) * img + look["haze"] * 170
    return img


def _finish(img, rng, look) -> np.ndarray:
    dy, dx = look["shift"]
    if dy or dx:  # misregistration: the content moves, the labels do not
        img = np.roll(np.pad(img, ((2, 2), (2, 2), (0, 0)), mode="edge"), (dy, dx), (0, 1))[2:-2, 2:-2]
    if look["blur"]:
        img = (img + np.roll(img, 1, 0) + np.roll(img, -1, 0)) / 3
        img = (img + np.roll(img, 1, 1) + np.roll(img, -1, 1)) / 3
    img = img + rng.normal(0, look["noise"], img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def _look(rng, k: float, date2: bool) -> dict:
    g = float(rng.uniform(0.82, 1.18)) if date2 else float(rng.uniform(0.95, 1.05))
    season = [1.0, 1.0, 1.0]
    if date2 and rng.random() < 0.5:
        season = [1.18, 1.05, 0.72] if rng.random() < 0.6 else [0.88, 1.08, 0.9]
    shadow = (int(round(2 * k)), int(round(2 * k)))
    if date2:
        shadow = (int(rng.choice([-1, 1])) * int(rng.integers(1, 4)), int(rng.choice([-1, 1])) * int(rng.integers(1, 4)))
    shift = (0, 0)
    if date2 and rng.random() < 0.6:
        while shift == (0, 0):
            shift = tuple(int(v) for v in rng.integers(-2, 3, 2))
    return {"gain": g, "white_balance": [float(v) for v in 1 + rng.normal(0, 0.04 if date2 else 0.015, 3)],
            "offset": float(rng.normal(0, 6 if date2 else 2)), "haze": float(rng.uniform(0.08, 0.25))
            if date2 and rng.random() < 0.2 else 0.0, "season": season, "shadow": shadow, "shift": shift,
            "blur": bool(date2 and rng.random() < 0.25), "noise": float(rng.uniform(1.5, 5))}


def _pseudo_changes(l1: dict, l2: dict) -> list[dict]:
    out = [{"kind": "illumination", "gain": round(l2["gain"] / l1["gain"], 3)},
           {"kind": "colour shift", "white_balance": [round(v, 3) for v in l2["white_balance"]],
            "offset": round(l2["offset"], 1)},
           {"kind": "shadow direction", "date1": list(l1["shadow"]), "date2": list(l2["shadow"])},
           {"kind": "noise", "sigma": [round(l1["noise"], 2), round(l2["noise"], 2)]}]
    if l2["season"] != [1.0, 1.0, 1.0]:
        out.append({"kind": "seasonal vegetation", "tone": "yellower" if l2["season"][0] > 1 else "greener"})
    if l2["shift"] != (0, 0):
        out.append({"kind": "misregistration", "shift_px": list(l2["shift"])})
    if l2["haze"]:
        out.append({"kind": "haze", "amount": round(l2["haze"], 2)})
    if l2["blur"]:
        out.append({"kind": "blur"})
    return out


def _pick_transition(rng, lc1, free, forced: tuple[int, set[int]] | None = None) -> tuple[int, int] | None:
    """A (from, to) drawn from TRANSITIONS among those whose from-class is present; ``forced = (c, pair)``
    keeps transitions with class c on one side and a class outside the ambiguous pair on the other."""
    avail = np.bincount(lc1[free], minlength=7) / lc1.size
    items = [(ft, w) for ft, w in TRANSITIONS.items()
             if (forced is None or (forced[0] in ft and not set(ft) <= forced[1])) and avail[ft[0]] > 0.01]
    if not items:
        return None
    w = np.array([x[1] for x in items])
    return items[rng.choice(len(items), p=w / w.sum())][0]


def _change_events(rng, lc1, builds, plays, forced: tuple[int, set[int]] | None):
    """Paint change events into a copy of lc1; returns lc2, date-2 instances, event map."""
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
            blob = _blob(rng, s, ys[i], xs[i], np.sqrt(area / np.pi) * rng.uniform(1.0, 1.4)) & free
            region = blob & (lc1 == f)
        if region.sum() < 4:
            continue
        if t == B:  # construction: new buildings fitted inside the site, maybe a bare construction site
            site = blob & (lc1 != W) & (lc1 != B) if f != B else region
            rects = _place_rects(rng, site.copy(), int(rng.integers(3, 14)), max(3, int(6 * k)), int(18 * k), 10)
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


def make_pair(rng: np.random.Generator, size: int, ambiguity: float = 0.0,
              ambiguous_pairs: tuple[tuple[str, str], ...] = AMBIGUOUS_PAIRS) -> tuple[tuple[np.ndarray, ...], dict]:
    """One synthetic pair (chapter 01): ``((im1, im2, label1, label2), record)`` with uint8 RGB images, index
    labels (0 = unchanged) and the scene-log record (changes, ambiguity, pseudo-changes)."""
    s, k = size, size / 128
    lc1, builds, plays, road, kind = _layout(rng, s)
    amb, true_cls = None, None
    if ambiguous_pairs and rng.random() < ambiguity:  # one class of the pair changes, drawn as its partner
        a, b = ambiguous_pairs[rng.integers(len(ambiguous_pairs))]
        amb = (CLASSES.index(a), CLASSES.index(b))
        true_cls = int(rng.choice(amb))
    lc2, builds2, plays2, events = _change_events(rng, lc1, builds, plays,
                                                  (true_cls, set(amb)) if amb else None)
    changed = lc1 != lc2
    tex = _textures(rng, s)
    look1, look2 = _look(rng, k, False), _look(rng, k, True)
    over1, over2, ambiguous = [], [], []
    if amb:
        drawn = amb[0] if true_cls == amb[1] else amb[1]
        in1, in2 = np.isin(lc1, amb), np.isin(lc2, amb)
        m1, m2 = changed & in1 & ~in2, changed & in2 & ~in1
        if m1.any() or m2.any():
            over1, over2 = [(m1, drawn)], [(m2, drawn)]
            ambiguous.append({"classes": [CLASSES[amb[0]], CLASSES[amb[1]]], "drawn_as": CLASSES[drawn],
                              "area": round(float((m1 | m2).mean()), 4),
                              "note": "designed property of mini-SECOND: in changed regions both classes "
                                      "share one texture here"})
    im1 = _finish(_render(lc1, tex, builds, plays, road, look1, over1), rng, look1)
    im2 = _finish(_render(lc2, tex, builds2, plays2, road, look2, over2), rng, look2)
    label1 = np.where(changed, lc1, 0).astype(np.uint8)
    label2 = np.where(changed, lc2, 0).astype(np.uint8)
    changes = []
    for e in np.unique(events[changed]):
        em = (events == e) & changed
        codes = lc1[em].astype(np.int64) * 7 + lc2[em]
        for code in np.unique(codes):
            m = em & (lc1 * 7 + lc2.astype(np.int64) == code)
            if m.mean() < 0.002:
                continue
            rows, cols = np.nonzero(m)
            changes.append({"from": CLASSES[code // 7], "to": CLASSES[code % 7], "area": round(float(m.mean()), 4),
                            "where": where_words(rows, cols, s),
                            "bbox": [int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1]})
    changes.sort(key=lambda c: -c["area"])
    record = {"size": s, "scene": str(kind), "changed_area": round(float(changed.mean()), 4), "changes": changes,
              "ambiguous": ambiguous, "pseudo_changes": _pseudo_changes(look1, look2)}
    return (im1, im2, label1, label2), record


def _write_pair(job: tuple) -> tuple[str, float]:
    """Generate pair ``i`` and write its four PNGs (one job of :func:`synthesize`, picklable)."""
    from PIL import Image

    tmp, sp, name, seed, i, size, ambiguity, ambiguous_pairs = job
    arrays, rec = make_pair(np.random.default_rng([seed, i]), size, ambiguity, ambiguous_pairs)
    for folder, a in zip(FOLDERS, arrays):
        Image.fromarray(a if a.ndim == 3 else COLORS[a]).save(tmp / sp / folder / f"{name}.png", compress_level=3)
    return json.dumps({"pair": name, "split": sp, **rec}), rec["changed_area"]


def synthesize(out: str | Path, pairs: int, size: int, seed: int = 0, ambiguity: float = 0.0,
               val_fraction: float = 0.2, ambiguous_pairs: tuple[tuple[str, str], ...] = AMBIGUOUS_PAIRS,
               workers: int = 1) -> Path:
    """Write a mini-SECOND dataset (chapter 01; ``textscd data synth``): ``OUT/{train,val}/{im1,im2,label1,
    label2}/NAME.png`` (RGB images, RGB colour labels), ``scene_log.jsonl`` and ``mini_second.json``.
    Built in a temporary folder and moved into place, so OUT is never half-written. Pair i depends only
    on (seed, i), so ``workers`` > 1 (0 = all cores) generates in parallel processes with identical output."""

    if pairs < 1 or size < 32:
        raise ValueError(f"need pairs >= 1 and size >= 32 (got pairs={pairs}, size={size})")
    if not 0 <= ambiguity <= 1:
        raise ValueError(f"ambiguity is a fraction of scenes in [0, 1], got {ambiguity}")
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    params = {"pairs": pairs, "size": size, "seed": seed, "ambiguity": ambiguity, "val_fraction": val_fraction,
              "ambiguous_pairs": [list(p) for p in ambiguous_pairs]}
    names = [f"{i + 1:05d}" for i in range(pairs)]
    split = split_names(names, val_fraction, seed)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for sp in set(split.values()):
            for folder in FOLDERS:
                (tmp / sp / folder).mkdir(parents=True, exist_ok=True)
        jobs = [(tmp, split[name], name, seed, i, size, ambiguity, ambiguous_pairs) for i, name in enumerate(names)]
        workers = workers or os.cpu_count() or 1
        if workers > 1 and pairs > 1:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                results = list(pool.map(_write_pair, jobs, chunksize=max(1, pairs // (4 * workers))))
        else:
            results = [_write_pair(job) for job in jobs]
        lines = [line for line, _ in results]
        ratios = [ratio for _, ratio in results]
        (tmp / "scene_log.jsonl").write_text("\n".join(lines) + "\n")
        meta = {"generator": "textscd_lib.synthetic", "generator_version": GENERATOR_VERSION, "params": params,
                "what": "mini-SECOND: synthetic, seeded stand-in for SECOND (not real imagery)",
                "mean_change_ratio": round(float(np.mean(ratios)), 4),
                "seconds": round(time.perf_counter() - t0, 2)}
        (tmp / "mini_second.json").write_text(json.dumps(meta, indent=2) + "\n")
        if out.exists():
            old = out.with_name(f".{out.name}.old-{time.time_ns()}")
            out.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("mini-SECOND: %d pairs at %d² in %.1f s → %s", pairs, size, time.perf_counter() - t0, out)
    return out


def _params(fast: bool, params: dict) -> dict:
    p = {**(FAST_PARAMS if fast else DEMO_PARAMS), "ambiguous_pairs": [list(x) for x in AMBIGUOUS_PAIRS], **params}
    p["ambiguous_pairs"] = [list(x) for x in p["ambiguous_pairs"]]
    return p


def ensure_mini_second(root: str | Path | None = None, fast: bool = False, **params) -> Path:
    """The mini-SECOND folder, generated if missing or made with other parameters (chapter 01). Defaults:
    demo 300 pairs at 128² (240/60), FAST 24 pairs at 64² (16/8); ``root=None`` → ``data/mini-second[-fast]``.
    The parameters live in ``ROOT/mini_second.json``."""
    from textscd_lib.runs import resolve

    root = resolve(root or ("data/mini-second-fast" if fast else "data/mini-second"))
    p = _params(fast, params)
    meta_file = root / "mini_second.json"
    if meta_file.is_file() and (root / "scene_log.jsonl").is_file():
        try:
            meta = json.loads(meta_file.read_text())
        except json.JSONDecodeError:
            meta = {}
        if meta.get("params") == p and meta.get("generator_version") == GENERATOR_VERSION:
            return root
        log.info("%s: made with other parameters, regenerating", root)
    return synthesize(root, p["pairs"], p["size"], p["seed"], p["ambiguity"], p["val_fraction"],
                      tuple(tuple(x) for x in p["ambiguous_pairs"]))


def read_scene_log(root: str | Path) -> dict[str, dict]:
    """``ROOT/scene_log.jsonl`` → {pair name: record} (chapter 01/02; the oracle captions read it)."""
    f = Path(root) / "scene_log.jsonl"
    if not f.is_file():
        raise FileNotFoundError(f"{f}: no scene log (only mini-SECOND has one; run `textscd data synth`)")
    out = {}
    for n, line in enumerate(f.read_text().splitlines(), 1):
        if line.strip():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{f}:{n}: not valid JSON ({e})") from e
            out[rec["pair"]] = rec
    return out


def resolve_data_root(data_root: str | Path, fast: bool, run_path: str | Path) -> Path:
    """The notebooks' ``DATA_ROOT`` → a checked dataset folder (chapter 01). ``""`` → mini-SECOND (generated
    on first use, recorded as an offline substitute for SECOND); a path → validated (every pair decoded once
    into the cache of :class:`textscd_lib.dataset.DecodedCache`); raises ``SecondFormatError`` naming files."""
    from textscd_lib.runs import record_substitute, resolve
    from textscd_lib.second import SecondFormatError, scan

    if not str(data_root):
        root = ensure_mini_second(fast=fast)
        record_substitute(run_path, "data", "mini-SECOND (synthetic, seeded)", "SECOND",
                          "SECOND is not on this machine; pass DATA_ROOT to use it")
        return root
    from textscd_lib.dataset import DecodedCache

    root = resolve(data_root)
    pairs, problems = scan(root)
    if problems:
        raise SecondFormatError(f"DATA_ROOT {root}: invalid dataset", problems)
    splits = sorted({p.split for p in pairs})
    if splits == [""] or "train" not in splits:
        raise SecondFormatError(f"DATA_ROOT {root}: no train/ split; run `textscd data prepare-second SRC --out DST`"
                                " to make the working layout", [])
    for split in splits:
        DecodedCache(root, split)  # decodes and checks every pair once; later runs reuse it
    return root
