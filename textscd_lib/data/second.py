"""The SECOND dataset format: classes, colours, RGB↔index, reading files, pair discovery (chapter 01,
``notebooks/01_data_exploration.ipynb``).

SECOND (Yang et al., 2021; paper §4.1) holds bi-temporal 512×512 RGB pairs with one semantic label per date.
Layout: ``ROOT/{im1,im2,label1,label2}/NAME.png``, optionally below ``train/``, ``val/`` or ``test/`` levels.
Labels are RGB colour PNGs (the official release) or single-channel index PNGs 0..6 (processed copies);
both are accepted, anything else is rejected with the file named. Only changed pixels carry a class, so
``label1 > 0`` must equal ``label2 > 0`` (the change mask). Every problem is reported as one line that names
the file; :class:`SecondFormatError` carries the list. Checking a whole folder is
:mod:`textscd_lib.data.validate`; making the train/val working layout is :mod:`textscd_lib.data.prepare`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

CLASSES: tuple[str, ...] = ("unchanged", "water", "ground", "low vegetation", "tree", "building", "playground")
NUM_CLASSES = len(CLASSES)  # 7: the one definition (metrics, engine and data read it; models check it in a test)
COLORS: np.ndarray = np.array(
    [(255, 255, 255), (0, 0, 255), (128, 128, 128), (0, 128, 0), (0, 255, 0), (128, 0, 0), (255, 0, 0)],
    dtype=np.uint8,
)
FOLDERS: tuple[str, ...] = ("im1", "im2", "label1", "label2")
SPLITS: tuple[str, ...] = ("train", "val", "test")
EXTENSIONS: tuple[str, ...] = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")

_KEYS = (COLORS[:, 0].astype(np.int64) << 16) | (COLORS[:, 1].astype(np.int64) << 8) | COLORS[:, 2]
_LUT = {int(k): i for i, k in enumerate(_KEYS)}


class SecondFormatError(ValueError):
    """Bad SECOND-format input; the message names every offending file (one line per problem)."""

    def __init__(self, message: str, problems: list[str] | None = None):
        self.problems = list(problems or [])
        if self.problems:
            shown = self.problems[:20]
            more = len(self.problems) - len(shown)
            message = "\n".join([message, *shown] + ([f"... and {more} more problems"] if more else []))
        super().__init__(message)


def rgb_to_index(rgb: np.ndarray, path: str | Path | None = None) -> np.ndarray:
    """SECOND colour label (H,W,3) → class index (H,W) uint8 (chapter 01). Unknown colours raise, naming
    ``path``, the colours and their pixel counts."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise SecondFormatError(f"{path or 'label'}: expected an H×W×3 colour label, got shape {rgb.shape}")
    key = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    out = np.full(key.shape, 255, dtype=np.uint8)
    for k, i in _LUT.items():
        out[key == k] = i
    bad = out == 255
    if bad.any():
        keys, counts = np.unique(key[bad], return_counts=True)
        order = np.argsort(-counts)
        parts = [f"({k >> 16}, {(k >> 8) & 255}, {k & 255}) in {c} pixels"
                 for k, c in zip(keys[order][:3], counts[order][:3])]
        more = f" and {len(keys) - 3} more colours" if len(keys) > 3 else ""
        hint = ""
        if all((k >> 16) == ((k >> 8) & 255) == (k & 255) <= 6 for k in keys):
            hint = " (looks like an index label saved as RGB: save it single-channel)"
        raise SecondFormatError(f"{path or 'label'}: unknown label colour {', '.join(parts)}{more}{hint}")
    return out


def index_to_rgb(idx: np.ndarray) -> np.ndarray:
    """Class index map (H,W) 0..6 → SECOND colour image (H,W,3) uint8 (chapter 01)."""
    idx = np.asarray(idx)
    if idx.size and (idx.min() < 0 or idx.max() >= len(CLASSES)):
        raise SecondFormatError(f"label values must be 0..6, got {int(idx.min())}..{int(idx.max())}")
    return COLORS[idx.astype(np.int64)]


_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"BM")


def is_image_file(path: str | Path) -> bool:
    """Whether ``path`` starts like a PNG, JPEG, TIFF or BMP file (its first bytes, not its name)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return False
    return any(head.startswith(m) for m in _MAGIC)


def _open(path: Path):
    from PIL import Image

    try:
        img = Image.open(path)
        img.load()
    except Exception as e:  # noqa: BLE001 - any decoder failure is a corrupt file
        if path.is_file() and not is_image_file(path):
            raise SecondFormatError(f"{path}: not an image (its content is no PNG/JPEG/TIFF/BMP, whatever "
                                    f"its name says); remove it or replace it with the real file") from e
        raise SecondFormatError(f"{path}: unreadable or corrupt image ({type(e).__name__}: {e})") from e
    return img


def read_image(path: str | Path) -> np.ndarray:
    """An RGB image file → uint8 (H,W,3) (chapter 01); other modes (grey, RGBA, 16-bit) are rejected."""
    path = Path(path)
    img = _open(path)
    if img.mode != "RGB":
        raise SecondFormatError(f"{path}: not an RGB image (mode {img.mode}); SECOND images are 8-bit RGB")
    return np.asarray(img, dtype=np.uint8)


def read_label(path: str | Path) -> np.ndarray:
    """A label file → class index (H,W) uint8 0..6 (chapter 01). Accepts RGB colour labels and
    single-channel index labels (mode L/P/I); unknown colours or values raise, naming the file."""
    path = Path(path)
    img = _open(path)
    if img.mode == "RGB":
        return rgb_to_index(np.asarray(img), path)
    if img.mode == "P":  # palette: colours if the palette holds SECOND colours, else raw indices
        try:
            return rgb_to_index(np.asarray(img.convert("RGB")), path)
        except SecondFormatError:
            arr = np.asarray(img)
    elif img.mode in ("L", "I", "I;16", "I;16B", "I;16L"):
        arr = np.asarray(img)
    else:
        raise SecondFormatError(f"{path}: unsupported label mode {img.mode} (use RGB colours or index 0..6)")
    if arr.size and arr.max() >= len(CLASSES):
        vals, counts = np.unique(arr[arr >= len(CLASSES)], return_counts=True)
        order = np.argsort(-counts)
        parts = [f"{int(v)} in {int(c)} pixels" for v, c in zip(vals[order][:3], counts[order][:3])]
        more = f" and {len(vals) - 3} more values" if len(vals) > 3 else ""
        raise SecondFormatError(f"{path}: unknown label value {', '.join(parts)}{more} (expected 0..6)")
    return arr.astype(np.uint8)


@dataclass
class Pair:
    """One bi-temporal pair: its name, split ('' for a flat layout) and four file paths (chapter 01)."""

    name: str
    split: str
    im1: Path
    im2: Path
    label1: Path
    label2: Path

    @property
    def files(self) -> tuple[Path, Path, Path, Path]:
        return (self.im1, self.im2, self.label1, self.label2)


def split_dirs(root: Path) -> list[tuple[str, Path]]:
    """``[(split, folder)]`` under ``root``: ``[("", root)]`` for a flat layout, else every sub-folder holding
    ``im1/`` (chapter 01)."""
    if (root / "im1").is_dir():
        return [("", root)]
    return [(d.name, d) for d in sorted(root.iterdir()) if d.is_dir() and (d / "im1").is_dir()] \
        if root.is_dir() else []


def image_files(folder: Path) -> dict[str, Path]:
    """{name: path} of the image files in ``folder`` (known extensions, hidden files skipped; chapter 01)."""
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.iterdir())
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in EXTENSIONS}


def scan(root: str | Path, split: str | None = None) -> tuple[list[Pair], list[str]]:
    """Discover pairs under ``root`` (flat or with split levels) and the structural problems: files without
    their twins, an empty dataset (chapter 01). ``split=None`` takes every split."""
    root = Path(root)
    problems: list[str] = []
    if not root.is_dir():
        return [], [f"{root}: no such folder"]
    dirs = split_dirs(root)
    if split is not None:
        dirs = [(s, d) for s, d in dirs if s == split] or ([("", root)] if split == "" else [])
    pairs: list[Pair] = []
    for s, d in dirs:
        if s and not (d / "label1").is_dir() and not (d / "label2").is_dir():
            log.warning("%s: no label1/ or label2/ (an unlabelled split, like SECOND's test); skipped", d)
            continue
        files = {f: image_files(d / f) for f in FOLDERS}
        for f in FOLDERS:
            for name, p in files[f].items():
                missing = [g for g in FOLDERS if name not in files[g]]
                if missing and not is_image_file(p):
                    problems.append(f"{p}: not an image (its content is no PNG/JPEG/TIFF/BMP, whatever its "
                                    f"name says); remove it from {p.parent}")
                elif missing:
                    problems.append(f"{p}: no twin in {', '.join(m + '/' for m in missing)} of {d}")
        names = sorted(set.intersection(*(set(files[f]) for f in FOLDERS)))
        pairs += [Pair(n, s, *(files[f][n] for f in FOLDERS)) for n in names]
    if not pairs:
        where = f" (split {split!r})" if split else ""
        problems.append(f"{root}: empty dataset{where}: no complete pairs found in ROOT/{{im1,im2,label1,label2}}"
                        " or ROOT/<split>/{im1,im2,label1,label2}")
    return pairs, problems


def find_pairs(root: str | Path, split: str | None = None) -> list[Pair]:
    """Every complete pair under ``root`` (chapter 01); raises :class:`SecondFormatError` on missing twins or
    an empty dataset."""
    pairs, problems = scan(root, split)
    if problems:
        raise SecondFormatError(f"{root}: not a valid SECOND layout", problems)
    return pairs
