"""docs/performance.md carries measured numbers only in the blocks tools/performance_page.py fills from the
committed benchmark records: the committed page must equal what the tool writes today, a changed record changes
its block and its verdict, and the hand-written prose around the blocks types no measured number."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "performance.md"
NEEDED = ["benchmarks/nvidia-h100-80gb-hbm3.jsonl", "benchmarks/cpu-x86-64-2threads.jsonl",
          "benchmarks/cost-model.jsonl", "benchmarks/cpu.jsonl", "benchmarks/cpu-step.jsonl",
          "benchmarks/make-test.jsonl", "gpu/metrics/train_baseline.json", "gpu/metrics/train_textscd.json",
          "gpu/run.json", "fast/run.json", "demo/run.json", "cpu-30ep/metrics/training_summary.json",
          "cpu-30ep-seed1/metrics/training_summary.json", "cpu-30ep-narrow/errors/summary.json",
          "benchmarks/cpu-x86-64-1threads.jsonl"]
BLOCK = re.compile(r"^<!-- generated: ([\w-]+) \(tools/performance_page\.py\) -->$.*?^<!-- end generated: \1 -->$",
                   re.S | re.M)
INDENTED_CODE = re.compile(r"^ {4}.*$", re.M)


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _tool():
    return _load("performance_page", ROOT / "tools" / "performance_page.py")


def _copy(tmp_path: Path) -> tuple[Path, Path]:
    """(a results folder holding copies of the records the page reads, a copy of the page) under tmp_path."""
    results = tmp_path / "results"
    for rel in NEEDED:
        (results / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / "results" / rel, results / rel)
    page = tmp_path / "performance.md"
    shutil.copyfile(PAGE, page)
    return results, page


def _edit_jsonl(path: Path, edit) -> None:
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    for r in rows:
        edit(r)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _block(page: str, name: str) -> str:
    return next(m.group(0) for m in BLOCK.finditer(page) if m.group(1) == name)


def test_committed_performance_page_equals_what_the_records_give():
    page = PAGE.read_text(encoding="utf-8")
    assert _tool().fill(page, ROOT / "results") == page, (
        "docs/performance.md is stale: run `python tools/performance_page.py` and commit it")


def test_a_faster_gpu_step_changes_the_table_and_meets_the_train_target(tmp_path):
    tool = _tool()
    results, page = _copy(tmp_path)
    text = page.read_text(encoding="utf-8")
    assert tool.fill(text, results) == text
    assert "| train step (incl. backward + SGD), pairs/s | 184.6 | 164.7 | ≥ 500 | **not met** |" in text

    def faster(r: dict) -> None:
        if r["case"] == "train_step":
            r["pairs_per_s"] = {"baseline": 620.0, "textscd": 540.0}[r["model"]]
    _edit_jsonl(results / "benchmarks" / "nvidia-h100-80gb-hbm3.jsonl", faster)
    assert tool.main(["--check", "--results", str(results), "--page", str(page)]) == 1
    assert tool.main(["--results", str(results), "--page", str(page)]) == 0
    gpu = _block(page.read_text(encoding="utf-8"), "gpu-step")
    assert "| train step (incl. backward + SGD), pairs/s | 620.0 | 540.0 | ≥ 500 | met |" in gpu
    assert tool.main(["--check", "--results", str(results), "--page", str(page)]) == 0


def test_a_slow_latest_make_test_is_judged_over_its_target(tmp_path):
    tool = _tool()
    results, page = _copy(tmp_path)
    record = results / "benchmarks" / "make-test.jsonl"
    rows = [json.loads(x) for x in record.read_text(encoding="utf-8").splitlines() if x.strip()]
    with record.open("a", encoding="utf-8") as f:
        f.write(json.dumps({**rows[-1], "when": "2099-01-01T00:00:00Z", "seconds": 700.0}) + "\n")
    wall = _block(tool.fill(page.read_text(encoding="utf-8"), results), "cpu-wall")
    assert "| 11 min 40 s (environment" in wall
    assert wall.count("| **not met** |") == 1 and wall.count("not judged") == len(rows)


def test_a_make_test_that_failed_is_shown_failed_and_never_met(tmp_path):
    tool = _tool()
    results, page = _copy(tmp_path)
    record = results / "benchmarks" / "make-test.jsonl"
    last = json.loads(record.read_text(encoding="utf-8").splitlines()[-1])
    with record.open("a", encoding="utf-8") as f:
        f.write(json.dumps({**last, "when": "2099-01-01T00:00:00Z", "seconds": 300.0, "status": 2}) + "\n")
    wall = _block(tool.fill(page.read_text(encoding="utf-8"), results), "cpu-wall")
    assert "(2099-01-01" in wall and "failed (exit status 2)" in wall
    assert "| ≤ 10 min | met |" not in wall


def test_a_narrow_tail_that_loses_more_than_the_seed_noise_does_not_pass(tmp_path):
    tool = _tool()
    results, page = _copy(tmp_path)
    study = _block(page.read_text(encoding="utf-8"), "tail-study")
    summary = results / "cpu-30ep-narrow" / "errors" / "summary.json"
    s = json.loads(summary.read_text(encoding="utf-8"))
    paper = json.loads((results / "cpu-30ep/metrics/training_summary.json").read_text())["models"]["textscd"]
    s["scores"]["TextSCD"]["SeK"] = paper["best"]["SeK"] - 0.02   # two SeK points below, ×100: beyond the noise
    summary.write_text(json.dumps(s), encoding="utf-8")
    changed = _block(tool.fill(page.read_text(encoding="utf-8"), results), "tail-study")
    assert changed != study
    assert "- TextSCD: narrow − paper = -2.00 SeK: below the noise: fails the rule." in changed
    assert "- Under the rule, `narrow` does not pass." in changed


def test_a_missing_marker_is_refused_in_one_line(tmp_path, capsys):
    tool = _tool()
    results, page = _copy(tmp_path)
    broken = page.read_text(encoding="utf-8").replace("<!-- end generated: cpu-step -->\n", "")
    page.write_text(broken, encoding="utf-8")
    assert tool.main(["--results", str(results), "--page", str(page)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "cpu-step" in err and str(page) in err
    assert page.read_text(encoding="utf-8") == broken   # left as it was, not half-rewritten


def prose_numbers(text: str) -> list[str]:
    """Decimal or thousands-separated numbers in the page's prose (outside the generated blocks, inline code,
    LaTeX and indented code) that docs/facts.md does not state as the paper's or the protocol's."""
    pn = _load("prose_numbers", ROOT / "tests" / "test_prose_numbers.py")
    allowed = pn.paper_numbers()
    prose = pn.NOT_PROSE.sub(" ", INDENTED_CODE.sub(" ", BLOCK.sub(" ", text)))
    return [f"{m.group(1)} in '{' '.join(prose[max(0, m.start() - 40): m.end() + 20].split())}'"
            for m in pn.NUMBER.finditer(prose) if pn._bare(m.group(1)) not in allowed]


def test_the_prose_outside_the_blocks_types_no_measured_number():
    found = prose_numbers(PAGE.read_text(encoding="utf-8"))
    assert not found, ("docs/performance.md types measured numbers outside its generated blocks; print them from a "
                       "record in tools/performance_page.py instead:\n" + "\n".join(found))


def test_a_measured_number_planted_in_the_prose_is_found_and_one_in_a_block_is_not():
    text = PAGE.read_text(encoding="utf-8")
    planted = text.replace("## The fast path, change by change\n",
                           "## The fast path, change by change\n\nThe H100 ran 164.7 pairs/s.\n")
    assert [x.split(" in ")[0] for x in prose_numbers(planted)] == ["164.7"]
    assert "164.7" in _block(text, "gpu-step") and prose_numbers(text) == []


def test_the_demo_setting_bench_block_divides_by_the_fp32_rows_of_the_same_model(tmp_path):
    tool = _tool()
    results, page = _copy(tmp_path)
    record = results / "benchmarks" / "cpu-x86-64-1threads.jsonl"
    rows = [json.loads(x) for x in record.read_text(encoding="utf-8").splitlines() if x.strip()]
    fp32 = [r["step_ms_median"] for r in rows if r["case"] == "train_step" and r["model"] == "textscd"
            and r["precision"] == "fp32" and not r["channels_last"]]
    ref = statistics.median(fp32)
    rows.append({**rows[-1], "case": "train_step", "model": "textscd", "precision": "bf16", "channels_last": True,
                 "step_ms_median": ref / 4, "time": "2099-01-01T00:00:00+0000"})
    record.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    block = _block(tool.fill(page.read_text(encoding="utf-8"), results), "cpu-demo-bench")
    assert "| 2099-01-01 00:00 | TextSCD | bf16 | on |" in block and block.rstrip().count("| ×4.00 |") == 1
