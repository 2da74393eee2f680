"""The library's folders import one way (pyproject.toml's import-linter contracts, `make lint`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO

LINT = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120)


def _copy_library(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "textscd_lib", tmp_path / "textscd_lib",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_library_keeps_its_import_layers(tmp_path):
    out = _lint(_copy_library(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "BROKEN" not in out.stdout


def test_a_reversed_import_breaks_the_layers_contract(tmp_path):
    """The data layer importing the trainer (an upper layer) must be refused, naming both modules."""
    root = _copy_library(tmp_path)
    second = root / "textscd_lib" / "data" / "second.py"
    second.write_text(second.read_text() + "\nimport textscd_lib.engine.trainer  # noqa: E402,F401\n")
    out = _lint(root)
    assert out.returncode != 0
    assert "BROKEN" in out.stdout and "textscd_lib.data.second -> textscd_lib.engine.trainer" in out.stdout


def test_the_model_may_not_read_captions(tmp_path):
    root = _copy_library(tmp_path)
    tgi = root / "textscd_lib" / "models" / "tgi.py"
    tgi.write_text(tgi.read_text() + "\nimport textscd_lib.text.store  # noqa: E402,F401\n")
    out = _lint(root)
    assert out.returncode != 0 and "The model knows nothing of captions" in out.stdout
