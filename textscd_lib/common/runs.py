"""Run folders and the record of offline substitutes (every chapter; the runner writes `run.json`).

A *run* is one execution of the notebook series: ``results/<run>/`` holds ``run.json``, ``executed/``,
``figures/``, ``metrics/``, ``checkpoints/`` and the artefacts chapters share (captions, text features).
Chapters never share hidden state: they share files under the run folder.

Whenever an offline stand-in replaces a part of the paper's setting (synthetic data instead of SECOND, MiniLM
instead of CLIP, oracle captions instead of Gemini, random instead of ImageNet weights), the code that makes
that choice calls :func:`record_substitute`, and the runner copies the record into ``run.json``.

Each substitute is *shown* exactly once, by whoever faces the reader: a chapter prints
``"\n".join(substitute_lines(RUN_PATH))`` in one visible cell, and the ``textscd`` command line shows the INFO
line that :func:`record_substitute` logs (its logging is set to INFO on stderr). The library itself logs at
INFO only, so nothing is said twice.

Next to the substitutes, a run keeps a *warnings* record (``warnings.json``, :func:`record_warning`): problems
that did not stop the run but change what it means (a few pairs trained without a caption, captions cut by
the token budget, a run trained on empty text on purpose). The runner copies it into ``run.json`` and
:func:`substitute_lines` returns its lines after the substitutes', so every chapter shows them too.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from textscd_lib.common.io import atomic_write_json
from textscd_lib.common.paths import results_root

log = logging.getLogger(__name__)

SUBSTITUTES_FILE = "substitutes.json"
WARNINGS_FILE = "warnings.json"
EFFECTIVE_FILE = "effective.json"


def run_dir(run: str, root: str | Path | None = None) -> Path:
    """``<results root>/<run>/`` (created), with its standard sub-folders; ``root`` as in
    :func:`textscd_lib.common.paths.results_root`."""
    if not run or "/" in run or run.startswith("."):
        raise ValueError(f"invalid run name {run!r}: use a plain folder name such as 'demo'")
    d = results_root(root) / run
    for sub in ("executed", "figures", "metrics"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    return d


def record_substitute(run_path: str | Path, part: str, used: str, instead_of: str, why: str) -> str:
    """Record that ``used`` stands in for ``instead_of`` (the paper's choice) in this run, and say so.

    Returns the one-line message and logs it at INFO (the CLI shows it on stderr; a notebook shows the run's
    lines once, with :func:`substitute_lines`). Idempotent per ``part``: recording it again replaces it."""
    run_path = Path(run_path)
    record = read_substitutes(run_path)
    record[part] = {"used": used, "instead_of": instead_of, "why": why}
    atomic_write_json(run_path / SUBSTITUTES_FILE, record)
    msg = _line(part, record[part])
    log.info(msg)  # INFO: the CLI shows it; notebooks print substitute_lines() once instead
    return msg


def record_substitute_line(run_path: str | Path, part: str, line: str) -> str:
    """Record a module's own ``"X instead of Y (why)"`` line (``model.substitutes``, a text encoder's
    ``.substitute``) as ``part``'s substitute (the trainer, chapter 05)."""
    m = re.match(r"^(.*) instead of (.*) \(([^()]*)\)$", line)
    if m:
        return record_substitute(run_path, part, m.group(1), m.group(2), m.group(3))
    m = re.match(r"^(.*) instead of (.*)$", line)
    used, instead = (m.group(1), m.group(2)) if m else (line, "?")
    return record_substitute(run_path, part, used, instead, "offline")


def clear_substitute(run_path: str | Path, part: str) -> None:
    """Forget ``part``'s substitute: the paper's choice is used for it now (say, ``DATA_ROOT`` names SECOND in
    a run folder that once ran on mini-SECOND). A no-op when nothing was recorded for it."""
    record = read_substitutes(run_path)
    if record.pop(part, None) is not None:
        atomic_write_json(Path(run_path) / SUBSTITUTES_FILE, record)
        log.info("run %s: %s is no longer a substitute", Path(run_path).name, part)


def reset_substitutes(run_path: str | Path) -> None:
    """Start a run's record afresh, substitutes, warnings and effective values (the runner does it before a whole series, so
    stale parts never linger)."""
    (Path(run_path) / SUBSTITUTES_FILE).unlink(missing_ok=True)
    (Path(run_path) / WARNINGS_FILE).unlink(missing_ok=True)
    (Path(run_path) / EFFECTIVE_FILE).unlink(missing_ok=True)


def _line(part: str, rec: dict) -> str:
    return f"OFFLINE SUBSTITUTE [{part}]: using {rec['used']} instead of {rec['instead_of']} ({rec['why']})"


def substitute_lines(run_path: str | Path) -> list[str]:
    """Every substitute recorded in this run, one printable line each, then every warning
    (:func:`warning_lines`): every chapter prints ``"\n".join(substitute_lines(RUN_PATH))`` once, after its
    own parts are recorded."""
    return [_line(part, rec) for part, rec in read_substitutes(run_path).items()] + warning_lines(run_path)


def read_substitutes(run_path: str | Path) -> dict:
    return _read_record(Path(run_path) / SUBSTITUTES_FILE)


def _read_record(f: Path) -> dict:
    if not f.exists():
        return {}
    try:
        data = json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{f}: not valid JSON ({e}); delete it and rerun") from e
    if not isinstance(data, dict):
        raise ValueError(f"{f}: expected a JSON object, got {type(data).__name__}; delete it and rerun")
    return data


# --------------------------------------------------------------------------------------------- warnings
def record_warning(run_path: str | Path, part: str, message: str, **details) -> str:
    """Record a problem that did not stop the run but changes what it means (``warnings.json``; the runner
    copies it into ``run.json``) and return its line, ``WARNING [part]: ...``. Logged at INFO like a substitute
    (the CLI shows INFO; a chapter prints it once with :func:`substitute_lines`). Idempotent per ``part``."""
    run_path = Path(run_path)
    record = read_warnings(run_path)
    record[part] = {"message": message, **details}
    atomic_write_json(run_path / WARNINGS_FILE, record)
    line = _warning_line(part, record[part])
    log.info(line)  # INFO, as record_substitute: shown once, by whoever faces the reader
    return line


def clear_warning(run_path: str | Path, part: str) -> None:
    """Forget ``part``'s warning (the problem is gone: say, the captions were rebuilt complete)."""
    record = read_warnings(run_path)
    if record.pop(part, None) is not None:
        atomic_write_json(Path(run_path) / WARNINGS_FILE, record)


def read_warnings(run_path: str | Path) -> dict:
    """``{part: {"message": ..., details}}`` of a run (empty when nothing was recorded)."""
    return _read_record(Path(run_path) / WARNINGS_FILE)


def _warning_line(part: str, rec: dict) -> str:
    return f"WARNING [{part}]: {rec.get('message', rec)}"


def warning_lines(run_path: str | Path) -> list[str]:
    """Every warning recorded in this run, one printable line each."""
    return [_warning_line(part, rec) for part, rec in read_warnings(run_path).items()]


# ----------------------------------------------------------------------------------- effective values
def record_effective(run_path: str | Path, part: str, values: dict) -> None:
    """Record the values a part of the run really used (``effective.json``; the runner copies it into
    ``run.json``): say, the trainer's epochs after ``FAST`` shrank them, next to the parameters as given."""
    record = _read_record(Path(run_path) / EFFECTIVE_FILE)
    record[part] = values
    atomic_write_json(Path(run_path) / EFFECTIVE_FILE, record)


def read_effective(run_path: str | Path) -> dict:
    """``{part: {name: value}}`` recorded by :func:`record_effective`."""
    return _read_record(Path(run_path) / EFFECTIVE_FILE)
