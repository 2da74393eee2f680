"""The papermill series runner: ``textscd run`` (all chapters).

Executes ``notebooks/NN_*.ipynb`` in order with papermill, passes each notebook the run's parameters that
its ``parameters`` cell declares, writes executed copies to ``results/<run>/executed/`` and a ``run.json``
(parameters, git commit, versions, device, wall time per notebook, offline substitutes used).

papermill only *warns* on unknown parameters; here a parameter that no selected notebook declares is an
error, so is a value whose type differs from the parameters cell's default or annotation (checked before any
notebook starts), and a failing notebook stops the run naming the notebook and the cell.

``run.json`` tells the truth: a series stopped by Ctrl-C / SIGTERM ends ``"interrupted"``, a failing one
``"failed"``, naming the chapter; a series is ``"ok"`` only when every chapter has run since the parameters
it declares last changed (``--only`` reruns list the chapters still ``missing`` or ``stale``). The runner holds
the run folder's lock (:mod:`textscd_lib.common.lock`); its notebooks' kernels inherit the right to write.
"""

from __future__ import annotations

import ast
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from textscd_lib.common.lock import run_lock
from textscd_lib.common.paths import HOME_ENV, RESULTS_ENV, home
from textscd_lib.common.runs import reset_substitutes, run_dir
from textscd_lib.course import env, tidy
from textscd_lib.course.runrecord import (
    RUNNER_PARAMETERS,
    RunError,
    keep_previous,
    read_run_json,
    write_run_json,
)

# the folder holding the package: in a checkout, where the committed runs are (analysis.ablation.committed_run);
# used only to print paths under it relative to it in executed copies
PACKAGE_CHECKOUT = Path(__file__).resolve().parents[2]

log = logging.getLogger(__name__)
# The kernel's own log ("Kernel is running over TCP without encryption" at every start) stays out of the
# terminal; its errors still show, and a notebook's own warnings and output are untouched.
KERNEL_QUIET = ["--IPKernelApp.log_level=ERROR"]


class RunInputError(RunError, ValueError):
    """A run refused before anything started because of an input the user can fix (an unknown or mistyped
    parameter, an empty or unknown ``--only``, an unreadable parameters file): ``textscd run`` exits 2."""


class Terminated(BaseException):
    """SIGTERM while the series runs (handled like Ctrl-C: the record says "interrupted")."""


@dataclass
class RunReport:
    run: str
    path: Path
    notebooks: list[dict] = field(default_factory=list)
    status: str = "running"


def list_notebooks(only: list[str] | None = None, folder: Path | None = None) -> list[Path]:
    """The numbered notebooks, in order; ``only`` keeps those whose number is listed (e.g. ["03", "04"])."""
    folder = folder or home() / "notebooks"
    books = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))
    if only is not None:
        wanted = {o.strip().zfill(2) for o in only if o.strip()}
        if not wanted:
            raise RunInputError(f"--only {','.join(only)!r} names no notebook; give numbers such as 03,04 "
                                "(or leave --only out to run the whole series)")
        unknown = wanted - {p.name[:2] for p in books}
        if unknown:
            raise RunInputError(f"--only names notebooks that do not exist: {sorted(unknown)}; "
                                f"have {[p.name[:2] for p in books]}")
        books = [p for p in books if p.name[:2] in wanted]
    if not books:
        raise RunError(f"no notebooks found in {folder}")
    return books


def declared_parameters(notebook: Path) -> dict[str, str]:
    """The names a notebook's ``parameters`` cell assigns at top level, with their source text.

    Read with Python's ``ast`` rather than ``papermill.inspect_notebook``: papermill's line parser silently
    drops lines it cannot parse (an expression such as ``FAST = os.environ.get(...) == "1"``, or a comment
    holding '='), and a dropped name would never receive its parameter."""
    import nbformat

    try:
        nb = nbformat.read(notebook, as_version=4)
    except Exception as e:  # noqa: BLE001 - any unreadable notebook is named
        raise RunError(f"{notebook}: not a readable notebook ({e})") from e
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise RunError(f"{notebook}: needs exactly one cell tagged 'parameters', found {len(cells)}")
    try:
        tree = ast.parse(cells[0].source)
    except SyntaxError as e:
        raise RunError(f"{notebook}: the parameters cell is not valid Python ({e})") from e
    names: dict[str, str] = {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
            if isinstance(node, ast.AnnAssign) else []
        for t in targets:
            if isinstance(t, ast.Name):
                names[t.id] = ast.get_source_segment(cells[0].source, node.value) or ""
    return names


def parameter_types(notebook: Path) -> dict[str, set[str] | None]:
    """The kinds of value each parameter accepts ("int", "float", "str", "bool", "None", "list", "dict"),
    from its annotation (``EPOCHS: int | None = None``) or else its literal default; None = not checkable
    (an expression such as ``os.environ.get(...) == "1"`` with no annotation)."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    src = next(c.source for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    out: dict[str, set[str] | None] = {}
    for node in ast.parse(src).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            kinds = {n.id for n in ast.walk(node.annotation) if isinstance(n, ast.Name)
                     and n.id in ("int", "float", "str", "bool", "list", "dict")}
            if any(isinstance(n, ast.Constant) and n.value is None for n in ast.walk(node.annotation)) or \
                    any(isinstance(n, ast.Name) and n.id == "Optional" for n in ast.walk(node.annotation)):
                kinds.add("None")
            out[node.target.id] = kinds or None
        elif isinstance(node, ast.Assign):
            try:
                kinds = {_kind(ast.literal_eval(node.value))}
            except (ValueError, SyntaxError, TypeError):
                kinds = None
            for t in node.targets:
                if isinstance(t, ast.Name):
                    out[t.id] = None if kinds == {"None"} else kinds  # a None default says nothing
    return out


def _kind(value) -> str:
    return {bool: "bool", int: "int", float: "float", str: "str", type(None): "None", list: "list",
            tuple: "list", dict: "dict"}.get(type(value), type(value).__name__)


def check_parameters(params: dict, declared: dict[Path, dict], types: dict[Path, dict] | None = None) -> None:
    """Every parameter must be declared by a selected notebook, and of a kind its declaration accepts (an
    int is accepted where a float is declared); raises :class:`RunInputError` naming the parameter. A value
    for a parameter whose kind cannot be read (no annotation, no literal default) is refused as well, as a
    fault of the notebook (:class:`RunError`): run.json would otherwise record a value nobody checked."""
    known = set().union(*(set(d) for d in declared.values()))
    unknown = sorted(set(params) - known)
    if unknown:
        raise RunInputError(f"unknown parameter(s) {unknown}: no selected notebook declares them. "
                            f"Known parameters: {sorted(known)}")
    for book, kinds in (types or {}).items():
        for name, value in params.items():
            if name not in kinds:
                continue
            want, got = kinds[name], _kind(value)
            if want is None:
                raise RunError(f"parameter {name}: {book.name} declares it without a type annotation, so "
                               f"{value!r} cannot be checked; annotate it in the parameters cell "
                               f"(e.g. {name}: int | None = ...); nothing was run")
            if got in want or (got == "int" and "float" in want):
                continue
            order = [k for k in ("int", "float", "str", "bool", "list", "dict", "None") if k in want]
            raise RunInputError(f"parameter {name}: {value!r} is a {got}, but {book.name} declares {name} as "
                                f"{' or '.join(order)} (default {declared[book][name]}); nothing was run")


def git_commit(root: Path) -> dict:
    """The commit the run's code comes from, and whether the code differs from it (``dirty``): any change or
    untracked file outside ``results/`` (run outputs, committed or not, do not make the code dirty)."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                  timeout=10).stdout.rstrip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    changed = [line[3:].strip('"') for line in git("status", "--porcelain").splitlines() if len(line) > 3]
    return {"commit": git("rev-parse", "HEAD") or None,
            "dirty": any(not path.startswith("results/") for path in changed)}


def run_series(params: dict | None = None, run_name: str = "demo", fast: bool = False,
               only: list[str] | None = None, kernel_name: str = "python3",
               results_root: str | Path | None = None, notebooks_dir: Path | None = None) -> RunReport:
    """Execute the notebook series; returns the report (also written to ``<results>/<run>/run.json``).

    Notebooks come from ``notebooks_dir`` (default ``<home>/notebooks``, :mod:`textscd_lib.common.paths`);
    the kernels receive ``TEXTSCD_HOME`` and ``TEXTSCD_RESULTS``, so they read and write where this call does.
    Ctrl-C or SIGTERM stops the series and records it "interrupted" (then re-raises KeyboardInterrupt)."""
    # Our own ast-based check (check_parameters) replaces papermill's line parser, whose warnings about
    # lines it cannot parse and parameters it therefore thinks unknown would only mislead.
    logging.getLogger("papermill.translators").setLevel(logging.ERROR)
    logging.getLogger("papermill").setLevel(logging.ERROR)
    params = dict(params or {})
    for reserved in RUNNER_PARAMETERS:
        if reserved in params:
            raise RunInputError(f"parameter {reserved} is set by the runner (use --run-name / --fast)")
    books = list_notebooks(only, notebooks_dir)  # an empty or unknown --only is refused first
    series = list_notebooks(None, notebooks_dir)
    declared = {b: declared_parameters(b) for b in series}
    check_parameters(params, {b: declared[b] for b in books}, {b: parameter_types(b) for b in books})

    # the commit of the notebooks that run (and of the library beside them), before the run touches anything
    git = git_commit(books[0].parent.resolve())
    out = run_dir(run_name, results_root)
    with run_lock(out, "textscd run " + " ".join(sys.argv[1:])):
        return _run_locked(params, run_name, fast, only, kernel_name, out, books, series, declared, git)


def _run_locked(params, run_name, fast, only, kernel_name, out, books, series, declared, git) -> RunReport:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    if only is None:  # a whole series records its substitutes afresh (single chapters add to the record)
        reset_substitutes(out)
        keep_previous(out)  # the finished record it replaces stays readable (chapter 00 quotes its times)
    previous = read_run_json(out) if only is not None else None
    report = RunReport(run=run_name, path=out)
    meta = {
        "run": run_name, "fast": fast, "parameters": params, "git": git,
        "versions": env.versions(), "device": env.device_info(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "notebooks": report.notebooks,
    }
    series_info = ([b.name for b in series], {b.name: sorted(declared[b]) for b in series})
    child_env = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TEXTSCD_FAST": "1" if fast else "0", HOME_ENV: str(home()), RESULTS_ENV: str(out.parent)}
    old_env = {k: os.environ.get(k) for k in child_env}
    os.environ.update(child_env)  # the kernel inherits this process's environment
    old_term = _on_sigterm()
    t_all = time.perf_counter()
    try:
        for book in books:
            mine = {k: v for k, v in params.items() if k in declared[book]}
            mine.update({"RUN": run_name, "FAST": fast})
            target = out / "executed" / book.name
            entry = {"notebook": book.name, "parameters": mine, "status": "running", "started_at": time.time()}
            report.notebooks.append(entry)
            write_run_json(out, meta, previous, series_info)  # "running" is visible while it runs
            log.info("running %s", book.name)
            t0 = time.perf_counter()
            try:
                papermill.execute_notebook(str(book), str(target), parameters=mine, kernel_name=kernel_name,
                                           cwd=str(book.parent), progress_bar=False, log_output=False,
                                           extra_arguments=KERNEL_QUIET)
                # one line per progress bar, no import noise, paths relative to TEXTSCD_HOME (course/tidy.py)
                tidy.tidy_file(target, roots=[str(home()), str(out.parent.parent), str(PACKAGE_CHECKOUT)])
            except PapermillExecutionError as e:
                entry.update(status="failed", seconds=round(time.perf_counter() - t0, 2),
                             error=f"cell {e.exec_count}: {e.ename}: {e.evalue}")
                report.status = "failed"
                raise RunError(f"{book.name} failed in cell {e.exec_count} ({e.ename}: {e.evalue}); "
                               f"executed copy with the traceback: {target}") from None
            except (KeyboardInterrupt, Terminated) as e:
                entry.update(status="interrupted", seconds=round(time.perf_counter() - t0, 2),
                             error="SIGTERM" if isinstance(e, Terminated) else "KeyboardInterrupt (Ctrl-C)")
                report.status = "interrupted"
                raise KeyboardInterrupt(f"{book.name} interrupted; run.json records it") from None
            except Exception as e:  # noqa: BLE001 - a dead kernel, an unreadable notebook: named, recorded
                entry.update(status="failed", seconds=round(time.perf_counter() - t0, 2),
                             error=f"{type(e).__name__}: {e}")
                report.status = "failed"
                raise RunError(f"{book.name} failed ({type(e).__name__}: {e})") from e
            entry.update(status="ok", seconds=round(time.perf_counter() - t0, 2))
            meta["total_seconds"] = round(time.perf_counter() - t_all, 2)
            write_run_json(out, meta, previous, series_info)
        report.status = "ok"
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        meta["status"] = report.status if report.status != "running" else "failed"
        meta["total_seconds"] = round(time.perf_counter() - t_all, 2)
        write_run_json(out, meta, previous, series_info)
    return report


def _on_sigterm():
    """Turn SIGTERM into :class:`Terminated` while the series runs (main thread only); returns the old handler."""
    def handler(signum, frame):
        raise Terminated()
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        return None


def load_params_file(path: str | Path) -> dict:
    import yaml

    from textscd_lib.course.runrecord import preset_file

    path = Path(path) if Path(path).exists() else preset_file(str(path)) or Path(path)  # a bare name: a preset
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise RunInputError(f"{path}: cannot read parameters ({e})") from e
    if not isinstance(data, dict):
        raise RunInputError(f"{path}: parameters must be a mapping NAME: value, got {type(data).__name__}")
    return data
