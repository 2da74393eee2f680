"""``textscd run``'s inputs (chapter 00): a refused input exits 2 with one line on stderr before any notebook
starts; every chapter's parameters carry a type the runner checks; chapter 00 runs with results elsewhere."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import nbformat
import pytest

from textscd_lib.cli.main import main
from textscd_lib.course import runner
from textscd_lib.course.runrecord import RUNNER_PARAMETERS

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def _home_with_chapter(tmp_path: Path, params: str) -> Path:
    """A working folder whose notebooks/ holds one chapter with the given parameters cell."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell("x = 1")]
    (tmp_path / "notebooks").mkdir()
    nbformat.write(nb, tmp_path / "notebooks" / "01_a.ipynb")
    return tmp_path


def _refused(argv: list[str], capsys, *words: str) -> None:
    rc = main(argv)
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and out == "", (rc, out, err)
    assert len(lines) == 1 and lines[0].startswith("textscd run: error:") and all(w in lines[0] for w in words)


@pytest.mark.parametrize("only", ["", ",", " "])
def test_run_with_an_empty_only_is_refused_not_run_as_the_whole_series(tmp_path, monkeypatch, capsys, only):
    monkeypatch.setenv("TEXTSCD_HOME", str(_home_with_chapter(tmp_path, "FAST = True\nRUN = 'x'")))
    _refused(["run", "--only", only, "--run-name", "t"], capsys, "--only", "names no notebook")
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("yaml_text, words", [("EPOCHZ: 3\n", ["unknown parameter", "EPOCHZ"]),
                                              ("EPOCHS: ten\n", ["EPOCHS", "'ten' is a str"]),
                                              ("- a list\n", ["must be a mapping"]),
                                              ("RUN: other\n", ["set by the runner"])])
def test_run_refuses_parameters_a_user_can_fix_with_exit_2_on_stderr(tmp_path, monkeypatch, capsys, yaml_text,
                                                                      words):
    monkeypatch.setenv("TEXTSCD_HOME", str(_home_with_chapter(tmp_path, "FAST = True\nRUN = 'x'\nEPOCHS = 1")))
    (tmp_path / "p.yaml").write_text(yaml_text)
    _refused(["run", "--params", str(tmp_path / "p.yaml"), "--run-name", "t"], capsys, *words)
    _refused(["run", "--only", "07", "--run-name", "t"], capsys, "do not exist", "07")
    assert not (tmp_path / "results").exists()


def test_a_value_for_a_parameter_without_a_type_is_refused_before_anything_runs(tmp_path):
    home = _home_with_chapter(tmp_path, "import os\nFAST = True\nRUN = 'x'\nSIZE = None\n"
                                        "MODE = os.environ.get('MODE', 'a')")
    for name in ("SIZE", "MODE"):
        with pytest.raises(runner.RunError, match=f"{name}: 01_a.ipynb declares it without a type annotation"):
            runner.run_series({name: "512"}, run_name="t", results_root=tmp_path / "res",
                              notebooks_dir=home / "notebooks")
    assert not (tmp_path / "res").exists()


def test_every_parameter_of_every_chapter_has_a_type_the_runner_checks():
    """An unannotated parameter with a non-literal or None default escapes the type check; the runner sets
    RUN and FAST itself and refuses them as parameters."""
    books = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    assert books
    untyped = {f"{b.name}: {name}" for b in books for name, kinds in runner.parameter_types(b).items()
               if kinds is None and name not in RUNNER_PARAMETERS}
    assert not untyped, sorted(untyped)


def test_chapter_00_lists_the_chapters_when_results_lie_outside_the_home_folder(tmp_path, monkeypatch):
    """The cell that lists the chapters, run as the kernel runs it (in the notebooks' folder), with the run
    folder somewhere else entirely (TEXTSCD_RESULTS)."""
    nb = json.loads((NOTEBOOKS / "00_overview.ipynb").read_text(encoding="utf-8"))
    cell = next("".join(c["source"]) for c in nb["cells"] if "chapters = " in "".join(c["source"]))
    ast.parse(cell)
    monkeypatch.chdir(NOTEBOOKS)
    monkeypatch.setenv("TEXTSCD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TEXTSCD_RESULTS", str(tmp_path / "elsewhere" / "results"))
    scope = {"RUN_PATH": tmp_path / "elsewhere" / "results" / "demo", "os": os}
    exec(compile(cell, "00_overview.ipynb", "exec"), scope)  # noqa: S102 - the chapter's own cell
    assert scope["chapters"][0] == "00_overview.ipynb"
