"""From the official SECOND download to the working layout: split files, the seeded train/val split, and the
copy into ``DST/{train,val}/{im1,im2,label1,label2}`` (chapter 01, ``notebooks/01_data_exploration.ipynb``;
``textscd data prepare-second``).

The paper (§4.1) splits SECOND's 2,968 labelled pairs 4:1 into train and val; :func:`split_names` makes that
split deterministic, :func:`read_split_file` accepts a published one instead. The source is never modified.
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import numpy as np

from textscd_lib.common.io import atomic_write, atomic_write_json
from textscd_lib.common.outputs import OutputRefused, guard_output_dir, mark_output_dir
from textscd_lib.data.second import FOLDERS, SPLITS, Pair, SecondFormatError, image_files, scan, split_dirs
from textscd_lib.data.validate import validate

KIND = "SECOND working layout"

log = logging.getLogger(__name__)


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
    (idempotent), removes stale copies of SRC's pairs left by an earlier split. DST must be new, empty or an
    earlier DST (its marker or prepare.json), and may not contain SRC; other files in it are never deleted.
    Returns a summary dict."""

    src, dst = Path(src).resolve(), Path(dst).resolve()
    if dst == src or src in dst.parents:
        raise OutputRefused(f"{dst}: the output must lie outside the source {src} (SRC is never modified)")
    # updating an earlier DST in place is this command's normal use, so its own kind needs no --force
    guard_output_dir(dst, KIND, inputs=[src, split_file], force=True,
                     recognise=lambda d: (d / "prepare.json").is_file())
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
    mark_output_dir(dst, KIND, command="textscd data prepare-second", src=str(src))
    copied = 0
    for name, split in sorted(plan.items()):
        for folder, f in zip(FOLDERS, by_name[name].files):
            out = dst / split / folder / f.name
            st = f.stat()
            if out.exists() and out.stat().st_size == st.st_size and out.stat().st_mtime_ns == st.st_mtime_ns:
                continue
            atomic_write(out, lambda p, f=f: shutil.copy2(f, p))
            copied += 1
    removed = _remove_stale(dst, plan)
    counts = {s: sum(v == s for v in plan.values()) for s in SPLITS if s in plan.values()}
    summary = {"src": str(src), "dst": str(dst), "split_file": str(split_file) if split_file else None,
               "val_fraction": val_fraction, "seed": seed, "counts": counts, "files_copied": copied,
               "files_removed": removed}
    atomic_write_json(dst / "prepare.json", summary)
    log.info("prepared %s: %s (%d files copied, %d removed)", dst, counts, copied, removed)
    return summary


def _remove_stale(dst: Path, plan: dict[str, str]) -> int:
    """Delete copies of SRC's pairs that an earlier split put in another split of DST; files whose name is
    not one of SRC's pairs were not written by this run and are left (one warning names how many)."""
    removed, foreign = 0, 0
    for s, d in split_dirs(dst):
        for folder in FOLDERS:
            for name, p in image_files(d / folder).items():
                if name not in plan:
                    foreign += 1
                elif plan[name] != s:
                    p.unlink()
                    removed += 1
    if foreign:
        log.warning("%s: %d image files are not pairs of the source; left in place (remove them if stale)",
                    dst, foreign)
    return removed
