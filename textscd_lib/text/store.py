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
from textscd_lib.common.lock import LockHeld, acquire, release

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
        if "pair" not in record or record.get("status") not in STATUSES:
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
        """Hold an exclusive lock on the store for a whole captioning run, so that two runs (two processes, or
        two in one process) never request the same pairs: :func:`textscd_lib.common.lock.acquire` on
        ``.<store file>.lock`` beside it, which the kernel releases when the process dies. Raises ``LockHeld``
        naming the other run's pid and command."""
        name = f".{self.path.name}.lock"
        try:
            token, _ = acquire(self.path.parent, f"captioning into {self.path.name}", name, reentrant=False)
        except LockHeld as e:
            raise LockHeld(f"{self.path}: another captioning run is writing this store; wait for it or stop "
                           f"it first ({e})") from None
        try:
            yield self
        finally:
            release(self.path.parent, token, name)

    def write_all(self, records: list[dict[str, Any]]) -> None:
        """Replace the whole store at once (offline sources), atomically."""
        now = round(time.time(), 3)
        text = "".join(json.dumps({"time": now, **r}, ensure_ascii=False, sort_keys=True) + "\n"
                       for r in records)
        atomic_write_text(self.path, text)
        self._checked = True

    def records(self) -> list[dict[str, Any]]:
        """Every record in file order (see :meth:`numbered_records`)."""
        return [rec for _, rec in self.numbered_records()]

    def numbered_records(self) -> list[tuple[int, dict[str, Any]]]:
        """``[(line number, record)]`` in file order. A UTF-8 byte-order mark at the start is accepted silently
        (editors on Windows write one). A half-written last line (no newline: a killed writer) is skipped;
        other lines that are not JSON records are skipped with a warning naming their line numbers. Bytes that
        are not UTF-8 and a status other than ok/failed are errors naming the file and line (a store is never
        read with characters replaced or records silently dropped)."""
        if not self.path.is_file():
            return []
        lines = self.path.read_bytes().removeprefix(b"\xef\xbb\xbf").split(b"\n")
        cut = lines.pop()  # the bytes after the last newline: empty, or a half-written line
        out, bad = [], []
        for number, raw in enumerate(lines, 1):
            rec = _parse_line(raw, f"{self.path}:{number}")
            if rec is not None:
                out.append((number, rec))
            elif raw.strip():
                bad.append(number)
        if cut.strip():
            try:  # a complete record without its newline (a hand-written file) counts; a cut one does not
                last = _parse_line(cut, f"{self.path}:{len(lines) + 1}")
            except ValueError:
                last = None
            if last is not None:
                out.append((len(lines) + 1, last))
            else:
                log.warning("%s:%d: a half-written last line (no newline; an interrupted run), skipped",
                            self.path, len(lines) + 1)
        if bad:
            log.warning("%s: skipped %d line(s) that are not caption records: line %s", self.path, len(bad),
                        ", ".join(map(str, bad[:10])) + (" …" if len(bad) > 10 else ""))
        return out

    def latest(self) -> dict[str, dict[str, Any]]:
        """One record per pair, merged deterministically: an ``ok`` record beats a ``failed`` one; among
        records of the same status the one appended last wins. Sorted by pair name. Several ok records of one
        pair with different captions are a conflict: warned once with their count, and the last one wins."""
        best: dict[str, tuple[int, dict[str, Any]]] = {}
        conflicts: dict[str, list[int]] = {}
        for number, rec in self.numbered_records():
            line, old = best.get(rec["pair"], (0, None))
            if old is not None and old.get("status") == rec.get("status") == "ok" \
                    and old.get("caption") != rec.get("caption"):
                conflicts.setdefault(rec["pair"], [line]).append(number)
            if old is None or not (old.get("status") == "ok" and rec.get("status") != "ok"):
                best[rec["pair"]] = (number, rec)
        if conflicts:
            pair, where = min(conflicts.items())
            log.warning("%s: %d pair(s) have several ok records with different captions (e.g. %s on lines %s); "
                        "the last one in the file wins", self.path, len(conflicts), pair,
                        ", ".join(map(str, where)))
        return {k: rec for k, (_, rec) in sorted(best.items())}

    def captions(self) -> dict[str, str]:
        """``{pair: caption}`` for the pairs captioned successfully (status ok)."""
        return {k: r.get("caption") or "" for k, r in self.latest().items() if r.get("status") == "ok"}

    def failed(self) -> dict[str, str]:
        """``{pair: error}`` for the pairs whose latest attempt failed."""
        return {k: r.get("error") or "" for k, r in self.latest().items() if r.get("status") != "ok"}


STATUSES = ("ok", "failed")


def _parse_line(raw: bytes, where: str) -> dict[str, Any] | None:
    """One line of a store as a checked record, None when it is not JSON or not a record (skipped with a
    warning by the caller); ValueError naming ``where`` for bytes that are not UTF-8 or an unknown status."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{where}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1}); a caption "
                         "store is UTF-8 JSONL: fix or delete that line") from None
    if not text.strip():
        return None
    try:
        rec = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(rec, dict) or "pair" not in rec:
        return None
    _check_types(rec, where)
    if rec.get("status") not in STATUSES:
        raise ValueError(f"{where}: unknown status {str(rec.get('status'))[:30]!r} of pair {rec['pair']!r} "
                         f"(expected {' or '.join(STATUSES)}); fix or delete that line")
    return rec


def looks_like_caption_store(path: Path) -> bool:
    """True when the first line of ``path`` is a caption record (a JSON object with ``pair`` and ``status``):
    what ``textscd caption`` asks before it resumes, repairs or replaces a file."""
    try:
        with open(path, "rb") as fh:
            first = fh.readline(1 << 20).removeprefix(b"\xef\xbb\xbf")
        rec = json.loads(first.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(rec, dict) and "pair" in rec and "status" in rec


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
