"""Where the course reads and writes: paths are given, never discovered from the package's location.

Every relative path the library meets (a ``DATA_ROOT``, a results root, a checkpoint) is taken relative to
the *working folder*: ``$TEXTSCD_HOME`` when set, else the current folder. Under it, ``results/`` holds the
runs (``$TEXTSCD_RESULTS`` overrides it) and ``data/`` the generated datasets, caches and local weights
(``$TEXTSCD_DATA`` overrides it). ``textscd run`` sets ``TEXTSCD_HOME`` for the notebooks it executes, and
``make lab`` for JupyterLab, so a notebook writes where its series does whatever folder its kernel starts in.
The tests point all three at pytest's temporary folders, so nothing lands in the working tree.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV, RESULTS_ENV, DATA_ENV = "TEXTSCD_HOME", "TEXTSCD_RESULTS", "TEXTSCD_DATA"


def home() -> Path:
    """The working folder: ``$TEXTSCD_HOME``, else the current folder (absolute)."""
    env = os.environ.get(HOME_ENV)
    return (Path(env).expanduser() if env else Path.cwd()).resolve()


def resolve(path: str | Path) -> Path:
    """``path`` as given when absolute, else relative to :func:`home`."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else home() / p


def results_root(given: str | Path | None = None) -> Path:
    """The folder holding ``<run>/`` folders: ``given`` (resolved), else ``$TEXTSCD_RESULTS``, else
    ``<home>/results``."""
    if given not in (None, ""):
        return resolve(given)
    env = os.environ.get(RESULTS_ENV)
    return resolve(env) if env else home() / "results"


def data_dir() -> Path:
    """Generated datasets, decoded caches and local weights: ``$TEXTSCD_DATA``, else ``<home>/data``."""
    env = os.environ.get(DATA_ENV)
    return resolve(env) if env else home() / "data"
