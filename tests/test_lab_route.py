"""Chapters 06 and 07 without chapter 05: in a fresh working folder they analyse the committed predictions of
results/cpu-30ep (issue 20), say so, and every number they print comes from those maps."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from textscd_lib.analysis.ablation import REFERENCE_FOLDER, REFERENCE_RUN, load_reference

REPO = Path(__file__).resolve().parent.parent
COMMITTED = REPO / "results" / REFERENCE_RUN / REFERENCE_FOLDER


def _outputs(nb: Path) -> str:
    cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
    return "".join("".join(o.get("text", "")) for c in cells if c["cell_type"] == "code" for o in c["outputs"])


def test_committed_reference_predictions_are_complete_and_small():
    manifest, preds, captions = load_reference(COMMITTED)  # raises naming the file when a map is missing
    assert set(preds) == {"baseline", *(f"textscd-{s}" for s in captions)}
    assert manifest["epochs"] >= 30 and manifest["data"]["scene_log_sha256"]
    assert sum(f.stat().st_size for f in COMMITTED.rglob("*") if f.is_file()) < 8e6


@pytest.mark.slow
def test_chapters_06_and_07_run_on_committed_predictions_in_a_fresh_folder(tmp_path, monkeypatch):
    from textscd_lib.course.runner import run_series

    (tmp_path / "notebooks").symlink_to(REPO / "notebooks")
    monkeypatch.setenv("TEXTSCD_HOME", str(tmp_path))
    monkeypatch.setenv("TEXTSCD_FAST", "1")
    t0 = time.perf_counter()
    run_series(run_name="lab", fast=True, only=["06", "07"])   # raises naming the chapter and cell on failure
    seconds = time.perf_counter() - t0
    assert not (tmp_path / "results" / "lab" / "checkpoints").exists()
    for chapter in ("06_metrics_and_error_analysis", "07_caption_ablation"):
        out = _outputs(tmp_path / "results" / "lab" / "executed" / f"{chapter}.ipynb")
        assert f"analysing the committed predictions of run {REFERENCE_RUN}" in out, chapter
    out07 = _outputs(tmp_path / "results" / "lab" / "executed" / "07_caption_ablation.ipynb")
    assert "needs the model itself" in out07 and "decision rule: a SeK difference smaller than NOISE" in out07
    scores = load_reference(COMMITTED)[0]["models"]           # the chapter's gain is the committed maps' gain
    gain = 100 * (scores["textscd-oracle"]["scores"]["SeK"] - scores["baseline"]["scores"]["SeK"])
    assert f"{REFERENCE_RUN}: TextSCD (oracle) − Baseline {gain:+.2f} SeK" in out07
    print(f"chapters 06 and 07 on committed predictions: {seconds:.0f} s")
