"""The papermill runner executes the whole series end to end in FAST mode (issue: foundation)."""

from __future__ import annotations

import json
import re
from collections import Counter

import nbformat

from textscd_lib import runner
from textscd_lib.runs import repo_root


def test_fast_series_runs_end_to_end_and_records_the_run(tmp_path):
    root = repo_root()
    books = runner.list_notebooks()
    rep = runner.run_series({}, run_name="fast-e2e", fast=True)
    assert rep.status == "ok"
    meta = json.loads((root / "results/fast-e2e/run.json").read_text())
    assert [n["notebook"] for n in meta["notebooks"]] == [b.name for b in books]
    assert all(n["status"] == "ok" and n["parameters"]["FAST"] is True for n in meta["notebooks"])
    assert meta["fast"] is True and meta["git"]["commit"]
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
        if not b.name.startswith("00_"):
            assert shown, f"{b.name} records or relies on substitutes but shows none"
    figures = list((root / "results/fast-e2e/figures").glob("*.png"))
    # one pass shows TGI's attention before training (chapter 04) and after it (chapter 05 ends with it)
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
