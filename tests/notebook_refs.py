"""Reference copies of the notebooks' checked outputs (tests/notebooks/), and the comparison the tests make.

The student notebooks (notebooks/) are committed without outputs, so they cannot hold what a test should
compare against. ``tests/notebooks/NN_*.ipynb`` are the same notebooks executed in FAST mode (the runner, run
name ``fast-e2e``), reduced to what is compared: every code cell (proven identical to notebooks/ by a test; no
markdown), and
the text outputs (stdout, results, errors) of the cells marked ``# NBVAL_CHECK_OUTPUT``, sanitised with the
rules in ``tests/nbval_sanitize.cfg`` (nbval's format). No images, no timings, no other outputs.

The end-to-end test (tests/test_series_fast.py) executes the series once and compares each executed chapter's
checked outputs with its reference: a changed number fails the test, naming the chapter, the cell and the lines.

    python tests/notebook_refs.py                 # run the series in FAST mode, write tests/notebooks/ (make nbval-refs)
    python tests/notebook_refs.py --from DIR      # build the references from an executed folder instead

Run it (``make nbval-refs``) after changing what a checked cell prints, and review the diff before committing.
"""

from __future__ import annotations

import argparse
import configparser
import difflib
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REFS = REPO / "tests" / "notebooks"
SANITIZE = REPO / "tests" / "nbval_sanitize.cfg"
MARK = "# NBVAL_CHECK_OUTPUT"
RUN_NAME = "fast-e2e"  # the run name of tests/test_series_fast.py: outputs that print it match


def sanitize_rules(cfg: Path = SANITIZE) -> list[tuple[re.Pattern, str]]:
    """The (regex, replacement) pairs of an nbval sanitize file, in file order."""
    parser = configparser.ConfigParser(interpolation=None)
    if not parser.read(cfg):
        raise FileNotFoundError(f"{cfg}: sanitize file missing")
    return [(re.compile(parser[s]["regex"]), parser[s]["replace"]) for s in parser.sections()]


def sanitize(text: str, rules=None) -> str:
    for pattern, repl in rules if rules is not None else sanitize_rules():
        text = pattern.sub(repl, text)
    return text


def code_cells(nb: dict) -> list[str]:
    """The source of every code cell, papermill's injected-parameters cell left out."""
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"
            and "injected-parameters" not in c.get("metadata", {}).get("tags", [])]


def output_text(outputs: list[dict]) -> str:
    """What a checked cell showed as text: stdout, results' text/plain, errors. stderr (warnings, bars) is not
    compared; images are not compared."""
    parts = []
    for o in outputs:
        kind = o.get("output_type")
        if kind == "stream" and o.get("name") == "stdout":
            parts.append("".join(o["text"]))
        elif kind in ("execute_result", "display_data") and "text/plain" in o.get("data", {}):
            if not any(k.startswith("image/") for k in o["data"]):  # a figure's repr is not a claim
                parts.append("".join(o["data"]["text/plain"]) + "\n")
        elif kind == "error":
            parts.append(f"{o['ename']}: {o['evalue']}\n")
    return "".join(parts)


def checked_outputs(nb: dict, rules=None) -> list[tuple[str, str]]:
    """(source, sanitised text output) of every checked code cell, in order."""
    rules = sanitize_rules() if rules is None else rules
    return [("".join(c["source"]), sanitize(output_text(c.get("outputs", [])), rules)) for c in nb["cells"]
            if c["cell_type"] == "code" and MARK in "".join(c["source"])]


def make_reference(executed: dict) -> dict:
    """The reference copy of an executed notebook: cells as in the notebook, outputs only of checked cells."""
    rules = sanitize_rules()
    cells = []
    for c in executed["cells"]:
        if c["cell_type"] != "code" or "injected-parameters" in c.get("metadata", {}).get("tags", []):
            continue  # the prose lives in notebooks/; a reference holds what is compared
        cell = {"cell_type": c["cell_type"], "metadata": {k: v for k, v in c.get("metadata", {}).items()
                                                         if k == "tags"}, "source": "".join(c["source"])}
        if c["cell_type"] == "code":
            cell["execution_count"] = None
            text = sanitize(output_text(c.get("outputs", [])), rules) if MARK in cell["source"] else ""
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": text}] if text else []
        cells.append(cell)
    return {"cells": cells, "metadata": {"kernelspec": executed["metadata"].get("kernelspec", {})},
            "nbformat": 4, "nbformat_minor": 5}


def compare(executed: dict, reference: dict, name: str = "") -> list[str]:
    """Differences between the checked outputs of an executed notebook and its reference ([] = the same)."""
    rules = sanitize_rules()
    got, want = checked_outputs(executed, rules), checked_outputs(reference, rules)
    if [s for s, _ in got] != [s for s, _ in want]:
        return [f"{name}: the checked cells differ from the reference's (run `make nbval-refs`)"]
    problems = []
    for k, ((src, g), (_, w)) in enumerate(zip(got, want)):
        if g != w:
            first = src.splitlines()[1] if len(src.splitlines()) > 1 else src
            diff = "\n".join(difflib.unified_diff(w.splitlines(), g.splitlines(), "reference", "executed",
                                                  lineterm="", n=0))
            problems.append(f"{name}: checked cell {k + 1} ({first.strip()[:60]}) printed something else:\n{diff}")
    return problems


def write_references(executed_dir: Path, out: Path = REFS) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(Path(executed_dir).glob("[0-9][0-9]_*.ipynb")):
        ref = make_reference(json.loads(path.read_text(encoding="utf-8")))
        target = out / path.name
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(ref, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(target)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--from", dest="source", help="an executed folder (results/<run>/executed) to build from")
    ap.add_argument("--out", default=str(REFS))
    args = ap.parse_args(argv)
    if args.source:
        source = Path(args.source)
    else:
        from textscd_lib.common.paths import home
        from textscd_lib.course import runner

        if Path(home()).resolve() == REPO:
            print("set TEXTSCD_HOME to a temporary folder (make nbval-refs does): nothing may land in the tree",
                  file=sys.stderr)
            return 2
        report = runner.run_series({}, run_name=RUN_NAME, fast=True)
        source = report.path / "executed"
    written = write_references(source, Path(args.out))
    if not written:
        print(f"{source}: no executed chapters found", file=sys.stderr)
        return 1
    print("\n".join(f"wrote {p.relative_to(REPO) if p.is_relative_to(REPO) else p}" for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
