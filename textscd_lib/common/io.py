"""Atomic file writes: nothing is ever left half-written (used by every chapter).

Each writer writes to a temporary file in the destination folder, flushes it to disk and renames it over
the destination, so a killed process leaves either the old file or the new one, never a mix.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` and then rename ``tmp_path`` onto ``path`` (same folder, atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; a result file is as readable as any other
        write(tmp_path)
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def atomic_save_png(path: str | Path, array) -> Path:
    """Save a uint8 HxW or HxWx3 array as PNG, atomically."""
    from PIL import Image

    img = Image.fromarray(array)
    return atomic_write(path, lambda p: img.save(p, format="PNG"))


def atomic_torch_save(path: str | Path, obj: Any) -> Path:
    """``torch.save`` atomically. torch is imported here, not at the top: the caption store and the command
    line's parser import this module, and ``textscd --help`` must start without torch."""
    import torch

    return atomic_write(path, lambda p: torch.save(obj, p))
