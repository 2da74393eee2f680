"""The README's two tables of numbers come from committed runs' files and cannot drift from them.

- The notebooks table: each chapter's demo time equals its ``seconds`` in ``results/demo/run.json``, rounded.
- "What the runs show": each ``ours, `results/<run>` `` row's SeK and F_scd (Baseline / TextSCD) equal that run's
  ``metrics/table1.json``; the paper's row equals the paper's rows there (docs/facts.md's numbers).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAPTER_ROW = re.compile(r"^\| `(\d\d)_\w+` \|.*\| (\d+) s \|$", re.M)
RESULT_ROW = re.compile(r"^\| Baseline / [^|]+ \| ([-\d.]+) / ([-\d.]+) \| ([-\d.]+) / ([-\d.]+) \| ([^|]+) \|$", re.M)
RUN_NAME = re.compile(r"`results/([\w.-]+)`")
LAB_TIME = re.compile(r"ran in (\d+) min (\d+) s \(`results/lab/run.json`\)")
DEMO_TIME = re.compile(r"`make demo` (\d+) min (\d+) s \(`results/demo/run.json`\)")
TEST_TIME = re.compile(r"`make test` (\d+) min (\d+) s on a fresh clone, environment included "
                       r"\(`results/benchmarks/make-test.jsonl`")


def _min_s(seconds: float) -> tuple[int, int]:
    total = round(seconds)
    return total // 60, total % 60


def _table1(results: Path, run: str) -> dict[str, dict]:
    """``{"paper": (Baseline row, TextSCD row), "ours": (...)}`` of ``results/<run>/metrics/table1.json``."""
    rows = json.loads((results / run / "metrics" / "table1.json").read_text(encoding="utf-8"))["rows"]
    split = {"paper": [r for r in rows if r["source"].startswith("paper")][-2:],
             "ours": [r for r in rows if r["source"].startswith("ours")]}
    return {k: (next(r for r in v if r["method"] == "Baseline"), next(r for r in v if r["method"] != "Baseline"))
            for k, v in split.items()}


def readme_drift(readme: str, results: Path) -> list[str]:
    """One line per README number that differs from the committed run file it comes from."""
    drift = []
    seconds = {e["notebook"][:2]: e["seconds"]
               for e in json.loads((results / "demo" / "run.json").read_text(encoding="utf-8"))["notebooks"]}
    chapters = CHAPTER_ROW.findall(readme)
    if not chapters:
        drift.append("README: no chapter row with a demo time in the notebooks table")
    for chapter, shown in chapters:
        if int(shown) != round(seconds[chapter]):
            drift.append(f"chapter {chapter}: README says {shown} s, results/demo/run.json {seconds[chapter]:.2f} s")
    drift += measured_drift(readme, results)
    rows = RESULT_ROW.findall(readme)
    if not rows:
        drift.append("README: no 'Baseline / ...' row in the table of what the runs show")
    for *numbers, source in rows:
        named = RUN_NAME.search(source)
        run, kind = (named.group(1), "ours") if named else ("demo", "paper")
        base, text = _table1(results, run)[kind]
        expected = [base["SeK"], text["SeK"], base["F_scd"], text["F_scd"]]
        if [float(n) for n in numbers] != [round(x, 2) for x in expected]:
            drift.append(f"{source.strip()}: README {' '.join(numbers)}, results/{run}/metrics/table1.json "
                         f"{' '.join(f'{x:.2f}' for x in expected)}")
    return drift


def measured_drift(readme: str, results: Path) -> list[str]:
    """The "Measured" line: make demo's wall time is results/demo/run.json's, make test's the last record of
    results/benchmarks/make-test.jsonl (tools/time_make_test.py)."""
    drift = []
    demo, test = DEMO_TIME.search(readme), TEST_TIME.search(readme)
    if not demo or not test:
        return ["README: no 'Measured' line quoting `make demo` (results/demo/run.json) and `make test` "
                "(results/benchmarks/make-test.jsonl)"]
    run = json.loads((results / "demo" / "run.json").read_text(encoding="utf-8"))
    if tuple(map(int, demo.groups())) != _min_s(run["total_seconds"]):
        drift.append(f"make demo: README {demo.group(0)}, results/demo/run.json {run['total_seconds']:.1f} s")
    lines = (results / "benchmarks" / "make-test.jsonl").read_text(encoding="utf-8").strip().splitlines()
    last = json.loads(lines[-1])
    if tuple(map(int, test.groups())) != _min_s(last["seconds"]) or last["status"] != 0:
        drift.append(f"make test: README {test.group(0)}, make-test.jsonl's last record {last['seconds']} s "
                     f"(status {last['status']})")
    return drift


def test_the_lab_time_in_the_readme_is_the_lab_runs():
    found = LAB_TIME.search((ROOT / "README.md").read_text(encoding="utf-8"))
    assert found, "README: no lab time quoting results/lab/run.json"
    total = round(json.loads((ROOT / "results" / "lab" / "run.json").read_text(encoding="utf-8"))["total_seconds"])
    assert (int(found.group(1)), int(found.group(2))) == (total // 60, total % 60)


def test_readme_tables_equal_the_committed_runs_files():
    drift = readme_drift((ROOT / "README.md").read_text(encoding="utf-8"), ROOT / "results")
    assert not drift, "README numbers drifted from the committed runs:\n" + "\n".join(drift)


def test_every_run_the_readme_quotes_is_checked():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quoted = {RUN_NAME.search(s).group(1) for *_, s in RESULT_ROW.findall(readme) if RUN_NAME.search(s)}
    assert {"demo", "cpu-30ep", "cpu-30ep-seed1"} <= quoted
    assert len(CHAPTER_ROW.findall(readme)) == 9


def test_a_changed_score_or_time_in_a_readme_copy_is_caught():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    base, _ = _table1(ROOT / "results", "cpu-30ep")["ours"]
    wrong_score = readme.replace(f"| {base['SeK']:.2f} / ", f"| {base['SeK'] + 1:.2f} / ", 1)
    assert wrong_score != readme
    assert any("cpu-30ep" in line for line in readme_drift(wrong_score, ROOT / "results"))
    chapter, shown = CHAPTER_ROW.findall(readme)[5]
    wrong_time = re.sub(rf"(\| `{chapter}_\w+` \|.*\| ){shown} s \|", rf"\g<1>{int(shown) + 7} s |", readme)
    assert any(f"chapter {chapter}" in line for line in readme_drift(wrong_time, ROOT / "results"))
    demo = DEMO_TIME.search(readme)
    slower = readme.replace(demo.group(0), demo.group(0).replace(f"{demo.group(1)} min", f"{int(demo.group(1)) + 1} min"))
    assert any(line.startswith("make demo") for line in readme_drift(slower, ROOT / "results"))
    test = TEST_TIME.search(readme)
    faster = readme.replace(test.group(0), test.group(0).replace(f"{test.group(1)} min", f"{int(test.group(1)) - 1} min"))
    assert any(line.startswith("make test") for line in readme_drift(faster, ROOT / "results"))
