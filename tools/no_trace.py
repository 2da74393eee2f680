"""`make test` leaves no trace: snapshot the working tree before the tests, check it after.

    python tools/no_trace.py snapshot FILE   # before: `git status --porcelain` and the time, into FILE
    python tools/no_trace.py check FILE      # after: same status, and no file over 1 MB written in the tree

Exit 1 naming every file the tests added, changed or left behind (tests write under pytest's temporary
folders and ``TEXTSCD_HOME``, never into the repository).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP = {".git", ".venv", "__pycache__", ".ruff_cache", ".pytest_cache"}
LIMIT = 1 << 20


def status() -> list[str]:
    out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                         capture_output=True, text=True)
    return out.stdout.splitlines() if out.returncode == 0 else []


def big_new_files(since: float) -> list[str]:
    found = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP and not d.endswith(".egg-info")]
        for f in files:
            p = Path(folder) / f
            try:
                st = p.stat()
            except OSError:
                continue
            if st.st_mtime >= since and st.st_size > LIMIT:
                found.append(f"{p.relative_to(ROOT)} ({st.st_size / LIMIT:.1f} MB)")
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("snapshot", "check"):
        print(__doc__, file=sys.stderr)
        return 2
    mode, file = argv
    if mode == "snapshot":
        Path(file).write_text(json.dumps({"time": time.time(), "status": status()}))
        return 0
    snap = json.loads(Path(file).read_text())
    added = sorted(set(status()) - set(snap["status"]))
    big = big_new_files(snap["time"])
    for line in added:
        print(f"no-trace: the tests changed the working tree: {line}", file=sys.stderr)
    for line in big:
        print(f"no-trace: the tests wrote a file over 1 MB into the tree: {line}", file=sys.stderr)
    if added or big:
        return 1
    print("no-trace: the working tree is as the tests found it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
