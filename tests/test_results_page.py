"""docs/results.md is written by tools/results_page.py from the committed runs' files, so its numbers and verdicts
cannot drift from them: the committed page must equal what the script writes today, and a changed file changes it."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("results_page", ROOT / "tools" / "results_page.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_results_page_equals_what_the_runs_files_give():
    page = _tool().render(ROOT / "results")
    assert (ROOT / "docs" / "results.md").read_text(encoding="utf-8") == page, (
        "docs/results.md is stale: run `python tools/results_page.py` and commit it")


def _copy_results(tmp_path: Path) -> Path:
    dest = tmp_path / "results"
    for run in ("demo", "cpu-30ep", "cpu-30ep-seed1"):
        for sub in ("metrics", "run.json", "reference-predictions/manifest.json"):
            src = ROOT / "results" / run / sub
            if src.is_dir():
                shutil.copytree(src, dest / run / sub)
            elif src.is_file():
                (dest / run / sub).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest / run / sub)
    shutil.copytree(ROOT / "results" / "seed-study", dest / "seed-study")
    for name in ("bf16-accuracy.jsonl", "errors.jsonl"):
        src = ROOT / "results" / "benchmarks" / name
        if src.is_file():
            (dest / "benchmarks").mkdir(exist_ok=True)
            shutil.copyfile(src, dest / "benchmarks" / name)
    for folder in ("text-dynamics", "text-interventions"):
        if (ROOT / "results" / folder).is_dir():
            shutil.copytree(ROOT / "results" / folder, dest / folder)
    return dest


def test_a_changed_score_changes_the_table_and_the_verdict(tmp_path):
    tool = _tool()
    results = _copy_results(tmp_path)
    assert tool.render(results) == tool.render(ROOT / "results")
    manifest = results / "cpu-30ep" / "reference-predictions" / "manifest.json"
    m = json.loads(manifest.read_text(encoding="utf-8"))
    oracle = m["models"]["textscd-oracle"]["scores"]["SeK"]
    for s in ("noisy-1.0", "shuffled", "empty"):  # every caption without information now scores as oracle
        m["models"][f"textscd-{s}"]["scores"]["SeK"] = oracle
    manifest.write_text(json.dumps(m), encoding="utf-8")
    page = tool.render(results)
    assert "- cpu-30ep: the largest loss is 0.00 SeK" in page
    assert "cpu-30ep: the largest loss is 0.00 SeK against a noise of 0.7 SeK: TextSCD reads" not in page


def test_a_demo_gain_within_the_seed_noise_is_never_called_a_gain(tmp_path):
    tool = _tool()
    results = _copy_results(tmp_path)
    path = results / "demo" / "metrics" / "table1.json"
    t = json.loads(path.read_text(encoding="utf-8"))
    ours = [r for r in t["rows"] if r["source"].startswith("ours")]
    ours[1]["SeK"] = ours[0]["SeK"] + 1.0  # +1.00 at 6 epochs: below the 6-epoch spread
    path.write_text(json.dumps(t), encoding="utf-8")
    assert "- demo: TextSCD − Baseline = +1.00 (within the noise) SeK" in tool.render(results)


def test_a_text_gain_lost_under_bf16_keeps_the_trainer_fp32(tmp_path):
    tool = _tool()
    results = _copy_results(tmp_path)
    path = results / "benchmarks" / "bf16-accuracy.jsonl"
    rows = {r["model"]: r for r in map(json.loads, path.read_text().splitlines())}

    def page(fp32_gap: float, bf16_gap: float) -> str:
        rows["textscd"]["fp32_best_SeK"] = rows["baseline"]["fp32_best_SeK"] + fp32_gap
        rows["textscd"]["bf16_best_SeK"] = rows["baseline"]["bf16_best_SeK"] + bf16_gap
        path.write_text("\n".join(json.dumps(r) for r in rows.values()) + "\n")
        return tool.render(results)

    noise = rows["textscd"]["noise"]
    assert "keeps its standing under bf16" in page(2 * noise, 2 * noise)
    assert "does not survive bf16" in page(2 * noise, 0.0)


def test_the_errors_benchmark_verdict_follows_the_latest_idle_row(tmp_path):
    results = tmp_path / "results"
    (results / "benchmarks").mkdir(parents=True)
    src = ROOT / "results" / "benchmarks" / "errors.jsonl"
    rows = [json.loads(x) for x in src.read_text(encoding="utf-8").splitlines() if x.strip()]
    tool = _tool()

    def page(*extra: dict) -> str:
        text = "".join(json.dumps(r) + "\n" for r in [*rows, *extra])
        (results / "benchmarks" / "errors.jsonl").write_text(text, encoding="utf-8")
        return "\n".join(tool.errors_bench_section(results))

    idle = {**rows[-1], "time": "2099-01-01 00:00 UTC"}
    assert "over the 60 s target by 5.0 s" in page({**idle, "seconds": 65.0, "load_average_1min": 0.5})
    assert "within the 60 s target" in page({**idle, "seconds": 59.0, "load_average_1min": 0.5})
    crowded = page({**idle, "seconds": 65.0, "load_average_1min": 0.5}, {**idle, "seconds": 30.0,
                                                                         "load_average_1min": 7.0})
    assert "over the 60 s target" in crowded and "| 30.0 |" in crowded   # listed, not judged: not idle


def test_an_intervention_line_says_whether_its_seeds_agree(tmp_path):
    tool = _tool()
    results = _copy_results(tmp_path)
    folder = results / "text-interventions"
    if not folder.is_dir():
        pytest.skip("no intervention runs committed")
    path = sorted(folder.glob("*-s1.jsonl"))[0]
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    name = rows[0]["intervention"]
    for r in rows:                                   # seed 1 made to read from its first measurement on
        r["gap_empty"] = 10.0
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    seed0 = [json.loads(x) for x in (folder / path.name.replace("-s1", "-s0")).read_text().splitlines() if x]
    for r in seed0:
        r["gap_empty"] = 10.0
    (folder / path.name.replace("-s1", "-s0")).write_text("".join(json.dumps(r) + "\n" for r in seed0))
    page = "\n".join(tool.interventions_section(results))
    assert f"- {name} (2 seeds, up to epoch" in page and "in every seed: reads earlier" in page


def test_seeds_that_contradict_each_other_are_told_apart_from_seeds_that_cannot_show_a_difference():
    agreement = _tool().seed_agreement
    assert agreement([(0, "reads later"), (1, "reads later")]) == "in every seed: reads later"
    assert agreement([(0, "reads earlier"), (1, "reads later")]).startswith("the seeds disagree: seed 0 reads earlier")
    none = "no difference these measurements can show"
    assert agreement([(0, none), (1, "reads later")]) == f"per seed: seed 0 {none}; seed 1 reads later"
