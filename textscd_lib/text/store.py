"""The caption store and the paper's prompt (chapter 02).

The paper (§4.1, "Text rephrasing") asks Gemini for one sentence per bi-temporal pair with
:data:`PAPER_PROMPT`; the captions become ``F_text`` for the TGI module (eq. 6–7).
:class:`CaptionStore` keeps one JSONL file per caption set, appended one record per line (atomic, durable,
a half-written last line from a killed process is detected and repaired), merged deterministically.
Who writes into a store — Gemini (:mod:`textscd_lib.text.gemini`) or an offline source
(:mod:`textscd_lib.text.sources`) — is decided by :mod:`textscd_lib.text.captions`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from textscd_lib.common.io import atomic_write_text
from textscd_lib.common.lock import LockHeld

log = logging.getLogger(__name__)

# Paper §4.1: the instruction given to Gemini together with both images of a pair.
PAPER_PROMPT = ("Change detection task: Use a sentence to summarize the differences in buildings, roads, "
                "vegetation, etc.")

OFFLINE_BACKENDS = ("oracle", "noisy", "shuffled", "empty", "second-cc")
BACKENDS = ("gemini", *OFFLINE_BACKENDS)


# ----------------------------------------------------------------------------------------------- store
class CaptionStore:
    """A JSONL caption set: one record per line (chapter 02).

    A record holds ``pair``, ``split``, ``caption``, ``status`` ("ok" or "failed"), ``error``, ``source``,
    ``backend``, ``model``, ``prompt``, ``time`` (unix seconds) and backend extras. Appending writes the
    whole line with a single ``write`` on an ``O_APPEND`` descriptor and ``fsync``\\ s it, so a killed process
    leaves at most one half-written last line; the next :meth:`append` truncates it away and readers skip it.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._checked = False

    def __repr__(self) -> str:
        return f"CaptionStore({str(self.path)!r})"

    def exists(self) -> bool:
        return self.path.is_file()

    def repair(self) -> int:
        """Cut a half-written last line (no trailing newline) off the file; returns the bytes removed."""
        if not self.path.is_file():
            return 0
        data = self.path.read_bytes()
        if not data or data.endswith(b"\n"):
            return 0
        keep = data.rfind(b"\n") + 1
        with open(self.path, "r+b") as fh:
            fh.truncate(keep)
            os.fsync(fh.fileno())
        log.warning("%s: removed a half-written last line (%d bytes) left by an interrupted run",
                    self.path, len(data) - keep)
        return len(data) - keep

    def append(self, record: dict[str, Any]) -> None:
        """Append one record, atomically and durably (thread-safe)."""
        record = {"time": round(time.time(), 3), **record}
        if "pair" not in record or record.get("status") not in ("ok", "failed"):
            raise ValueError(f"{self.path}: a caption record needs 'pair' and status ok|failed: {record}")
        line = (json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
        with self._lock:
            if not self._checked:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.repair()
                self._checked = True
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)

    @contextlib.contextmanager
    def exclusive(self):
        """Hold an exclusive lock on the store for a whole captioning run, so that two runs never request the
        same pairs; the kernel releases it when the process dies. Raises if another run holds it."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LockHeld(f"{self.path}: another captioning run is writing this store; wait for it "
                                   "or stop it first") from None
            try:
                yield self
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def write_all(self, records: list[dict[str, Any]]) -> None:
        """Replace the whole store at once (offline sources), atomically."""
        now = round(time.time(), 3)
        text = "".join(json.dumps({"time": now, **r}, ensure_ascii=False, sort_keys=True) + "\n"
                       for r in records)
        atomic_write_text(self.path, text)
        self._checked = True

    def records(self) -> list[dict[str, Any]]:
        """Every readable record in file order; unreadable lines (a killed writer's last line) are skipped."""
        if not self.path.is_file():
            return []
        out, bad = [], 0
        lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            if isinstance(rec, dict) and "pair" in rec:
                _check_types(rec, f"{self.path}:{number}")
                out.append(rec)
            else:
                bad += 1
        if bad:
            log.warning("%s: skipped %d unreadable line(s)", self.path, bad)
        return out

    def latest(self) -> dict[str, dict[str, Any]]:
        """One record per pair, merged deterministically: an ``ok`` record beats a ``failed`` one; among
        records of the same status the one appended last wins. Sorted by pair name."""
        best: dict[str, dict[str, Any]] = {}
        for rec in self.records():
            old = best.get(rec["pair"])
            if old is None or not (old.get("status") == "ok" and rec.get("status") != "ok"):
                best[rec["pair"]] = rec
        return dict(sorted(best.items()))

    def captions(self) -> dict[str, str]:
        """``{pair: caption}`` for the pairs captioned successfully (status ok)."""
        return {k: r.get("caption") or "" for k, r in self.latest().items() if r.get("status") == "ok"}

    def failed(self) -> dict[str, str]:
        """``{pair: error}`` for the pairs whose latest attempt failed."""
        return {k: r.get("error") or "" for k, r in self.latest().items() if r.get("status") != "ok"}


def _check_types(rec: dict[str, Any], where: str) -> None:
    """A record's pair must be a string and its caption a string (or absent/null on a failed attempt);
    anything else is an error naming the file and line, never a traceback deep in the text encoder."""
    if not isinstance(rec["pair"], str) or not rec["pair"]:
        raise ValueError(f"{where}: 'pair' must be a non-empty string, got {type(rec['pair']).__name__} "
                         f"{str(rec['pair'])[:60]!r}; fix or delete that line")
    cap = rec.get("caption")
    if cap is not None and not isinstance(cap, str):
        raise ValueError(f"{where}: the caption of pair {rec['pair']!r} is a {type(cap).__name__} "
                         f"({str(cap)[:60]!r}), expected a string; fix or delete that line")


def load_captions(path: str | Path) -> dict[str, str]:
    """``{pair: caption}`` of a caption store (chapter 03 reads it to build ``F_text``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no caption store here; make one with `textscd caption`")
    return CaptionStore(path).captions()
