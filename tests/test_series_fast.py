"""The papermill runner executes the whole series end to end in FAST mode (issue: foundation)."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter

import nbformat
import notebook_refs as refs
import papermill
import pytest

from textscd_lib.course import runner

SOLUTIONS = sorted((refs.REPO / "notebooks" / "solutions").glob("*.ipynb"))


@pytest.fixture(scope="module")
def fast_series():
    """The whole series once in FAST mode, into results/fast-e2e/ (shared by this module's tests)."""
    return runner.run_series({}, run_name="fast-e2e", fast=True)


def test_fast_series_runs_end_to_end_and_records_the_run(fast_series, textscd_home):
    root = textscd_home
    books = runner.list_notebooks()
    assert fast_series.status == "ok"
    meta = json.loads((root / "results/fast-e2e/run.json").read_text())
    assert [n["notebook"] for n in meta["notebooks"]] == [b.name for b in books]
    assert all(n["status"] == "ok" and n["parameters"]["FAST"] is True for n in meta["notebooks"])
    assert meta["fast"] is True and meta["git"]["commit"]
    assert meta["device"]["cpu_model"] and meta["device"]["torch_threads"] >= 1  # which machine made the numbers
    # the offline setting must say what it substituted
    assert {"data", "captions", "text_encoder"} <= set(meta["substitutes"])
    for b in books:
        nb = nbformat.read(root / "results/fast-e2e/executed" / b.name, as_version=4)
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        assert not errors, f"{b.name}: {errors[:1]}"
        # every chapter that runs on a substitute shows it, and shows each one once (no warning + print pairs)
        shown = _substitute_lines_shown(nb)
        parts = Counter(re.findall(r"OFFLINE SUBSTITUTE \[(\w+)\]", "\n".join(shown)))
        repeated = {p: n for p, n in parts.items() if n > 1}
        assert not repeated, f"{b.name} shows a substitute more than once: {repeated}\n" + "\n".join(shown)
        if not b.name.startswith("00_") and "appendix" not in b.name:  # an appendix may read no run data
            assert shown, f"{b.name} records or relies on substitutes but shows none"
    figures = list((root / "results/fast-e2e/figures").glob("*.png"))
    # one pass shows TGI's attention before training (chapter 04) and after it (chapter 05 after training)
    assert {"04_attention_before_training.png", "05_attention_after_training.png"} <= {f.name for f in figures}
    assert len(figures) >= len(books), f"every chapter saves a figure; got {sorted(f.name for f in figures)}"


def _substitute_lines_shown(nb) -> list[str]:
    """Every output line of an executed notebook (stdout, stderr, results) that announces a substitute."""
    lines = []
    for c in nb.cells:
        for o in c.get("outputs", []) if c.cell_type == "code" else []:
            text = o.get("text", "") if o.get("output_type") == "stream" else o.get("data", {}).get("text/plain", "")
            text = "".join(text) if isinstance(text, list) else text
            lines += [ln for ln in text.splitlines() if "OFFLINE SUBSTITUTE [" in ln]
    return lines


def test_chapter_07_retrains_per_caption_source_and_a_rerun_reuses_the_finished_retrainings(fast_series, textscd_home):
    """RETRAIN=True (off by default on a CPU): one TextSCD per caption source; executing the chapter again must
    reuse those checkpoints (resume), not train them again, and give the same scores."""
    root = textscd_home
    assert fast_series.status == "ok"
    for old in (root / "results/fast-e2e/checkpoints").glob("textscd-*"):  # left by an earlier test session
        shutil.rmtree(old)
    outputs = []
    for _ in range(2):
        rep = runner.run_series({"RETRAIN": True}, run_name="fast-e2e", fast=True, only=["07"])
        assert rep.status == "ok"
        nb = nbformat.read(root / "results/fast-e2e/executed/07_caption_ablation.ipynb", as_version=4)
        text = "\n".join("".join(o.get("text", "")) for c in nb.cells if c.cell_type == "code"
                         for o in c.get("outputs", []) if o.get("output_type") == "stream")
        outputs.append([ln for ln in text.splitlines() if ln.startswith("retrained with ")])
    first, again = outputs
    sources = [ln.split(":")[0].removeprefix("retrained with ") for ln in first]
    assert sources == ["noisy-1.0", "shuffled", "empty"]  # FAST: the strongest noise level only
    assert all(f"textscd-{s}" in ln and "reused" in ln for s, ln in zip(sources, again)), again
    assert not any("reused" in ln for ln in first)
    sek = [ln.split("SeK ")[1].split(" ")[0] for ln in first]
    assert sek == [ln.split("SeK ")[1].split(" ")[0] for ln in again]  # the same checkpoints, the same scores
    for s in sources:
        assert (root / f"results/fast-e2e/checkpoints/textscd-{s}/best.pt").is_file()


def test_checked_outputs_match_the_reference_copies(fast_series, textscd_home):
    """Every cell marked ``# NBVAL_CHECK_OUTPUT`` prints what its reference copy in tests/notebooks/ holds (after
    the sanitize rules): a changed number fails here, naming the chapter, the cell and the lines."""
    assert fast_series.status == "ok"
    assert refs.RUN_NAME == "fast-e2e"  # the references were made with this run name
    problems = []
    for book in runner.list_notebooks():
        ref = refs.REFS / book.name
        if not ref.is_file():
            problems.append(f"{book.name}: no reference copy; run `make nbval-refs`")
            continue
        executed = json.loads((textscd_home / "results/fast-e2e/executed" / book.name).read_text())
        problems += refs.compare(executed, json.loads(ref.read_text()), book.name)
    assert not problems, "\n\n".join(problems)


@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.name for p in SOLUTIONS])
def test_solution_notebook_runs_in_fast_mode(path, fast_series, tmp_path):
    """The exercises' solutions (notebooks/solutions/) run against the FAST run, so they stay correct."""
    assert fast_series.status == "ok"
    papermill.execute_notebook(str(path), str(tmp_path / path.name), parameters={"RUN": "fast-e2e", "FAST": True},
                               cwd=str(tmp_path), progress_bar=False, log_output=False,
                               extra_arguments=runner.KERNEL_QUIET)
