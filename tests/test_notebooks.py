"""The notebook tests compare something (issue 15): reference copies, checked outputs, cell sizes, exercises, and
chapter 04's inline TGI check failing when the library's TGI changes.

The comparison of every executed chapter with its reference runs in tests/test_series_fast.py (the series is
executed once there); this file tests the references themselves and the comparison, without a kernel.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import matplotlib
import notebook_refs as refs
import pytest
import torch
from torch import nn

from textscd_lib.models.tgi import TGI

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SOLUTIONS = sorted((ROOT / "notebooks" / "solutions").glob("*.ipynb"))
MAX_CODE_LINES, MAX_MARKDOWN_WORDS = 30, 300


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_reference_copy_holds_the_same_code_cells_as_the_student_notebook(path):
    ref = refs.REFS / path.name
    assert ref.is_file(), f"{ref} missing: run `make nbval-refs`"
    assert refs.code_cells(_load(ref)) == refs.code_cells(_load(path)), (
        f"{ref.name} is stale: its code cells differ from notebooks/{path.name}; run `make nbval-refs`")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_chapter_checks_at_least_one_printed_output(path):
    checked = refs.checked_outputs(_load(refs.REFS / path.name))
    assert checked, f"{path.name}: no cell marked {refs.MARK}"
    empty = [src.splitlines()[1:2] for src, text in checked if not text.strip()]
    assert not empty, f"{path.name}: checked cells whose reference output is empty compare nothing: {empty}"


def test_reference_copies_are_small_and_hold_no_images():
    for ref in sorted(refs.REFS.glob("*.ipynb")):
        assert ref.stat().st_size < 60_000, f"{ref.name}: {ref.stat().st_size} bytes"
        outputs = [o for c in _load(ref)["cells"] for o in c.get("outputs", [])]
        assert all(o["output_type"] == "stream" and o["name"] == "stdout" for o in outputs), ref.name


def test_a_changed_number_in_a_checked_output_fails_the_comparison():
    """The demonstration the issue asks for: edit one digit of a reference's checked output in a copy, and the
    comparison reports that cell; the unedited copy compares equal."""
    ref = _load(refs.REFS / NOTEBOOKS[3].name)  # chapter 03: shapes and channel counts
    assert refs.compare(copy.deepcopy(ref), ref, "03") == []
    edited = copy.deepcopy(ref)
    cell = next(c for c in edited["cells"] if c["cell_type"] == "code" and refs.MARK in c["source"]
                and re.search(r"\d", "".join(c["outputs"][0]["text"]) if c["outputs"] else ""))
    text = "".join(cell["outputs"][0]["text"])
    m = re.search(r"\d", text)
    cell["outputs"][0]["text"] = text[:m.start()] + str((int(m.group()) + 1) % 10) + text[m.end():]
    problems = refs.compare(edited, ref, "03")
    assert len(problems) == 1 and "printed something else" in problems[0], problems


def test_timings_addresses_and_temp_paths_do_not_count_as_changes():
    ref = {"cells": [{"cell_type": "code", "source": f"{refs.MARK}\nx", "metadata": {}, "outputs": [
        {"output_type": "stream", "name": "stdout", "text": "took 1.25 s at 0x7f00aa in /tmp/pytest-of-a/x/run\n"}]}]}
    run = copy.deepcopy(ref)
    run["cells"][0]["outputs"][0]["text"] = "took 3.5 s at 0x55beef in /tmp/tmp.Zq81/home/run\n"
    assert refs.compare(run, ref) == []
    run["cells"][0]["outputs"][0]["text"] = "took 3.5 s at 0x55beef in /tmp/tmp.Zq81/home/run, SeK 1\n"
    assert refs.compare(run, ref)


@pytest.mark.parametrize("path", NOTEBOOKS + SOLUTIONS, ids=[p.name for p in NOTEBOOKS + SOLUTIONS])
def test_no_code_cell_over_30_lines_and_no_markdown_cell_over_300_words(path):
    too_long = []
    for i, c in enumerate(_load(path)["cells"]):
        src = "".join(c["source"])
        if c["cell_type"] == "code" and len(src.splitlines()) > MAX_CODE_LINES:
            too_long.append(f"cell {i}: {len(src.splitlines())} code lines")
        if c["cell_type"] == "markdown" and len(src.split()) > MAX_MARKDOWN_WORDS:
            too_long.append(f"cell {i}: {len(src.split())} words")
    assert not too_long, f"{path.name}: {too_long} (limits {MAX_CODE_LINES} lines, {MAX_MARKDOWN_WORDS} words)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_chapter_has_exercises_with_hints_and_a_solutions_notebook(path):
    cells = ["".join(c["source"]) for c in _load(path)["cells"] if c["cell_type"] == "markdown"]
    exercises = [c for c in cells if c.startswith("## Exercises")]
    assert len(exercises) == 1, f"{path.name}: one '## Exercises' cell expected"
    items = re.findall(r"^\d+\. ", exercises[0], flags=re.M)
    hints = re.findall(r"\*Hint[:.]?\*|\*\*Hint", exercises[0])
    assert 3 <= len(items) <= 5 and len(hints) >= len(items), f"{path.name}: {len(items)} exercises, {len(hints)} hints"
    solutions = ROOT / "notebooks" / "solutions" / f"{path.name[:2]}_solutions.ipynb"
    assert solutions.is_file(), f"{solutions} missing"
    sol = "\n".join("".join(c["source"]) for c in _load(solutions)["cells"])
    for k in range(1, len(items) + 1):
        assert re.search(rf"Exercise {k}\b", sol), f"{solutions.name} has no solution for exercise {k}"


def _run_cells_until(path: Path, stop: str, params: dict) -> int:
    """Execute a chapter's code cells in this process, in order, until the cell containing ``stop`` has run;
    return that cell's position among the code cells. Raises what a cell raises."""
    cells = refs.code_cells(_load(path))
    ns: dict = {}
    for k, src in enumerate(cells):
        src = "\n".join(ln for ln in src.splitlines() if not ln.lstrip().startswith("%"))
        try:
            exec(compile(src, f"{path.name}[code cell {k}]", "exec"), ns)
        except AssertionError:
            if stop in src:
                raise
            raise RuntimeError(f"{path.name}: code cell {k} failed before the check was reached") from None
        if k == 0:
            ns.update(params)
        if stop in src:
            return k
    raise AssertionError(f"{path.name}: no code cell contains {stop!r}")


def test_chapter_04s_inline_check_fails_when_the_librarys_tgi_changes(monkeypatch, textscd_home):
    """One changed line in the library's TGI (the text's LayerNorm dropped) must make chapter 04's asserted
    inline-vs-library check of eq. (7) fail: the notebook's check is a real check, not a print."""
    matplotlib.use("Agg")
    original = TGI.forward

    def forward_without_text_norm(self, *args, **kwargs):
        saved, self.norm_text = self.norm_text, nn.Identity()
        try:
            return original(self, *args, **kwargs)
        finally:
            self.norm_text = saved

    monkeypatch.setattr(TGI, "forward", forward_without_text_norm)
    book = ROOT / "notebooks" / "04_text_guided_interaction.ipynb"
    with pytest.raises(AssertionError, match="not close"):
        _run_cells_until(book, "assert_close(F_o_inline", {"FAST": True, "RUN": "tgi-check"})
    torch.set_grad_enabled(True)


@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.name for p in SOLUTIONS])
def test_solution_notebook_is_committed_clean_with_run_and_fast_parameters(path):
    nb = _load(path)
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), f"{path.name} has outputs"
    assert "parameters" in code[0].get("metadata", {}).get("tags", []), f"{path.name}: first code cell: parameters"
    params = "".join(code[0]["source"])
    assert "RUN = " in params and "FAST = " in params  # the tests run it against their FAST run
    asserts = sum("assert" in "".join(c["source"]) for c in code)
    assert asserts >= 3, f"{path.name}: a solution asserts what it claims ({asserts} cells with asserts)"


def test_nothing_cites_a_file_outside_the_repository():
    """The facts the course relies on are in docs/ (docs/facts.md); no library file, notebook or test points to
    a developers' note outside the repository."""
    outside = ("REFERENCE" + " §", "shared/" + "REFERENCE", "../" + "shared/")
    files = [*(ROOT / "textscd_lib").rglob("*.py"), *(ROOT / "notebooks").rglob("*.ipynb"),
             *(ROOT / "tests").rglob("*.py"), *(ROOT / "tests" / "notebooks").glob("*.ipynb"),
             *(ROOT / "docs").glob("*.md"), ROOT / "Makefile"]
    hits = [f"{f.relative_to(ROOT)}: {s}" for f in files if f.is_file()
            for s in outside if s in f.read_text(encoding="utf-8", errors="replace")]
    assert not hits, hits
