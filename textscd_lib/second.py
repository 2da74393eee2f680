"""The SECOND dataset format: classes, colours, pair discovery, validation, preparation (chapter 01).

SECOND (Yang et al., 2021; paper §4.1) holds bi-temporal 512×512 RGB pairs with one semantic label per date.
Layout: ``ROOT/{im1,im2,label1,label2}/NAME.png``, optionally below ``train/``, ``val/`` or ``test/`` levels.
Labels are RGB colour PNGs (the official release) or single-channel index PNGs 0..6 (processed copies);
both are accepted, anything else is rejected with the file named. Only changed pixels carry a class, so
``label1 > 0`` must equal ``label2 > 0`` (the change mask). Every problem is reported as one line that names
the file; :class:`SecondFormatError` carries the list.
"""

from __future__ import annotations

import logging
import math
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

CLASSES: tuple[str, ...] = ("unchanged", "water", "ground", "low vegetation", "tree", "building", "playground")
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


def _open(path: Path):
    from PIL import Image

    try:
        img = Image.open(path)
        img.load()
    except Exception as e:  # noqa: BLE001 - any decoder failure is a corrupt file
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


def _split_dirs(root: Path) -> list[tuple[str, Path]]:
    if (root / "im1").is_dir():
        return [("", root)]
    return [(d.name, d) for d in sorted(root.iterdir()) if d.is_dir() and (d / "im1").is_dir()] \
        if root.is_dir() else []


def _list(folder: Path) -> dict[str, Path]:
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
    dirs = _split_dirs(root)
    if split is not None:
        dirs = [(s, d) for s, d in dirs if s == split] or ([("", root)] if split == "" else [])
    pairs: list[Pair] = []
    for s, d in dirs:
        if s and not (d / "label1").is_dir() and not (d / "label2").is_dir():
            log.warning("%s: no label1/ or label2/ (an unlabelled split, like SECOND's test); skipped", d)
            continue
        files = {f: _list(d / f) for f in FOLDERS}
        for f in FOLDERS:
            for name, p in files[f].items():
                missing = [g for g in FOLDERS if name not in files[g]]
                if missing:
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


def check_pair(pair: Pair) -> tuple[tuple[np.ndarray, ...] | None, list[str]]:
    """Decode one pair and check it (chapter 01): readable, RGB images, known label colours/values, equal
    sizes, ``label1 > 0 == label2 > 0``. Returns ``((im1, im2, label1, label2) or None, problems)``."""
    arrays, problems = [], []
    for path, reader in zip(pair.files, (read_image, read_image, read_label, read_label)):
        try:
            arrays.append(reader(path))
        except SecondFormatError as e:
            problems.append(str(e))
            arrays.append(None)
    shapes = [a.shape[:2] if a is not None else None for a in arrays]
    ref = next((s for s in shapes if s is not None), None)
    for path, s in zip(pair.files, shapes):
        if s is not None and s != ref:
            ref_path = pair.files[shapes.index(ref)]
            problems.append(f"{path}: size mismatch, {s[1]}x{s[0]} but its twin {ref_path} is {ref[1]}x{ref[0]}")
    if problems:
        return None, problems
    l1, l2 = arrays[2], arrays[3]
    a, b = int(((l1 > 0) & (l2 == 0)).sum()), int(((l1 == 0) & (l2 > 0)).sum())
    if a or b:
        problems.append(f"{pair.label1} vs {pair.label2}: change masks disagree in {a + b} pixels "
                        f"(label1 > 0 but label2 = 0 in {a}, label2 > 0 but label1 = 0 in {b})")
        return None, problems
    return tuple(arrays), []


@dataclass
class ValidationReport:
    """Result of :func:`validate` (chapter 01): ``ok``, one line per problem, and a summary dict."""

    root: Path
    problems: list[str] = field(default_factory=list)
    summary: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        """A one-screen text summary, or the problem lines."""
        if not self.ok:
            return "\n".join([f"INVALID {self.root}: {len(self.problems)} problems", *self.problems])
        s = self.summary
        lines = [f"OK {self.root}: {s['pairs']} pairs " + ", ".join(f"{k or 'flat'}={v}" for k, v in
                                                                    s["splits"].items()),
                 f"  sizes: {', '.join(s['sizes'])}; label formats: {s['label_formats']}",
                 f"  change ratio: mean {s['change_ratio']['mean']:.3f}, min {s['change_ratio']['min']:.3f}, "
                 f"max {s['change_ratio']['max']:.3f}",
                 f"  {'class':<16}{'date 1 %':>10}{'date 2 %':>10}"]
        for c in CLASSES:
            lines.append(f"  {c:<16}{100 * s['class_fraction']['date1'][c]:>10.2f}"
                         f"{100 * s['class_fraction']['date2'][c]:>10.2f}")
        lines.append("  top transitions (from → to, % of changed pixels):")
        for t in s["top_transitions"][:8]:
            lines.append(f"    {t['from']:>14} → {t['to']:<14} {100 * t['fraction']:6.2f}")
        return "\n".join(lines)


def summarize(labels: list[tuple[np.ndarray, np.ndarray]], pairs: list[Pair]) -> dict:
    """Class fractions per date, from→to transition counts (7×7), change ratios (chapter 01)."""
    counts = np.zeros((2, len(CLASSES)), np.int64)
    trans = np.zeros((len(CLASSES), len(CLASSES)), np.int64)
    ratios = []
    for l1, l2 in labels:
        counts[0] += np.bincount(l1.ravel(), minlength=7)[:7]
        counts[1] += np.bincount(l2.ravel(), minlength=7)[:7]
        trans += np.bincount(l1.ravel().astype(np.int64) * 7 + l2.ravel(), minlength=49)[:49].reshape(7, 7)
        ratios.append(float((l1 > 0).mean()))
    total = max(int(counts[0].sum()), 1)
    changed = max(int(trans[1:, 1:].sum()), 1)
    top = sorted(((int(trans[i, j]), i, j) for i in range(1, 7) for j in range(1, 7) if trans[i, j]), reverse=True)
    splits: dict[str, int] = {}
    for p in pairs:
        splits[p.split] = splits.get(p.split, 0) + 1
    r = np.array(ratios or [0.0])
    return {
        "pairs": len(pairs), "splits": splits,
        "sizes": sorted({f"{a.shape[1]}x{a.shape[0]}" for a, _ in labels}),
        "class_fraction": {f"date{d + 1}": {c: float(counts[d, i] / total) for i, c in enumerate(CLASSES)}
                           for d in range(2)},
        "transitions": trans.tolist(),
        "top_transitions": [{"from": CLASSES[i], "to": CLASSES[j], "pixels": n, "fraction": n / changed}
                            for n, i, j in top],
        "change_ratio": {"mean": float(r.mean()), "min": float(r.min()), "max": float(r.max())},
    }


def _label_format(path: Path) -> str:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return "rgb" if im.mode == "RGB" else "index"
    except Exception:  # noqa: BLE001
        return "unreadable"


def validate(root: str | Path, split: str | None = None, workers: int | None = None) -> ValidationReport:
    """Check every pair under ``root`` (chapter 01; ``textscd data validate``). Decodes with a thread pool."""
    root = Path(root)
    pairs, problems = scan(root, split)
    labels: list[tuple[np.ndarray, np.ndarray]] = []
    with ThreadPoolExecutor(max_workers=workers or 4) as ex:
        for arrays, probs in ex.map(check_pair, pairs):
            problems += probs
            if arrays is not None:
                labels.append((arrays[2], arrays[3]))
    rep = ValidationReport(root, problems)
    if rep.ok:
        rep.summary = summarize(labels, pairs)
        fmts = sorted({_label_format(p.label1) for p in pairs[:: max(1, len(pairs) // 20)]})
        rep.summary["label_formats"] = "/".join(fmts)
    return rep


def read_split_file(path: str | Path) -> dict[str, str]:
    """A split file (chapter 01): one name per line (those pairs go to val), or ``NAME SPLIT`` per line
    (split train|val|test). Blank lines and ``#`` comments are ignored; extensions are dropped."""
    out: dict[str, str] = {}
    for n, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].replace(",", " ").replace("\t", " ").strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) == 1:
            name, split = parts[0], "val"
        elif len(parts) == 2 and parts[1] in SPLITS:
            name, split = parts
        elif len(parts) == 2 and parts[0] in SPLITS:
            split, name = parts
        else:
            raise SecondFormatError(f"{path}:{n}: expected 'NAME' or 'NAME SPLIT' (split train|val|test): {raw!r}")
        out[Path(name).stem] = split
    return out


def split_names(names: list[str], val_fraction: float = 0.2, seed: int = 0) -> dict[str, str]:
    """Deterministic train/val split (chapter 01): sort, permute with ``seed``, the first
    ``floor(N·val_fraction)`` go to val (2,968 SECOND pairs → 2,375 train / 593 val, the paper's 4:1)."""
    names = sorted(names)
    n_val = int(math.floor(len(names) * val_fraction + 1e-9))
    perm = np.random.default_rng(seed).permutation(len(names))
    val = {names[i] for i in perm[:n_val]}
    return {n: ("val" if n in val else "train") for n in names}


def prepare_second(src: str | Path, dst: str | Path, split_file: str | Path | None = None,
                   val_fraction: float = 0.2, seed: int = 0) -> dict:
    """Official SECOND download → working layout ``DST/{train,val}/{im1,im2,label1,label2}`` (chapter 01;
    ``textscd data prepare-second``). Validates SRC first, never writes into it, copies only what changed
    (idempotent), removes stale files of an earlier split from DST. Returns a summary dict."""
    from textscd_lib.io_utils import atomic_write, atomic_write_json

    src, dst = Path(src).resolve(), Path(dst).resolve()
    if dst == src or src in dst.parents:
        raise ValueError(f"{dst}: the output must lie outside the source {src} (SRC is never modified)")
    rep = validate(src)
    if not rep.ok:
        raise SecondFormatError(f"{src}: invalid source, nothing written", rep.problems)
    pairs = scan(src)[0]
    by_name: dict[str, Pair] = {}
    for p in pairs:
        if p.name in by_name:
            raise SecondFormatError(f"{p.im1}: name {p.name!r} also in {by_name[p.name].im1}; names must be unique")
        by_name[p.name] = p
    if split_file:
        plan = read_split_file(split_file)
        unknown = sorted(set(plan) - set(by_name))
        if unknown:
            raise SecondFormatError(f"{split_file}: {len(unknown)} names not in {src}", unknown)
        if all(v == "val" for v in plan.values()):
            plan = {n: plan.get(n, "train") for n in by_name}
    else:
        plan = split_names(list(by_name), val_fraction, seed)
    copied = 0
    for name, split in sorted(plan.items()):
        for folder, f in zip(FOLDERS, by_name[name].files):
            out = dst / split / folder / f.name
            st = f.stat()
            if out.exists() and out.stat().st_size == st.st_size and out.stat().st_mtime_ns == st.st_mtime_ns:
                continue
            atomic_write(out, lambda p, f=f: shutil.copy2(f, p))
            copied += 1
    removed = 0
    for s, d in _split_dirs(dst) if dst.is_dir() else []:
        for folder in FOLDERS:
            for name, p in _list(d / folder).items():
                if plan.get(name) != s:
                    p.unlink()
                    removed += 1
    counts = {s: sum(v == s for v in plan.values()) for s in SPLITS if s in plan.values()}
    summary = {"src": str(src), "dst": str(dst), "split_file": str(split_file) if split_file else None,
               "val_fraction": val_fraction, "seed": seed, "counts": counts, "files_copied": copied,
               "files_removed": removed}
    atomic_write_json(dst / "prepare.json", summary)
    log.info("prepared %s: %s (%d files copied, %d removed)", dst, counts, copied, removed)
    return summary
