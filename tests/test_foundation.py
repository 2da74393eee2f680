"""The course's contract: environment files, notebook conventions, the runner, `textscd env`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from conftest import REPO

from textscd_lib.common.runs import record_substitute
from textscd_lib.course import runner

ROOT = REPO
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _requirement_names(text: str) -> list[str]:
    names = []
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if line:
            names.append(re.split(r"[=<>!~\[ ]", line)[0].lower())
    return names


def test_requirements_pin_torch_and_torchvision_as_a_pair():
    reqs = (ROOT / "requirements.txt").read_text()
    assert re.search(r"^torch==2\.14\.1$", reqs, re.M)
    assert re.search(r"^torchvision==0\.29\.1$", reqs, re.M)
    names = _requirement_names(reqs)
    assert "google-genai" in names and "google-generativeai" not in names
    assert len(names) == len(set(names)), "a package is listed twice"


def test_environment_yml_installs_exactly_requirements_txt():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert pip_sections == [["-r requirements.txt", "-e ."]]
    conda_pkgs = [d for d in env["dependencies"] if isinstance(d, str)]
    # nothing but python and pip from conda: every other package comes from requirements.txt
    assert sorted(p.split("=")[0] for p in conda_pkgs) == ["pip", "python"]


def test_ci_runs_exactly_the_readme_test_command():
    ci = [ln.strip() for ln in (ROOT / ".ci/run").read_text().splitlines()
          if ln.strip() and not ln.startswith("#") and not ln.startswith(("set ", "cd "))]
    assert ci == ["make test"]
    assert "make test" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_committed_clean_with_one_parameters_cell_first(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), f"{path.name} has outputs"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0] is code[0], f"{path.name}: first code cell must be the only 'parameters'"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    src = tagged[0].source
    assert "FAST = " in src and "RUN = " in src
    assert any("What we saw" in c.source for c in nb.cells if c.cell_type == "markdown")


def test_notebook_names_are_numbered_and_slugged():
    assert NOTEBOOKS, "no notebooks"
    for p in NOTEBOOKS:
        assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", p.name), p.name
    numbers = [p.name[:2] for p in NOTEBOOKS]
    assert numbers == sorted(set(numbers))


def _tiny_notebook(folder: Path, name: str, params: str, body: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    p = nbformat.v4.new_code_cell(params)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), p, nbformat.v4.new_code_cell(body)]
    path = folder / name
    nbformat.write(nb, path)
    return path


def test_runner_rejects_a_parameter_no_notebook_declares(tmp_path):
    books = tmp_path / "nb"
    books.mkdir()
    _tiny_notebook(books, "01_a.ipynb", "FAST = True\nRUN = 'x'\nEPOCHS = 1", "x = EPOCHS + 1")
    with pytest.raises(runner.RunError, match=r"unknown parameter.*EPOCHZ"):
        runner.run_series({"EPOCHZ": 3}, run_name="t", fast=True, results_root=tmp_path / "res",
                          notebooks_dir=books)


def test_runner_stops_at_the_failing_notebook_and_names_the_cell(tmp_path):
    books = tmp_path / "nb"
    books.mkdir()
    _tiny_notebook(books, "01_ok.ipynb", "FAST = True\nRUN = 'x'\nEPOCHS = 1", "y = EPOCHS * 2")
    _tiny_notebook(books, "02_bad.ipynb", "FAST = True\nRUN = 'x'", "raise ValueError('broken chapter')")
    _tiny_notebook(books, "03_never.ipynb", "FAST = True\nRUN = 'x'", "z = 1")
    with pytest.raises(runner.RunError, match=r"02_bad\.ipynb failed in cell \d+ \(ValueError: broken chapter\)"):
        runner.run_series({"EPOCHS": 4}, run_name="t", fast=True, results_root=tmp_path / "res",
                          notebooks_dir=books)
    meta = json.loads((tmp_path / "res/t/run.json").read_text())
    assert meta["status"] == "failed"
    assert [n["notebook"] for n in meta["notebooks"]] == ["01_ok.ipynb", "02_bad.ipynb"]
    assert meta["notebooks"][0]["parameters"] == {"EPOCHS": 4, "RUN": "t", "FAST": True}
    assert "02_bad" not in [p.name for p in (tmp_path / "res/t/executed").glob("03*")]


def test_runner_records_parameters_versions_device_times_and_substitutes(tmp_path):
    books = tmp_path / "nb"
    books.mkdir()
    res = tmp_path / "res"
    body = ("from textscd_lib.common.runs import record_substitute, run_dir\n"
            f"record_substitute(run_dir(RUN, {str(res)!r}), 'data', 'mini', 'SECOND', 'offline')")
    _tiny_notebook(books, "01_a.ipynb", "FAST = True\nRUN = 'x'\nSEED = 0", body)
    rep = runner.run_series({"SEED": 7}, run_name="t", fast=True, results_root=res, notebooks_dir=books)
    assert rep.status == "ok"
    meta = json.loads((res / "t/run.json").read_text())
    assert meta["parameters"] == {"SEED": 7} and meta["fast"] is True
    assert meta["versions"]["torch"] and meta["device"]["device"]
    assert meta["notebooks"][0]["status"] == "ok" and meta["notebooks"][0]["seconds"] > 0
    assert meta["substitutes"]["data"]["used"] == "mini"
    executed = nbformat.read(res / "t/executed/01_a.ipynb", as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)


def test_run_outputs_do_not_make_the_code_dirty_but_a_changed_source_file_does(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "lib.py").write_text("x = 1\n")
    git("add", "lib.py")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "c")
    assert runner.git_commit(tmp_path)["dirty"] is False
    (tmp_path / "results" / "run").mkdir(parents=True)
    (tmp_path / "results" / "run" / "run.json").write_text("{}")
    assert runner.git_commit(tmp_path)["dirty"] is False
    (tmp_path / "lib.py").write_text("x = 2\n")
    assert runner.git_commit(tmp_path)["dirty"] is True


def test_rerunning_one_chapter_keeps_the_series_record_and_lists_the_rerun(tmp_path):
    books, res = tmp_path / "nb", tmp_path / "res"
    books.mkdir()
    _tiny_notebook(books, "01_a.ipynb", "FAST = True\nRUN = 'x'\nEPOCHS = 1", "pass")
    _tiny_notebook(books, "02_b.ipynb", "FAST = True\nRUN = 'x'", "pass")
    runner.run_series({"EPOCHS": 30}, run_name="t", fast=True, results_root=res, notebooks_dir=books)
    first = json.loads((res / "t/run.json").read_text())
    runner.run_series({}, run_name="t", fast=True, results_root=res, notebooks_dir=books, only=["02"])
    meta = json.loads((res / "t/run.json").read_text())
    assert meta["parameters"] == {"EPOCHS": 30} and meta["started"] == first["started"]
    assert [e["notebook"] for e in meta["notebooks"]] == ["01_a.ipynb", "02_b.ipynb"]
    assert meta["notebooks"][0] == first["notebooks"][0] and meta["status"] == "ok"
    assert [r["notebooks"] for r in meta["reruns"]] == [["02_b.ipynb"]] and meta["reruns"][0]["parameters"] == {}
    # a whole series starts its record afresh
    runner.run_series({}, run_name="t", fast=True, results_root=res, notebooks_dir=books)
    assert "reruns" not in json.loads((res / "t/run.json").read_text())


def test_substitute_record_is_merged_per_part(tmp_path):
    record_substitute(tmp_path, "data", "a", "b", "c")
    msg = record_substitute(tmp_path, "text_encoder", "MiniLM", "CLIP", "no weights")
    assert msg.startswith("OFFLINE SUBSTITUTE [text_encoder]: using MiniLM instead of CLIP")
    assert set(json.loads((tmp_path / "substitutes.json").read_text())) == {"data", "text_encoder"}


def test_a_part_that_uses_the_papers_choice_again_is_cleared_and_a_whole_series_starts_a_fresh_record(tmp_path):
    from textscd_lib.common.runs import clear_substitute, read_substitutes
    from textscd_lib.data.synthetic import resolve_data_root, synthesize

    run = tmp_path / "run"
    run.mkdir()
    record_substitute(run, "data", "mini-SECOND", "SECOND", "offline")
    record_substitute(run, "captions", "oracle", "Gemini", "offline")
    clear_substitute(run, "text_encoder")  # nothing recorded for it: no-op
    assert set(read_substitutes(run)) == {"data", "captions"}
    real = synthesize(tmp_path / "real", pairs=4, size=64, seed=1)  # stands in for a prepared SECOND folder
    resolve_data_root(real, fast=True, run_path=run)  # DATA_ROOT given: the paper's kind of data
    assert set(read_substitutes(run)) == {"captions"}
    # a whole series (no --only) forgets what an earlier series recorded; a single chapter adds to it
    books = tmp_path / "nb"
    books.mkdir()
    _tiny_notebook(books, "01_a.ipynb", "FAST = True\nRUN = 'x'", "pass")
    runner.run_series({}, run_name="run", fast=True, results_root=tmp_path, notebooks_dir=books, only=["01"])
    assert set(read_substitutes(run)) == {"captions"}
    runner.run_series({}, run_name="run", fast=True, results_root=tmp_path, notebooks_dir=books)
    assert read_substitutes(run) == {}
    assert json.loads((run / "run.json").read_text())["substitutes"] == {}


def test_a_modules_own_substitute_line_is_recorded_as_used_instead_of_why(tmp_path):
    from textscd_lib.common.runs import read_substitutes, record_substitute_line

    record_substitute_line(tmp_path, "image_encoder",
                           "ResNet34 random init instead of ImageNet weights (ImageNet weights not found offline)")
    record_substitute_line(tmp_path, "text_encoder", "MiniLM instead of CLIP")
    record_substitute_line(tmp_path, "other", "something odd")
    rec = read_substitutes(tmp_path)
    assert rec["image_encoder"] == {"used": "ResNet34 random init", "instead_of": "ImageNet weights",
                                    "why": "ImageNet weights not found offline"}
    assert rec["text_encoder"] == {"used": "MiniLM", "instead_of": "CLIP", "why": "offline"}
    assert rec["other"] == {"used": "something odd", "instead_of": "?", "why": "offline"}


def test_substitute_is_logged_at_info_so_that_the_chapter_printing_it_shows_it_once(tmp_path, caplog):
    """A WARNING would reach a notebook's output beside the chapter's own print of substitute_lines()."""
    import logging

    caplog.set_level(logging.INFO, logger="textscd_lib.common.runs")
    msg = record_substitute(tmp_path, "captions", "oracle captions", "Gemini captions", "offline")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(logging.INFO, msg)]


def test_env_reports_the_key_variable_but_never_its_value(monkeypatch):
    secret = "fake-gemini-key-that-must-not-leak-000"
    env = {"GEMINI_API_KEY": secret, "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "textscd_lib", "env", "--json"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert secret not in out.stdout + out.stderr
    rep = json.loads(out.stdout)
    assert "GEMINI_API_KEY" in rep["gemini_key"]
    assert rep["versions"]["torch"] == "2.14.1"
    assert set(rep["weights"]) == {"CLIP ViT-B-16 (OpenAI)", "ResNet34 ImageNet", "all-MiniLM-L6-v2 (packaged)"}


def test_runner_sees_parameters_that_papermill_cannot_parse(tmp_path):
    """papermill's parser drops a line whose comment holds '=' or whose value is an expression."""
    books = tmp_path / "nb"
    books.mkdir()
    params = ('import os\nFAST = os.environ.get("TEXTSCD_FAST", "0") == "1"\nRUN = "x"\n'
              'DATA_ROOT = ""  # "" = the embedded dataset\nEPOCHS: int = 3')
    path = _tiny_notebook(books, "01_a.ipynb", params, "print(repr(DATA_ROOT), EPOCHS)")
    assert set(runner.declared_parameters(path)) == {"FAST", "RUN", "DATA_ROOT", "EPOCHS"}
    rep = runner.run_series({"DATA_ROOT": "/data/second", "EPOCHS": 9}, run_name="t", fast=True,
                            results_root=tmp_path / "res", notebooks_dir=books)
    out = nbformat.read(tmp_path / "res/t/executed/01_a.ipynb", as_version=4).cells[-1].outputs[0]["text"]
    assert rep.status == "ok" and out.strip() == "'/data/second' 9"
