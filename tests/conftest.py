"""Shared test setup: every test reads and writes under pytest's temporary folders, never the working tree.

``TEXTSCD_HOME`` (and with it the results root and ``data/``) points at one session-wide temporary folder, so the
FAST mini-SECOND is generated once per session there; tests that need their own folder use ``tmp_path``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def textscd_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("textscd-home")
    (home / "notebooks").symlink_to(REPO / "notebooks")  # `textscd run` finds the notebooks under its home
    saved = {k: os.environ.get(k) for k in ("TEXTSCD_HOME", "TEXTSCD_RESULTS", "TEXTSCD_DATA")}
    os.environ["TEXTSCD_HOME"] = str(home)
    os.environ.pop("TEXTSCD_RESULTS", None)
    os.environ.pop("TEXTSCD_DATA", None)
    yield home
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def one_thread():
    """One intra-op thread: on a shared 2-core machine, two OpenMP threads competing with another busy
    process make CPU convolutions tens of times slower; one thread keeps the training tests in seconds."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
