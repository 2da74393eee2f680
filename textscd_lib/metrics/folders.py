"""Prediction folders: the layouts other methods write, matched against the ground truth and read (chapter 06;
``textscd evaluate``, ``textscd errors``).

:func:`find_layout` names the layout of a folder (:data:`PRED_LAYOUTS`, or a binary change folder),
:func:`match_predictions` pairs every ground-truth tile with its prediction files and reports every problem in
one error, :func:`read_truth` and :func:`read_change_mask` read the PNGs, and :func:`score_folders` scores a
whole folder with the maths of `textscd_lib.metrics.scores`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from textscd_lib.data.second import EXTENSIONS, SecondFormatError, read_label
from textscd_lib.metrics.scores import SCDConfusion, TransitionConfusion, scores_from_change_masks

log = logging.getLogger(__name__)


# Prediction folders: the layouts other methods write (chapter 06; `textscd evaluate`, `textscd errors`).
# (folder of date 1, folder of date 2, what writes it); the first that exists wins. A layout is named by its
# date-1 folder ("label1", "im1", ...); "binary" is the change-only folder below.
PRED_LAYOUTS: tuple[tuple[str, str, str], ...] = (
    ("label1", "label2", "SECOND layout (label1/ label2/)"),
    ("im1", "im2", "SECOND reference protocol, index maps (im1/ im2/, as Bi-SRNet and its descendants write)"),
    ("im1_rgb", "im2_rgb", "SECOND reference protocol, colour maps (im1_rgb/ im2_rgb/)"),
    ("change_map_T1", "change_map_T2", "ChangeMamba's prediction script, SECOND colour maps "
                                       "(change_map_T1/ change_map_T2/)"),
)
BINARY_LAYOUT = "binary"
BINARY_DESCRIPTION = ("binary change folder (one 0/1 or 0/255 PNG per pair, change-only method): false alarms "
                      "and misses only, semantic scores not applicable")
LAYOUT_NAMES: tuple[str, ...] = tuple(x[0] for x in PRED_LAYOUTS) + (BINARY_LAYOUT,)


def _layout_dirs(root: Path, split: str | None, layouts) -> tuple[Path, tuple[str, str, str]]:
    """The folder holding one of ``layouts`` (ROOT itself, ROOT/<split>, or ROOT/val, ROOT/test) and the layout."""
    splits = [split] if split else ["val", "test"]
    for base in (root, *(root / s for s in splits)):
        for lay in layouts:
            if (base / lay[0]).is_dir() and (base / lay[1]).is_dir():
                return base, lay
    names = " or ".join(f"{a}/ and {b}/" for a, b, _ in layouts)
    raise SecondFormatError(f"{root}: no {names} folders (also looked in "
                            f"{', '.join(str(root / s) for s in splits)})")


def _binary_dir(root: Path, split: str | None) -> Path | None:
    """ROOT, ROOT/<split> (or ROOT/val, ROOT/test): the first holding image files directly, else None."""
    splits = [split] if split else ["val", "test"]
    return next((b for b in (root, *(root / s for s in splits)) if b.is_dir() and _files(b)), None)


def find_layout(pred_root: str | Path, split: str | None = None, layout: str | None = None) -> tuple[Path, str]:
    """(folder, layout name) of a prediction folder: ``layout`` None or "auto" tries :data:`PRED_LAYOUTS` in
    order, then a binary change folder (image files directly in the folder); a named layout is the only one
    looked for. An unknown name or nothing found is one ``SecondFormatError`` line naming the folder."""
    root = Path(pred_root)
    auto = layout in (None, "auto")
    if not auto and layout not in LAYOUT_NAMES:
        raise SecondFormatError(f"{root}: unknown prediction layout {layout!r} "
                                f"(layouts known: auto, {', '.join(LAYOUT_NAMES)})")
    paired = [x for x in PRED_LAYOUTS if auto or x[0] == layout]
    missing = None
    if paired:
        try:
            base, lay = _layout_dirs(root, split, paired)
            return base, lay[0]
        except SecondFormatError as e:
            missing = e
    base = _binary_dir(root, split) if auto or layout == BINARY_LAYOUT else None
    if base is not None:
        return base, BINARY_LAYOUT
    if missing is not None and not auto:
        raise missing
    where = ", ".join(str(root / s) for s in ([split] if split else ["val", "test"]))
    pairs = ", ".join(f"{a}/ {b}/" for a, b, _ in PRED_LAYOUTS)
    wanted = f"no {pairs} folders nor image files of a binary change folder" if auto else "no image files"
    raise SecondFormatError(f"{root}: {wanted} (also looked in {where}; layouts known: {', '.join(LAYOUT_NAMES)})")


def layout_description(name: str) -> str:
    """What writes a layout, for logs and reports ('binary' included)."""
    return BINARY_DESCRIPTION if name == BINARY_LAYOUT else {x[0]: x[2] for x in PRED_LAYOUTS}[name]


def _label_folder(root: Path, split: str | None) -> Path:
    """The folder holding label1/ and label2/: ROOT itself, ROOT/<split>, or ROOT/val by default."""
    return _layout_dirs(root, split, PRED_LAYOUTS[:1])[0]


def _files(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir())
            if p.is_file() and p.suffix.lower() in EXTENSIONS and not p.name.startswith(".")}


def _size(path: Path) -> tuple[int, int] | None:
    try:
        with Image.open(path) as im:
            return im.size
    except Exception:  # noqa: BLE001 - reported as unreadable by the caller
        return None


def read_change_mask(path: str | Path) -> np.ndarray:
    """A binary change prediction (0/1 or 0/255, grey, palette or equal-channel RGB) → bool (H, W): True =
    changed. Any other value is one ``SecondFormatError`` line naming the file and the values found."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im.convert("L") if im.mode == "1" else im)
    except Exception as e:  # noqa: BLE001 - one line naming the file
        raise SecondFormatError(f"{path}: unreadable or corrupt image ({e})") from None
    if arr.ndim == 3:
        if not (arr[..., :3] == arr[..., :1]).all():
            raise SecondFormatError(f"{path}: a binary change map must be grey (0/1 or 0/255), found colours")
        arr = arr[..., 0]
    vals = set(np.unique(arr).tolist())
    if not (vals <= {0, 1} or vals <= {0, 255}):
        shown = ", ".join(str(v) for v in sorted(vals)[:6]) + (" ..." if len(vals) > 6 else "")
        raise SecondFormatError(f"{path}: a binary change map holds 0/1 or 0/255, found values {shown}")
    return arr > 0


def _problems(gt_dir: Path, gt: list[dict], pred_base: Path, pr: list[dict], folders, strict: bool,
              extra: list[str]) -> list[str]:
    """One line per missing, extra (``strict``), unreadable or mis-sized file (see :func:`match_predictions`)."""
    names = sorted(gt[0])
    problems = [f"{gt_dir / 'label2' / n}.png: missing (label1/{gt[0][n].name} has no twin)"
                for n in names if n not in gt[1]]
    for d, folder in zip(pr, folders):
        problems += [f"{pred_base / folder / n}.png: missing (every ground-truth pair needs a prediction)"
                     for n in names if n not in d]
    if strict:
        problems += [f"{p}: extra prediction, no ground truth {gt_dir / 'label1' / Path(p).stem}.png"
                     for p in extra]
    for n in names:
        if n not in gt[1] or any(n not in d for d in pr):
            continue
        want = _size(gt[0][n])
        for q in dict.fromkeys(d[n] for d in pr):
            got = _size(q)
            if got is None:
                problems.append(f"{q}: unreadable or corrupt image")
            elif want is not None and got != want:
                problems.append(f"{q}: prediction is {got[0]}×{got[1]}, ground truth {want[0]}×{want[1]}")
    return problems


def match_predictions(pred_root: str | Path, gt_root: str | Path, split: str | None = None,
                      strict: bool = False, layout: str | None = None) -> dict:
    """Pair every ground-truth tile with its predicted maps, checking the folders before anything is read
    (chapter 06; ``textscd evaluate`` and ``textscd errors``).

    ``pred_root`` may hold any of :data:`PRED_LAYOUTS` (``label1/ label2/``, ``im1/ im2/`` index maps,
    ``im1_rgb/ im2_rgb/`` or ``change_map_T1/ change_map_T2/`` colour maps) or be a binary change folder
    (one 0/1 or 0/255 PNG per pair, read with :func:`read_change_mask`), directly or under ``<split>/``;
    ``layout`` forces one (:func:`find_layout`). Every problem (a missing prediction, a size that differs from
    the truth, an unreadable file; with ``strict`` also a prediction without ground truth) becomes one line of a
    single ``SecondFormatError``. Returns ``{"names", "gt": {name: (path1, path2)}, "pred": {...}, "layout"
    (what wrote it), "layout_name", "binary", "pred_dirs", "extra"}``; for a binary folder ``binary`` is True
    and both dates' prediction paths are the one change map (read it with :func:`read_change_mask`, not as
    classes). ``extra`` lists prediction files without ground truth (ignored)."""
    pred_base, name = find_layout(pred_root, split, layout)
    binary = name == BINARY_LAYOUT
    folders = (".", ".") if binary else {x[0]: x[:2] for x in PRED_LAYOUTS}[name]
    gt_dir = _label_folder(Path(gt_root), split)
    gt = [_files(gt_dir / f) for f in ("label1", "label2")]
    pr = [_files(pred_base / f) for f in folders]
    if not gt[0]:
        raise SecondFormatError(f"{gt_dir / 'label1'}: no label files")
    extra = sorted({str(p) for d in pr for n, p in d.items() if n not in gt[0]})
    problems = _problems(gt_dir, gt, pred_base, pr[:1] if binary else pr, folders, strict, extra)
    if problems:
        raise SecondFormatError(f"{pred_root}: predictions do not match the ground truth in {gt_dir} "
                                f"({len(problems)} problem{'s' * (len(problems) > 1)})", problems)
    names = sorted(gt[0])
    return {"names": names, "gt": {n: (gt[0][n], gt[1][n]) for n in names},
            "pred": {n: (pr[0][n], pr[1][n]) for n in names}, "layout": layout_description(name),
            "layout_name": name, "binary": binary,
            "pred_dirs": tuple(pred_base / f for f in folders),
            "extra": extra}


def read_truth(path1: Path, path2: Path) -> tuple[np.ndarray, np.ndarray]:
    """Both dates' ground-truth index maps, their change masks checked to agree (chapter 06)."""
    g = read_label(path1), read_label(path2)
    if not np.array_equal(g[0] > 0, g[1] > 0):
        raise SecondFormatError(f"{path1}: change masks of label1 and label2 disagree "
                                f"in {int(((g[0] > 0) != (g[1] > 0)).sum())} pixels")
    return g


def _score_binary(m: dict) -> dict:
    C = np.zeros((2, 2), dtype=np.int64)
    for name in m["names"]:
        changed = read_truth(*m["gt"][name])[0] > 0
        pred = read_change_mask(m["pred"][name][0])
        C += np.bincount(pred.ravel().astype(np.int64) * 2 + changed.ravel(), minlength=4).reshape(2, 2)
    res = scores_from_change_masks(C)
    res["confusion"] = C.tolist()
    return res


def score_folders(pred_root: str | Path, gt_root: str | Path, split: str | None = None,
                  transitions: bool = False, layout: str | None = None) -> dict:
    """Score predicted maps stored in the SECOND layout against ground truth (chapter 06; ``textscd evaluate``).

    The predictions may be in any layout :func:`match_predictions` reads (``layout`` forces one; the layout
    read and any extra prediction files ignored are logged and returned under ``layout`` and ``extra``); the
    ground truth holds ``label1/`` and ``label2/``. RGB or index PNGs, read and validated by
    ``textscd_lib.data.second.read_label``. Every ground-truth pair must have a prediction; missing files,
    size mismatches or a ground truth whose change masks disagree raise ``SecondFormatError`` naming the
    files. Returns :func:`scores_from_confusion` plus ``confusion``, ``pairs``, ``layout``, ``layout_name``,
    ``binary`` and ``extra``; a binary change folder gives :func:`scores_from_change_masks` instead (2×2
    ``confusion``, semantic scores NaN as not applicable, no transitions)."""
    m = match_predictions(pred_root, gt_root, split, layout=layout)
    log.info("predictions read from %s and %s: %s", *m["pred_dirs"], m["layout"])
    if m["extra"]:
        log.warning("ignored %d extra prediction file(s) without ground truth: %s%s", len(m["extra"]),
                    ", ".join(m["extra"][:10]), " ..." if len(m["extra"]) > 10 else "")
    if m["binary"]:
        res = _score_binary(m)
    else:
        res = _score_maps(m, transitions)
    res["pairs"] = len(m["names"])
    res["layout"], res["layout_name"], res["extra"] = m["layout"], m["layout_name"], m["extra"]
    res.setdefault("binary", False)
    return res


def _score_maps(m: dict, transitions: bool) -> dict:
    conf, trans = SCDConfusion(), TransitionConfusion() if transitions else None
    for name in m["names"]:
        g = read_truth(*m["gt"][name])
        p = [read_label(q) for q in m["pred"][name]]
        conf.update(p[0], p[1], g[0], g[1])
        if trans is not None:
            trans.update(p[0], p[1], g[0], g[1])
    res = conf.scores()
    res["confusion"] = conf.matrix.tolist()
    if trans is not None:
        res["transition_confusion"] = trans.matrix.tolist()
    return res
