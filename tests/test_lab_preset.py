"""The two-hour lab: ``textscd run --params lab`` resolves to the preset shipped in the package, every parameter it
sets is declared by a chapter with a kind the chapter accepts, and the route's run time (from the committed demo's
record) fits the lab."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from textscd_lib.course import runner
from textscd_lib.course.runrecord import (
    LAB_EPOCHS,
    LAB_ROUTE,
    RunError,
    chapter_times,
    lab_route,
    preset_file,
    preset_names,
)

ROOT = Path(__file__).resolve().parents[1]


def test_a_bare_preset_name_reads_the_shipped_file_and_a_path_still_wins(tmp_path, monkeypatch):
    shipped = yaml.safe_load(preset_file("lab").read_text())
    assert runner.load_params_file("lab") == shipped and shipped["EPOCHS"] == LAB_EPOCHS
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lab").write_text("SEED: 3\n")      # a file of that name in the working folder is read as a file
    assert runner.load_params_file("lab") == {"SEED": 3}
    with pytest.raises(RunError, match="no-such-preset: cannot read parameters"):
        runner.load_params_file("no-such-preset")
    assert preset_file("lab.yaml") is None and preset_file("../lab") is None and "lab" in preset_names()


def test_every_lab_parameter_is_declared_by_a_chapter_with_an_accepted_kind():
    books = runner.list_notebooks(None, ROOT / "notebooks")
    runner.check_parameters(runner.load_params_file("lab"), {b: runner.declared_parameters(b) for b in books},
                            {b: runner.parameter_types(b) for b in books})


def test_chapter_times_come_from_the_committed_demo_record_and_the_route_fits_the_lab():
    times = chapter_times(ROOT / "results" / "demo" / "run.json")
    assert set(times) == set(LAB_ROUTE)
    rows = {r["chapter"]: r for r in lab_route(times)}
    assert rows["05"]["lab s (expected)"] == pytest.approx(times["05"] * LAB_EPOCHS / 6)
    assert sum(r["lab s (expected)"] for r in rows.values()) < 25 * 60   # the lead measures the real run


def test_chapter_times_name_a_missing_record(tmp_path):
    with pytest.raises(RunError, match=f"{tmp_path}.*no run.json"):
        chapter_times(tmp_path / "run.json")


def test_a_run_in_progress_has_no_finished_record(tmp_path):
    """make demo rewrites results/demo while chapter 00 reads it: an unfinished record gives None, not an error."""
    from textscd_lib.course.runrecord import finished_record

    run = tmp_path / "demo"
    run.mkdir()
    assert finished_record(run) is None
    record = {"status": "running", "notebooks": [{"notebook": "00_overview.ipynb", "status": "running"}]}
    (run / "run.json").write_text(json.dumps(record))
    assert finished_record(run) is None
    record = {"status": "ok", "notebooks": [{"notebook": "00_overview.ipynb", "status": "ok", "seconds": 3.0}]}
    (run / "run.json").write_text(json.dumps(record))
    assert finished_record(run)["notebooks"][0]["seconds"] == 3.0


def test_a_new_series_keeps_the_finished_record_it_replaces_and_chapter_00_reads_that(tmp_path):
    """make demo: while the new run rewrites run.json, the previous finished record is what chapter 00 quotes."""
    from textscd_lib.course.runrecord import PREVIOUS, finished_record, keep_previous

    run = tmp_path / "demo"
    run.mkdir()
    done = {"status": "ok", "notebooks": [{"notebook": "00_overview.ipynb", "status": "ok", "seconds": 3.0}]}
    (run / "run.json").write_text(json.dumps(done))
    keep_previous(run)                                                 # the runner, as a whole series starts
    running = {"status": "running", "notebooks": [{"notebook": "00_overview.ipynb", "status": "running"}]}
    (run / "run.json").write_text(json.dumps(running))
    kept = finished_record(run)
    assert kept["record_file"] == PREVIOUS and kept["notebooks"][0]["seconds"] == 3.0
    assert finished_record(run, previous=False) is None
    keep_previous(run)                                                 # a killed run left "running": kept stays
    assert json.loads((run / PREVIOUS).read_text())["notebooks"][0]["seconds"] == 3.0
    (run / PREVIOUS).write_text("{")
    with pytest.raises(RunError, match=PREVIOUS):
        finished_record(run)


def test_the_committed_lab_run_used_the_preset_and_fits_the_lab():
    """results/lab/ is `textscd run --run-name lab --params lab` on the project's 2-core machine: every chapter ran,
    with the preset's parameters, within 25 minutes in all; chapter 00 and the README quote its times."""
    record = json.loads((ROOT / "results" / "lab" / "run.json").read_text(encoding="utf-8"))
    assert record["status"] == "ok" and set(chapter_times(record)) == set(LAB_ROUTE)
    assert {k: record["parameters"][k] for k in runner.load_params_file("lab")} == runner.load_params_file("lab")
    assert record["total_seconds"] < 25 * 60
    rows = lab_route(chapter_times(ROOT / "results" / "demo" / "run.json"), chapter_times(record))
    assert sum(r["lab s (measured)"] for r in rows) <= record["total_seconds"]
