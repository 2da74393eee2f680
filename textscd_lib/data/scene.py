"""mini-SECOND scenes: land-cover layout, class textures, rendering and the look of each date (chapter 01,
``notebooks/01_data_exploration.ipynb``).

A scene is an aerial-looking tile: land-cover regions of all six SECOND classes with their own textures (water,
bare ground and roads, low vegetation, tree canopies, buildings with roofs and shadows, sports fields with
lines). Each date gets its own *look*: the pseudo-changes that are not changes (illumination and colour
shifts, seasonal vegetation tone, shadow direction, 1–2 px misregistration, blur and noise), so that naive
differencing fails, as on real data. What changes between the dates is :mod:`textscd_lib.data.changes`.

Everything is vectorised numpy; smooth noise is a bilinearly upsampled random grid. Every function draws
from the ``rng`` it is given, in a fixed order, so a pair depends only on its seed.
"""

from __future__ import annotations

import numpy as np

W, G, LV, T, B, P = 1, 2, 3, 4, 5, 6  # SECOND class indices (textscd_lib.data.second.CLASSES)


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


def blob_mask(rng, size, cy, cx, radius) -> np.ndarray:
    """A random elliptic blob with a noisy edge around (cy, cx), bool (size×size) (chapter 01): ponds and the
    regions that change."""
    yy, xx = np.ogrid[0:size, 0:size]
    a = rng.uniform(0.6, 1.6)
    d = np.sqrt(((yy - cy) / (radius * a)) ** 2 + ((xx - cx) / (radius / a)) ** 2)
    return d + 0.25 * smooth_noise(rng, size, 4) < 1.0


def place_rects(rng, free: np.ndarray, n: int, lo: int, hi: int, tries: int = 4) -> list[tuple[int, int, int, int]]:
    """Up to ``n`` non-overlapping rectangles lying (≥ 95 %) inside ``free`` (updated in place; chapter 01):
    buildings and sports fields."""
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


def draw_layout(rng, s: int):
    """Date-1 land cover (every pixel 1..6), building and playground instances, road mask, scene kind
    (urban / suburban / rural) (chapter 01)."""
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
            lc[blob_mask(rng, s, *rng.uniform(0.2, 0.8, 2) * s, s * rng.uniform(0.08, 0.18))] = W
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
                 for r in place_rects(rng, free, 1, int(22 * k), int(36 * k))]
        for r0, c0, r1, c1, _ in plays:
            lc[r0:r1, c0:c1] = P
    n = int(rng.integers(max(0, n_build // 2), n_build + 1) * k * k)
    builds = [(*r, int(rng.integers(4))) for r in place_rects(rng, free, n, max(3, int(6 * k)), int(16 * k))]
    for r0, c0, r1, c1, _ in builds:
        lc[r0:r1, c0:c1] = B
    return lc, builds, plays, road, kind


def class_textures(rng, s: int) -> dict[int, np.ndarray]:
    """One float32 (s,s,3) texture per class, shared by both dates (unchanged areas match exactly; chapter 01)."""
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


def render(lc, tex, builds, plays, road, look, override) -> np.ndarray:
    """Land cover → RGB float image (chapter 01): class textures, roofs, sports lines, shadows, the ``override``
    masks drawn with another class's texture (the designed ambiguity), then the date's ``look``."""
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


def finish_image(img, rng, look) -> np.ndarray:
    """Float image → uint8 as the sensor delivers it (chapter 01): misregistration shift, blur, noise."""
    dy, dx = look["shift"]
    if dy or dx:  # misregistration: the content moves, the labels do not
        img = np.roll(np.pad(img, ((2, 2), (2, 2), (0, 0)), mode="edge"), (dy, dx), (0, 1))[2:-2, 2:-2]
    if look["blur"]:
        img = (img + np.roll(img, 1, 0) + np.roll(img, -1, 0)) / 3
        img = (img + np.roll(img, 1, 1) + np.roll(img, -1, 1)) / 3
    img = img + rng.normal(0, look["noise"], img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def draw_look(rng, k: float, date2: bool) -> dict:
    """The look of one date (chapter 01): gain, white balance, offset, haze, season tone, shadow offset,
    misregistration, blur, noise. Date 2 draws the large pseudo-changes; ``k`` = size / 128."""
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


def pseudo_changes(l1: dict, l2: dict) -> list[dict]:
    """The scene-log list of pseudo-changes between two looks (chapter 01): what changed but is not a change."""
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

