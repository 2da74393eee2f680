"""Time the README's test command on a fresh clone, environment creation included, and record it.

Clones the repository's committed HEAD into a temporary folder, runs ``make test`` there (which creates ``.venv``
from ``requirements.txt`` first, as on a new machine; pip's download cache is whatever this machine has), and
appends one JSON line to ``results/benchmarks/make-test.jsonl``: commit, wall seconds of the whole command and of
the environment step, exit status, CPU model and cores, load average before and after. The README's "Measured"
line quotes the last line (``tests/test_readme_numbers.py`` checks it).

    python tools/time_make_test.py            # about 10 minutes on the project's 2-core machines
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "results" / "benchmarks" / "make-test.jsonl"


def cpu_model() -> str:
    text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    found = re.search(r"^Model name:\s*(.+)$", text, re.M)
    return found.group(1).strip() if found else "?"


def main() -> int:
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="fresh-clone-") as tmp:
        clone = Path(tmp) / "repo"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        load0 = os.getloadavg()
        t0 = time.perf_counter()
        env = subprocess.run(["make", "env"], cwd=clone, capture_output=True, text=True)
        t_env = time.perf_counter() - t0
        test = subprocess.run(["make", "test"], cwd=clone, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        tail = (test.stdout + test.stderr).strip().splitlines()[-3:]
    row = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": commit,
           "seconds": round(wall, 1), "env_seconds": round(t_env, 1), "env_status": env.returncode,
           "status": test.returncode, "cpu": cpu_model(), "cpus": os.cpu_count(),
           "loadavg_before": [round(x, 2) for x in load0], "loadavg_after": [round(x, 2) for x in os.getloadavg()],
           "tail": tail}
    print(json.dumps(row, indent=1))
    RECORD.parent.mkdir(parents=True, exist_ok=True)
    with RECORD.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    return 0 if test.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
