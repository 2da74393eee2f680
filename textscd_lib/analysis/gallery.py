"""A gallery of false detections: one row per tile, drawn with PIL (chapter 06; ``textscd errors``).

A row shows date 1 and date 2 with the outlines of method A's error components (magenta = false alarm, cyan =
miss; thin = ``boundary``, thick with a box = ``isolated``, see `textscd_lib.analysis.records`), the truth, method
A and method B (when given) as date 1 | date 2 label maps in the SECOND colours (framed, so white "unchanged"
does not melt into the page), and a zoom on A's largest component. :func:`marked_caption` splits a caption
into words, marking the class words that matter (the predicted and the true classes of the errors).
Magenta and cyan are kept for errors only: no SECOND class uses them, and nothing else here is teal or amber.
A change-only (binary) method has no classes: its maps are drawn as its change mask, black on white
(:data:`CHANGE_RGB`; no SECOND class is black).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from textscd_lib.analysis.caption_errors import CLASS_WORDS
from textscd_lib.analysis.errors import FALSE_ALARM, MISS, error_map
from textscd_lib.analysis.records import STRUCTURE
from textscd_lib.data.second import CLASSES, COLORS

FA_RGB, MISS_RGB = (255, 0, 255), (0, 220, 255)
CHANGE_RGB = np.array([0, 0, 0], np.uint8)      # a binary method's "changed" (no class)
FRAME_RGB, BG_RGB, TEXT_RGB = (90, 90, 90), (255, 255, 255), (20, 20, 20)
HEADER_PX = 16


def font(size: int = 11) -> ImageFont.ImageFont:
    """PIL's built-in scalable font (no font files needed)."""
    return ImageFont.load_default(size=size)


def _outline(mask: np.ndarray, thick: bool) -> np.ndarray:
    edge = mask & ~ndimage.binary_erosion(mask, STRUCTURE)
    return ndimage.binary_dilation(edge, STRUCTURE) if thick else edge


def _fit(a: np.ndarray, size: int | None) -> np.ndarray:
    """Nearest-neighbour resampling of an (H, W[, 3]) array towards ``size`` px: strided when larger, repeated
    when smaller (so an outline stays one screen pixel wide)."""
    h = a.shape[0]
    if not size or size == h:
        return a
    if h > size:
        k = -(-h // size)
        return a[::k, ::k]
    k = size // h
    return np.repeat(np.repeat(a, k, 0), k, 1) if k > 1 else a


def _pool(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A boolean mask brought to ``shape`` keeping every pixel: any-pooling when shrinking (a 1-px rim stays
    visible), repetition when enlarging."""
    h, w = mask.shape
    if (h, w) == tuple(shape):
        return mask
    if h > shape[0]:
        k = -(-h // shape[0])
        pad = np.zeros((shape[0] * k, shape[1] * k), bool)
        pad[:h, :w] = mask
        return pad.reshape(shape[0], k, shape[1], k).any(axis=(1, 3))
    return _fit(mask, shape[0])


def outlined(image: np.ndarray, err: np.ndarray, isolated_ids: dict[str, set[int]] | None = None,
             size: int | None = None) -> np.ndarray:
    """``image`` (H, W, 3) with the outlines of the false-alarm (magenta) and miss (cyan) components of the error
    map ``err`` (`textscd_lib.analysis.errors.error_map`); components whose id (8-connected labelling of ``err``,
    as in `textscd_lib.analysis.records`) is in ``isolated_ids[error]`` get a thick outline and a box. With
    ``size`` the image is resampled first (nearest), so outlines stay one screen pixel wide."""
    err = np.asarray(err)
    out = _fit(np.asarray(image, np.uint8), size).copy()
    for error, cat, rgb in (("false alarm", FALSE_ALARM, FA_RGB), ("miss", MISS, MISS_RGB)):
        full = err == cat
        mask = _pool(full, out.shape[:2])
        if not mask.any():
            continue
        out[_outline(mask, False)] = rgb
        ids = sorted((isolated_ids or {}).get(error, ()))
        if not ids:
            continue
        iso = _pool(np.isin(ndimage.label(full, STRUCTURE)[0], ids), out.shape[:2])
        out[_outline(iso, True)] = rgb
        for sl in ndimage.find_objects(ndimage.label(iso, STRUCTURE)[0]):
            r0, r1, c0, c1 = max(sl[0].start - 2, 0), sl[0].stop + 1, max(sl[1].start - 2, 0), sl[1].stop + 1
            out[r0:r1, [c0, min(c1, out.shape[1] - 1)]] = rgb
            out[[r0, min(r1, out.shape[0] - 1)], c0:c1] = rgb
    return out


def _square(img: np.ndarray, size: int, framed: bool = False) -> Image.Image:
    img = np.asarray(img, np.uint8)
    im = Image.fromarray(img)
    if img.shape[:2] != (size, size):
        im = im.resize((size, size), Image.NEAREST)
    if framed:
        ImageDraw.Draw(im).rectangle([0, 0, size - 1, size - 1], outline=FRAME_RGB)
    return im


def paint(m: np.ndarray, binary: bool = False) -> np.ndarray:
    """An index map in the SECOND colours, or (``binary``) its change mask in :data:`CHANGE_RGB` on white."""
    m = np.asarray(m, np.int64)
    return np.where((m > 0)[..., None], CHANGE_RGB, COLORS[0]).astype(np.uint8) if binary else COLORS[m]


def _maps(a: np.ndarray, b: np.ndarray, size: int, binary: bool = False) -> Image.Image:
    out = Image.new("RGB", (2 * size + 2, size), BG_RGB)
    out.paste(_square(paint(_fit(np.asarray(a, np.int64), size), binary), size, True), (0, 0))
    out.paste(_square(paint(_fit(np.asarray(b, np.int64), size), binary), size, True), (size + 2, 0))
    return out


def zoom_box(box: Sequence[int], shape: tuple[int, int], min_side: int = 16,
             max_side: int | None = None) -> tuple[int, int, int, int]:
    """A square crop (r0, c0, r1, c1) centred on a component box ``(r0, c0, r1, c1)``, twice its size, between
    ``min_side`` and ``max_side`` pixels, inside an image of ``shape``."""
    r0, c0, r1, c1 = box
    side = int(min(max(min_side, 2 * max(r1 - r0, c1 - c0)), max_side or min(shape), *shape))
    cr, cc = (r0 + r1) // 2, (c0 + c1) // 2
    top = int(np.clip(cr - side // 2, 0, shape[0] - side))
    left = int(np.clip(cc - side // 2, 0, shape[1] - side))
    return top, left, top + side, left + side


def tile_row(im1: np.ndarray, im2: np.ndarray, label: tuple, pred_a: tuple, comps_a, pred_b: tuple | None = None,
             names: tuple[str, str] = ("A", "B"), size: int = 128, title: str = "",
             binary: tuple[bool, bool] = (False, False)) -> Image.Image:
    """One gallery row (chapter 06): date 1 and date 2 with A's component outlines, truth 1 | 2, A 1 | 2,
    B 1 | 2 (when ``pred_b``), and a zoom on A's largest component; ``comps_a`` are A's component records of this
    tile (a data frame with columns error, id, area, kind, r0, c0, r1, c1). ``title`` goes on top. ``binary``:
    whether A, B are change-only methods (their maps drawn as change masks, :func:`paint`)."""
    if len(comps_a):
        comps_a = comps_a[comps_a["error"].isin(("false alarm", "miss"))]    # wrong classes have no outline
    iso = {e: set(comps_a.loc[(comps_a["error"] == e) & (comps_a["kind"] == "isolated"), "id"])
           for e in ("false alarm", "miss")} if len(comps_a) else {}
    err = error_map(*pred_a, *label)
    panels: list[tuple[str, Image.Image]] = [
        ("date 1", _square(outlined(im1, err, iso, size), size)),
        ("date 2", _square(outlined(im2, err, iso, size), size)),
        ("truth 1 | 2", _maps(*label, size)), (f"{names[0]} 1 | 2", _maps(*pred_a, size, binary[0]))]
    if pred_b is not None:
        panels.append((f"{names[1]} 1 | 2", _maps(*pred_b, size, binary[1])))
    if len(comps_a):
        # the largest isolated false alarm, else the largest false alarm, else the largest miss
        order = comps_a.assign(_fa=comps_a["error"] != "false alarm", _iso=comps_a["kind"] != "isolated")
        big = order.sort_values(["_fa", "_iso", "area"], ascending=[True, True, False]).iloc[0]
        h, w = err.shape
        r0, c0, r1, c1 = zoom_box((big.r0, big.c0, big.r1, big.c1), (h, w), max_side=max(16, h // 2))
        crop = outlined(np.asarray(im2)[r0:r1, c0:c1], err[r0:r1, c0:c1], None, size)
        what = "FA" if big.error == "false alarm" else "miss"
        head = f"zoom: {big.kind} {what}, {big.area} px" if size >= 128 else f"zoom {what} {big.area} px"
        panels.append((head, _square(crop, size, True)))
    width = sum(p.width for _, p in panels) + 4 * (len(panels) - 1)
    top = HEADER_PX * (2 if title else 1)
    out = Image.new("RGB", (width, size + top), BG_RGB)
    draw, f = ImageDraw.Draw(out), font(10)
    if title:
        draw.text((2, 1), title, fill=TEXT_RGB, font=font(11))
    x = 0
    for head, p in panels:
        draw.text((x + 2, top - HEADER_PX + 2), head, fill=TEXT_RGB, font=f)
        out.paste(p, (x, top))
        x += p.width + 4
    return out


def component_strip(im1: np.ndarray, im2: np.ndarray, label: tuple, pred: tuple, box: Sequence[int],
                    size: int = 48, binary: bool = False) -> Image.Image:
    """One component of the report's component browser (chapter 06): a square crop around its box ``(r0, c0,
    r1, c1)`` of date 1, date 2, truth 1 | 2 and prediction 1 | 2 (SECOND colours; a ``binary`` prediction as its
    change mask), ``size`` px each, the component's box drawn in magenta on every panel."""
    h, w = np.asarray(label[0]).shape
    r0, c0, r1, c1 = zoom_box(box, (h, w), min_side=16, max_side=max(16, min(h, w)))
    k = size / (r1 - r0)
    mark = [int((box[1] - c0) * k), int((box[0] - r0) * k), int((box[3] - c0) * k) - 1, int((box[2] - r0) * k) - 1]
    parts = [np.asarray(im1)[r0:r1, c0:c1], np.asarray(im2)[r0:r1, c0:c1],
             *(paint(np.asarray(m)[r0:r1, c0:c1], j >= 2 and binary) for j, m in enumerate((*label, *pred)))]
    out = Image.new("RGB", (6 * size + 22, size), BG_RGB)
    x = 0
    for i, part in enumerate(parts):
        im = _square(part, size, framed=i >= 2)
        ImageDraw.Draw(im).rectangle(mark, outline=FA_RGB)
        out.paste(im, (x, 0))
        x += size + (8 if i in (1, 3) else 2)
    return out


_WORDS = sorted(((w, c) for c, ws in CLASS_WORDS.items() for w in ws), key=lambda t: -len(t[0]))
_WORD_RE = re.compile(r"(?<![a-zA-Z\-])(" + "|".join(re.escape(w) for w, _ in _WORDS) + r")(?![a-zA-Z\-])",
                      re.IGNORECASE)
_WORD_CLASS = {w: c for w, c in _WORDS}


def marked_caption(caption: str, predicted: set[str], true: set[str]) -> list[tuple[str, str]]:
    """A caption as ``(text, mark)`` pieces (chapter 06): mark is "predicted" for a word naming a class of the
    predicted transitions, "true" for one naming a true class, "both", "class" for another class word, ""
    for the rest. The pieces joined give the caption back unchanged."""
    out, at = [], 0
    for m in _WORD_RE.finditer(caption or ""):
        cls = _WORD_CLASS[m.group(1).lower()]
        mark = ("both" if cls in predicted and cls in true else "predicted" if cls in predicted
                else "true" if cls in true else "class")
        out += [(caption[at:m.start()], ""), (m.group(1), mark)]
        at = m.end()
    out.append(((caption or "")[at:], ""))
    return [p for p in out if p[0]]


MARK_RGB = {"predicted": (255, 179, 255), "true": (179, 240, 255), "both": (220, 210, 255)}


def caption_panel(caption: str | None, predicted: set[str], true: set[str], width: int = 220,
                  height: int = 128) -> Image.Image:
    """The caption as a text panel for a gallery row, wrapped to ``width`` px, the class words that matter on a
    light magenta (a false alarm's class), light cyan (a missed class) or lilac (both) ground; other class words
    underlined (chapter 06)."""
    out = Image.new("RGB", (width, height), BG_RGB)
    draw, f = ImageDraw.Draw(out), font(10)
    x, y, line = 2, 2, 12
    pieces = marked_caption(caption, predicted, true) if caption else [("(no caption)", "")]
    for text, mark in pieces:
        for word in re.split(r"(\s+)", text):
            if not word or word.isspace():
                x += 3 if word else 0
                continue
            wlen = int(draw.textlength(word, font=f))
            if x + wlen > width - 2 and x > 2:
                x, y = 2, y + line
            if y + line > height:
                draw.text((x, y - line), "…", fill=TEXT_RGB, font=f)
                return out
            if mark in MARK_RGB:
                draw.rectangle([x - 1, y, x + wlen, y + line - 1], fill=MARK_RGB[mark])
            draw.text((x, y), word, fill=TEXT_RGB, font=f)
            if mark == "class":
                draw.line([x, y + line - 1, x + wlen, y + line - 1], fill=TEXT_RGB)
            x += wlen
    return out


def beside(row: Image.Image, panel: Image.Image, gap: int = 6) -> Image.Image:
    """``panel`` to the right of a gallery ``row``, aligned with its images (below the headers)."""
    out = Image.new("RGB", (row.width + gap + panel.width, max(row.height, panel.height)), BG_RGB)
    out.paste(row, (0, 0))
    out.paste(panel, (row.width + gap, row.height - panel.height))
    return out


def legend(width: int = 900) -> Image.Image:
    """The one legend of the gallery: error outlines, then the SECOND class colours (framed swatches)."""
    out = Image.new("RGB", (width, 20), BG_RGB)
    draw, f, x = ImageDraw.Draw(out), font(10), 2
    items = [(FA_RGB, "false alarm (thick + box = isolated)", False), (MISS_RGB, "miss", False),
             (MARK_RGB["predicted"], "caption word: a false alarm's class", True),
             (MARK_RGB["true"], "a missed class", True)]
    items += [(tuple(int(v) for v in COLORS[i]), name, True) for i, name in enumerate(CLASSES)]
    for rgb, name, fill in items:
        if fill:
            draw.rectangle([x, 5, x + 10, 15], fill=rgb, outline=FRAME_RGB)
        else:
            draw.rectangle([x, 5, x + 10, 15], outline=rgb, width=2)
        draw.text((x + 14, 4), name, fill=TEXT_RGB, font=f)
        x += 20 + int(draw.textlength(name, font=f))
    return out


def stack(rows: Sequence[Image.Image], footer: Image.Image | None = None, gap: int = 6) -> Image.Image:
    """Rows one below the other (left-aligned), then the legend (chapter 06's gallery figure)."""
    parts = list(rows) + ([footer] if footer is not None else [])
    out = Image.new("RGB", (max(p.width for p in parts), sum(p.height for p in parts) + gap * len(parts)), BG_RGB)
    y = 0
    for p in parts:
        out.paste(p, (0, y))
        y += p.height + gap
    return out
