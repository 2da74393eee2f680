"""One writer per folder, held by the kernel (chapter 05 trains, chapter 02 captions and ``textscd run``
executes the series into ``results/<run>/``; two of them at once would mix one job's checkpoints with the
other's captions and text features).

:func:`run_lock` takes an exclusive ``fcntl.flock`` on ``results/<run>/.lock`` and writes the holder's pid,
host, command, start time and a random token into the file. The kernel is the arbiter: exactly one open file
holds the lock, and it is released when its holder exits, however it exits (killed included). No process
guesses whether another is alive; a second writer that cannot take the lock refuses with :class:`LockHeld`,
naming the pid and command the file records. A file whose record outlives its holder (killed, no clean-up)
is simply taken, and the takeover is logged.

The file is removed on release while the lock is still held; a process that locked a file just removed (it
opened it before the removal) sees that the path no longer names its file and tries again, so two processes
can never each hold a different file of the same name.

Nesting: ``textscd run`` holds the lock while its notebooks train into the same folder in a child kernel.
The holder exports its token in :data:`TOKEN_ENV`; a process that finds the lock held under one of its own
tokens (the kernel, or a second ``with run_lock`` in the same process) enters without taking the lock again
and leaves it in place on exit.
"""

from __future__ import annotations

import contextlib
import fcntl
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
_HELD: dict[str, int] = {}  # token -> the open descriptor that holds the kernel lock


class LockHeld(RuntimeError):
    """Another live process writes into this folder; the message names its pid and command."""


def read_lock(folder: str | Path, name: str = LOCK_NAME) -> dict | None:
    """The holder recorded in ``folder/<name>`` (pid, host, command, started, token), or None when there is no
    lock file. A record not yet written (a writer between taking the lock and writing) reads as
    ``{"pid": None}``."""
    f = Path(folder) / name
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
    return f"pid {h.get('pid')} on {h.get('host')} ({h.get('command')!r}, since {h.get('started')})"


def _gone(h: dict) -> bool:
    """Is the recorded holder a process of this host that no longer exists? (Only for the refusal message.)"""
    if h.get("host") != socket.gethostname() or not isinstance(h.get("pid"), int):
        return False
    try:
        os.kill(h["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _current_holder(folder: Path, name: str) -> dict:
    """The record of whoever holds the lock now. Just after a takeover the file may still show the dead
    holder (or nothing) for a moment, until the new holder has written its record: wait up to a second."""
    for _ in range(50):
        holder = read_lock(folder, name) or {"pid": None}
        if holder.get("pid") is not None and not _gone(holder):
            break
        time.sleep(0.02)
    return holder


def _lock_fd(f: Path) -> int | None:
    """An open descriptor of ``f`` holding its exclusive kernel lock, or None when another open file holds it.
    Retries when ``f`` was removed or replaced between opening and locking (the locked file must be the one the
    path names)."""
    while True:
        fd = os.open(f, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same = os.stat(f).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the previous holder removed this file on release: lock the one the path names now


def _write_record(fd: int, record: dict) -> None:
    data = json.dumps(record).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)


def acquire(folder: str | Path, command: str | None = None, name: str = LOCK_NAME,
            reentrant: bool = True) -> tuple[str, bool]:
    """Take ``folder``'s lock (the file ``name`` in it); returns ``(token, owned)``. ``owned`` is False when this
    process tree already holds it (nested use), and then the lock must not be released. ``reentrant=False``: a
    lock for one holder only, never entered again by its own process or children. Raises :class:`LockHeld`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    f = folder / name
    command = command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) or "python"
    fd = _lock_fd(f)
    if fd is None:
        holder = _current_holder(folder, name)
        if reentrant and holder.get("token") in _tokens():
            return holder["token"], False
        raise LockHeld(f"{folder}: another job is writing here ({name} is held): {_describe(holder)}. "
                       f"Wait for it, stop it, or write elsewhere")
    previous = read_lock(folder, name)
    if previous and previous.get("pid") is not None:
        log.warning("%s: taking over a stale lock left by %s, which no longer holds it", folder,
                    _describe(previous))
    token = secrets.token_hex(8)
    _write_record(fd, {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                       "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "token": token})
    _HELD[token] = fd
    if reentrant:
        os.environ[TOKEN_ENV] = os.pathsep.join([*_tokens(), token])
    return token, True


def release(folder: str | Path, token: str, name: str = LOCK_NAME) -> None:
    """Remove ``folder``'s lock file and drop the kernel lock if this process holds it under ``token``, and
    forget the token."""
    fd = _HELD.pop(token, None)
    if fd is not None:
        with contextlib.suppress(FileNotFoundError):
            (Path(folder) / name).unlink()  # still locked: nobody can take it half-removed
        os.close(fd)
    left = [t for t in _tokens() if t != token]
    if left:
        os.environ[TOKEN_ENV] = os.pathsep.join(left)
    else:
        os.environ.pop(TOKEN_ENV, None)


@contextlib.contextmanager
def run_lock(folder: str | Path, command: str | None = None, name: str = LOCK_NAME):
    """Hold ``folder``'s lock (the file ``name`` in it) for the ``with`` block (re-entrant within this process and its children).
    Yields the token; raises :class:`LockHeld` naming the holder when another live job writes there."""
    token, owned = acquire(folder, command, name)
    try:
        yield token
    finally:
        if owned:
            release(folder, token, name)
