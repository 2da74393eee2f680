"""mini-SECOND: a seeded procedural generator of SECOND-like pairs, written to disk with its scene log
(chapter 01, ``notebooks/01_data_exploration.ipynb``; ``textscd data synth``).

:func:`make_pair` puts one pair together: a scene (:mod:`textscd_lib.data.scene`: land cover, textures,
the look of each date), the change events between the dates (:mod:`textscd_lib.data.changes`), the
designed ambiguity drawn with one shared texture, and the pair's scene-log record. :func:`synthesize` writes a
dataset in the SECOND layout; :func:`ensure_mini_second` and :func:`resolve_data_root` are what the notebooks
call. Pair i depends only on (seed, i): 300 pairs at 128² take a few seconds. ``scene_log.jsonl`` describes
each pair's changes for the caption writers (chapter 02).
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

from textscd_lib.common.outputs import guard_output_dir, mark_output_dir
from textscd_lib.common.paths import resolve
from textscd_lib.common.runs import clear_substitute, record_substitute
from textscd_lib.data.changes import AMBIGUOUS_PAIRS, change_events, where_words
from textscd_lib.data.prepare import split_names
from textscd_lib.data.scene import (
    class_textures,
    draw_layout,
    draw_look,
    finish_image,
    pseudo_changes,
    render,
)
from textscd_lib.data.second import CLASSES, COLORS, FOLDERS, NUM_CLASSES, SecondFormatError, scan

log = logging.getLogger(__name__)

GENERATOR_VERSION = 2
DEMO_PARAMS = {"pairs": 300, "size": 128, "seed": 0, "ambiguity": 0.3, "val_fraction": 0.2}
FAST_PARAMS = {"pairs": 24, "size": 64, "seed": 0, "ambiguity": 0.3, "val_fraction": 1 / 3}


def make_pair(rng: np.random.Generator, size: int, ambiguity: float = 0.0,
              ambiguous_pairs: tuple[tuple[str, str], ...] = AMBIGUOUS_PAIRS) -> tuple[tuple[np.ndarray, ...], dict]:
    """One synthetic pair (chapter 01): ``((im1, im2, label1, label2), record)`` with uint8 RGB images, index
    labels (0 = unchanged) and the scene-log record (changes, ambiguity, pseudo-changes)."""
    s, k = size, size / 128
    lc1, builds, plays, road, kind = draw_layout(rng, s)
    amb, true_cls = None, None
    if ambiguous_pairs and rng.random() < ambiguity:  # one class of the pair changes, drawn as its partner
        a, b = ambiguous_pairs[rng.integers(len(ambiguous_pairs))]
        amb = (CLASSES.index(a), CLASSES.index(b))
        true_cls = int(rng.choice(amb))
    lc2, builds2, plays2, events = change_events(rng, lc1, builds, plays, (true_cls, set(amb)) if amb else None)
    changed = lc1 != lc2
    tex = class_textures(rng, s)
    look1, look2 = draw_look(rng, k, False), draw_look(rng, k, True)
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
    im1 = finish_image(render(lc1, tex, builds, plays, road, look1, over1), rng, look1)
    im2 = finish_image(render(lc2, tex, builds2, plays2, road, look2, over2), rng, look2)
    label1 = np.where(changed, lc1, 0).astype(np.uint8)
    label2 = np.where(changed, lc2, 0).astype(np.uint8)
    changes = []
    for e in np.unique(events[changed]):
        em = (events == e) & changed
        codes = lc1[em].astype(np.int64) * NUM_CLASSES + lc2[em]
        for code in np.unique(codes):
            m = em & (lc1 * NUM_CLASSES + lc2.astype(np.int64) == code)
            if m.mean() < 0.002:
                continue
            rows, cols = np.nonzero(m)
            changes.append({"from": CLASSES[code // NUM_CLASSES], "to": CLASSES[code % NUM_CLASSES], "area": round(float(m.mean()), 4),
                            "where": where_words(rows, cols, s),
                            "bbox": [int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1]})
    changes.sort(key=lambda c: -c["area"])
    record = {"size": s, "scene": str(kind), "changed_area": round(float(changed.mean()), 4), "changes": changes,
              "ambiguous": ambiguous, "pseudo_changes": pseudo_changes(look1, look2)}
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
               workers: int = 1, force: bool = False) -> Path:
    """Write a mini-SECOND dataset (chapter 01; ``textscd data synth``): ``OUT/{train,val}/{im1,im2,label1,
    label2}/NAME.png`` (RGB images, RGB colour labels), ``scene_log.jsonl`` and ``mini_second.json``.
    Built in a temporary folder and moved into place, so OUT is never half-written. Pair i depends only
    on (seed, i), so ``workers`` > 1 (0 = all cores) generates in parallel processes with identical output.
    An existing OUT is replaced only when it is a mini-SECOND (its marker or scene log) and ``force`` is set;
    any other folder or file is refused (:mod:`textscd_lib.common.outputs`), nothing deleted."""

    if pairs < 1 or size < 32:
        raise ValueError(f"need pairs >= 1 and size >= 32 (got pairs={pairs}, size={size})")
    if not 0 <= ambiguity <= 1:
        raise ValueError(f"ambiguity is a fraction of scenes in [0, 1], got {ambiguity}")
    out = guard_output_dir(out, "mini-SECOND dataset", force=force, recognise=is_mini_second)
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
        meta = {"generator": "textscd_lib.data.synthetic", "generator_version": GENERATOR_VERSION, "params": params,
                "what": "mini-SECOND: synthetic, seeded stand-in for SECOND (not real imagery)",
                "mean_change_ratio": round(float(np.mean(ratios)), 4),
                "seconds": round(time.perf_counter() - t0, 2)}
        (tmp / "mini_second.json").write_text(json.dumps(meta, indent=2) + "\n")
        mark_output_dir(tmp, "mini-SECOND dataset", command="textscd data synth")
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


def is_mini_second(folder: Path) -> bool:
    """A folder written by :func:`synthesize` before output markers existed: its parameters and scene log."""
    return (folder / "mini_second.json").is_file() and (folder / "scene_log.jsonl").is_file()


def _params(fast: bool, params: dict) -> dict:
    p = {**(FAST_PARAMS if fast else DEMO_PARAMS), "ambiguous_pairs": [list(x) for x in AMBIGUOUS_PAIRS], **params}
    p["ambiguous_pairs"] = [list(x) for x in p["ambiguous_pairs"]]
    return p


def ensure_mini_second(root: str | Path | None = None, fast: bool = False, **params) -> Path:
    """The mini-SECOND folder, generated if missing or made with other parameters (chapter 01). Defaults:
    demo 300 pairs at 128² (240/60), FAST 24 pairs at 64² (16/8); ``root=None`` → ``data/mini-second[-fast]``.
    The parameters live in ``ROOT/mini_second.json``."""

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
                      tuple(tuple(x) for x in p["ambiguous_pairs"]), force=True)


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


def resolve_data_root(data_root: str | Path, fast: bool, run_path: str | Path, record: bool = True) -> Path:
    """The notebooks' ``DATA_ROOT`` → a checked dataset folder (chapter 01). ``""`` → mini-SECOND (generated
    on first use, recorded as an offline substitute for SECOND); a path → validated (every pair decoded once
    into the cache of :class:`textscd_lib.data.dataset.DecodedCache`); raises ``SecondFormatError`` naming files."""

    if not str(data_root):
        root = ensure_mini_second(fast=fast)
        if record:
            record_substitute(run_path, "data", "mini-SECOND (synthetic, seeded)", "SECOND",
                              "SECOND is not on this machine; pass DATA_ROOT to use it")
        return root
    if record:
        clear_substitute(run_path, "data")

    root = resolve(data_root)
    pairs, problems = scan(root)
    if problems:
        raise SecondFormatError(f"DATA_ROOT {root}: invalid dataset", problems)
    splits = sorted({p.split for p in pairs})
    if splits == [""] or "train" not in splits:
        raise SecondFormatError(f"DATA_ROOT {root}: no train/ split; run `textscd data prepare-second SRC --out DST`"
                                " to make the working layout", [])
    from textscd_lib.data.dataset import DecodedCache  # torch, imported only where the cache is built

    for split in splits:
        DecodedCache(root, split)  # decodes and checks every pair once; later runs reuse it
    return root
