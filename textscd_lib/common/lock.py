"""One writer per run folder: a lock file taken with ``O_EXCL`` (chapter 05 trains, chapter 02 captions and
``textscd run`` executes the series into ``results/<run>/``; two of them at once would mix one job's checkpoints
with the other's captions and text features).

:func:`run_lock` creates ``results/<run>/.lock`` holding the holder's pid, host, command, start time and a
random token. A second writer refuses with :class:`LockHeld`, naming the holder's pid and command. A lock
left by a process that no longer exists (same host, pid gone) is *stale*: it is taken over, and said so.

Nesting: ``textscd run`` holds the lock while its notebooks train into the same folder in a child kernel.
The holder exports its token in :data:`TOKEN_ENV`; a process that finds its own token in the lock file (the
kernel, or a second ``with run_lock`` in the same process) enters without taking the lock again and leaves it
in place on exit.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"
TOKEN_ENV = "TEXTSCD_LOCK_TOKENS"  # os.pathsep-separated tokens of the locks this process tree holds


class LockHeld(RuntimeError):
    """Another live process writes into this folder; the message names its pid and command."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def read_lock(folder: str | Path) -> dict | None:
    """The holder recorded in ``folder/.lock`` (pid, host, command, started, token), or None when unlocked.
    An unreadable lock file (a writer killed between create and write) reads as ``{"pid": None}``."""
    f = Path(folder) / LOCK_NAME
    try:
        text = f.read_text()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
        return data if isinstance(data, dict) else {"pid": None}
    except json.JSONDecodeError:
        return {"pid": None}


def _tokens() -> list[str]:
    return [t for t in os.environ.get(TOKEN_ENV, "").split(os.pathsep) if t]


def _describe(h: dict) -> str:
    return (f"pid {h.get('pid')} on {h.get('host')} ({h.get('command')!r}, since {h.get('started')})")


def _stale(h: dict, f: Path) -> bool:
    pid = h.get("pid")
    if pid is None:  # half-written: stale if older than a few seconds
        try:
            return time.time() - f.stat().st_mtime > 5
        except FileNotFoundError:
            return True
    return h.get("host") == socket.gethostname() and not _alive(int(pid))


def acquire(folder: str | Path, command: str | None = None) -> tuple[str, bool]:
    """Take ``folder``'s lock; returns ``(token, owned)``. ``owned`` is False when this process tree already
    holds it (nested use), and then the lock must not be released. Raises :class:`LockHeld`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    f = folder / LOCK_NAME
    command = command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) or "python"
    for _ in range(3):
        holder = read_lock(folder)
        if holder is not None:
            if holder.get("token") in _tokens():
                return holder["token"], False
            if not _stale(holder, f):
                raise LockHeld(f"{folder}: another job is writing this run folder: {_describe(holder)}. "
                               f"Wait for it, stop it, or use another run name; if that process is gone, "
                               f"delete {f}")
            log.warning("%s: taking over a stale lock left by %s, which no longer runs", folder,
                        _describe(holder))
            with contextlib.suppress(FileNotFoundError):
                f.unlink()
        token = secrets.token_hex(8)
        try:
            fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue  # someone was faster: look at the new holder
        with os.fdopen(fd, "w") as fh:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                       "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "token": token}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.environ[TOKEN_ENV] = os.pathsep.join([*_tokens(), token])
        return token, True
    raise LockHeld(f"{folder}: could not take the lock {f} (other jobs keep taking it)")


def release(folder: str | Path, token: str) -> None:
    """Remove ``folder``'s lock if it still holds ``token``, and forget the token."""
    f = Path(folder) / LOCK_NAME
    holder = read_lock(folder)
    if holder is not None and holder.get("token") == token:
        with contextlib.suppress(FileNotFoundError):
            f.unlink()
    os.environ[TOKEN_ENV] = os.pathsep.join(t for t in _tokens() if t != token)
    if not os.environ[TOKEN_ENV]:
        del os.environ[TOKEN_ENV]


@contextlib.contextmanager
def run_lock(folder: str | Path, command: str | None = None):
    """Hold ``folder``'s lock for the ``with`` block (re-entrant within this process and its children).
    Yields the token; raises :class:`LockHeld` naming the holder when another live job writes there."""
    token, owned = acquire(folder, command)
    try:
        yield token
    finally:
        if owned:
            release(folder, token)
