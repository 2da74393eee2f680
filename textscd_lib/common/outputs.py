"""One rule for every command's output path: write only what is ours, never into an input, never over a stranger.

A command that writes a folder (``data synth``, ``data prepare-second``, ``predict``, ``errors``) or a file
(``features``, ``caption``) calls :func:`guard_output_dir` or :func:`guard_output_file` before writing:

- the output may not be, contain or lie inside one of the command's inputs (``predict --out DATA/val`` would
  overwrite the ground truth; ``prepare-second SRC --out DST`` with SRC inside DST would clean up the source);
- a missing output, an empty folder or an empty file is fine;
- an existing output must be recognised as the command's own kind: a folder by the marker file
  ``.textscd-output.json`` (:data:`MARKER`, written by :func:`mark_output_dir` when the folder is made) or by a
  record of older versions (the caller's ``recognise``: a dataset's scene log, a run.json); a file by the
  caller's ``recognise`` (a caption store must read as our JSONL rows, a feature file as ours);
- an output of the own kind is replaced or updated only with ``force`` (``--force``); a foreign one never.

Refusals are :class:`OutputRefused`, a ``ValueError``: the command line prints one line naming the path and
why, exit code 2, and nothing has been written or deleted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from textscd_lib.common.io import atomic_write_json

MARKER = ".textscd-output.json"

Recognise = Callable[[Path], bool]


class OutputRefused(ValueError):
    """An output path a command will not write (an input, a foreign file or folder, its own kind without
    ``--force``); the message is one line naming the path and why."""


def _resolved(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()


def check_not_input(out: str | Path, inputs: Iterable[str | Path | None] = ()) -> Path:
    """``out`` resolved, or :class:`OutputRefused` when it is, contains or lies inside one of ``inputs``
    (links resolved, so a symlink to the input is the input)."""
    out = _resolved(out)
    for given in inputs:
        if given in (None, ""):
            continue
        inp = _resolved(given)
        if out == inp:
            raise OutputRefused(f"{out}: the output is the input {given}; choose another output path")
        if inp in out.parents:
            raise OutputRefused(f"{out}: the output lies inside the input {inp}; choose a path outside it")
        if out in inp.parents:
            raise OutputRefused(f"{out}: the output contains the input {inp}; choose a path that does not")
    return out


def marker_kind(folder: str | Path) -> str | None:
    """The kind named by ``FOLDER/.textscd-output.json``, or None when there is no readable marker."""
    f = Path(folder) / MARKER
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data.get("kind") if isinstance(data, dict) and isinstance(data.get("kind"), str) else None


def mark_output_dir(folder: str | Path, kind: str, **info) -> Path:
    """Write the marker that makes ``folder`` recognisable as an output of ``kind`` (atomic; ``info`` is
    recorded beside the kind, e.g. the command)."""
    atomic_write_json(Path(folder) / MARKER, {"kind": kind, "written_by": "textscd",
                                              "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **info})
    return Path(folder) / MARKER


def is_own_dir(folder: str | Path, kind: str, recognise: Recognise | None = None) -> bool:
    """True when ``folder`` is an output of ``kind``: its marker says so, or (no marker) ``recognise`` does."""
    found = marker_kind(folder)
    if found is not None:
        return found == kind
    return bool(recognise and recognise(Path(folder)))


def guard_output_dir(out: str | Path, kind: str, inputs: Iterable[str | Path | None] = (), force: bool = False,
                     recognise: Recognise | None = None) -> Path:
    """``out`` resolved if a command of ``kind`` may write that folder (module docstring), else
    :class:`OutputRefused`. ``force`` allows replacing or updating an existing output of the same kind; a
    folder of another kind, a file, or a non-empty folder it does not recognise is refused even then."""
    out = check_not_input(out, inputs)
    if not out.exists():
        if out.is_symlink():
            raise OutputRefused(f"{out}: a dangling link; choose a new folder")
        return out
    if not out.is_dir():
        raise OutputRefused(f"{out}: exists and is not a folder; refusing to replace it (choose a new folder)")
    if not any(out.iterdir()):
        return out
    found = marker_kind(out)
    if found is not None and found != kind:
        raise OutputRefused(f"{out}: holds a {found} output, not a {kind}; refusing to write into it")
    if not is_own_dir(out, kind, recognise):
        raise OutputRefused(f"{out}: not empty and not a {kind} folder written by textscd (no {MARKER}); "
                            "refusing to write into it (choose a new or empty folder)")
    if not force:
        raise OutputRefused(f"{out}: already holds a {kind}; pass --force to replace it")
    return out


def guard_output_file(out: str | Path, kind: str, inputs: Iterable[str | Path | None] = (), force: bool = False,
                      recognise: Recognise | None = None) -> Path:
    """``out`` resolved if a command of ``kind`` may write that file, else :class:`OutputRefused`. An existing
    non-empty file must pass ``recognise`` (it looks like a ``kind``) and then needs ``force``; a folder, or a
    file of another kind, is refused even with ``force``."""
    out = check_not_input(out, inputs)
    if out.is_dir():
        raise OutputRefused(f"{out}: is a folder, not a {kind} file; choose a file path")
    if not out.exists():
        if out.is_symlink():
            raise OutputRefused(f"{out}: a dangling link; choose a new file")
        return out
    if not out.is_file():
        raise OutputRefused(f"{out}: not a regular file; refusing to replace it")
    if out.stat().st_size == 0:
        return out
    if not (recognise and recognise(out)):
        raise OutputRefused(f"{out}: exists and is not a {kind}; refusing to replace it (choose a new file)")
    if not force:
        raise OutputRefused(f"{out}: already holds a {kind}; pass --force to replace it")
    return out
