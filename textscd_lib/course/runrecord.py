"""``run.json``: the record of a series, and its status (``textscd run``; see docs/robustness.md).

A series is ``"ok"`` only when every chapter has run since the parameters it declares last changed; otherwise
``"interrupted"`` / ``"failed"`` (naming the ``chapter``) or ``"incomplete"`` (listing the chapters ``missing``
and ``stale``). :func:`write_run_json` merges an ``--only`` rerun into the series' record.
"""

from __future__ import annotations

import json
from pathlib import Path

from textscd_lib.common.io import atomic_write_json
from textscd_lib.common.runs import read_effective, read_substitutes, read_warnings

# Set by the runner itself, declared by every notebook.
RUNNER_PARAMETERS = ("RUN", "FAST")


class RunError(RuntimeError):
    """A run that cannot start (bad parameters) or a notebook that failed."""


def read_run_json(out: Path, name: str = "run.json") -> dict | None:
    """``out/name`` (the run's record, or the kept :data:`PREVIOUS` one) read, None when it is not there."""
    f = out / name
    if not f.exists():
        return None
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise RunError(f"{f}: not valid JSON ({e}); delete it or run the whole series again") from e


_ABSENT = "<default>"


def series_status(notebooks: list[dict], series: list[str], declared: dict[str, list[str]]) -> dict:
    """``status`` of a series from its chapters' entries: "interrupted" / "failed" when a chapter is, else
    "incomplete" when a chapter is ``missing`` (never ran) or ``stale`` (ran with a value of a parameter it
    declares that a later execution changed), else "ok"."""
    by_name = {e["notebook"]: e for e in notebooks}
    for bad in ("interrupted", "failed", "running"):
        hit = [e["notebook"] for e in notebooks if e.get("status") == bad]
        if hit:
            return {"status": "interrupted" if bad == "running" else bad, "chapter": hit[0]}
    current: dict[str, object] = {}
    for e in sorted(notebooks, key=lambda e: e.get("started_at", 0)):
        for name in [*declared.get(e["notebook"], []), *RUNNER_PARAMETERS]:
            current[name] = e.get("parameters", {}).get(name, _ABSENT)
    stale = [e["notebook"] for e in notebooks
             if any(e.get("parameters", {}).get(n, _ABSENT) != current.get(n, _ABSENT)
                    for n in [*declared.get(e["notebook"], []), *RUNNER_PARAMETERS])]
    missing = [b for b in series if b not in by_name]
    if missing or stale:
        return {"status": "incomplete", "missing": missing, "stale": stale}
    return {"status": "ok"}


def write_run_json(out: Path, meta: dict, previous: dict | None, series_info: tuple | None = None) -> None:
    """``run.json``. A whole series writes its own record. ``--only`` re-executes some chapters of an existing
    run: their entries replace the old ones, the other chapters' entries and the series' parameters stay, and
    the re-execution is listed under ``reruns`` (its parameters, commit, time). The status comes from
    :func:`series_status` over every chapter of the series."""
    series, declared = series_info or ([e["notebook"] for e in meta["notebooks"]], {})
    meta = {**meta, "substitutes": read_substitutes(out), "warnings": read_warnings(out),
            "effective": read_effective(out)}
    if previous is None:
        notebooks, record = meta["notebooks"], meta
    else:
        redone = {e["notebook"] for e in meta["notebooks"]}
        kept = [e for e in previous.get("notebooks", []) if e.get("notebook") not in redone]
        rerun = {k: meta[k] for k in ("parameters", "git", "versions", "device", "started", "status",
                                      "total_seconds") if k in meta}
        rerun["notebooks"] = sorted(redone)
        reruns = [r for r in previous.get("reruns", []) if r.get("started") != rerun["started"]] + [rerun]
        notebooks = sorted(kept + meta["notebooks"], key=lambda e: e["notebook"])
        record = {**previous, "notebooks": notebooks, "substitutes": meta["substitutes"],
                  "warnings": meta["warnings"], "effective": meta["effective"], "reruns": reruns}
    for k in ("missing", "stale", "chapter"):
        record.pop(k, None)
    if meta.get("status", "running") == "running":
        record["status"] = "running"  # a chapter is executing now (a killed runner leaves this: see below)
    else:
        record.update(series_status(notebooks, series, declared))
    atomic_write_json(out / "run.json", record)


# The two-hour lab route (the preset ``textscd run --params lab``, textscd_lib/course/presets/lab.yaml): what a
# student does with each chapter, and how the lab's run time of a chapter compares with the demo's.
LAB_EPOCHS, DEMO_EPOCHS = 2, 6
LAB_ROUTE = {
    "00": "read + run",
    "01": "read + run",
    "02": "read + run",
    "03": "read + run",
    "04": "read + run",
    "05": f"run short (EPOCHS={LAB_EPOCHS}), or read the committed executed copy",
    "06": "run on the committed 30-epoch predictions (results/cpu-30ep)",
    "07": "run on the committed 30-epoch predictions (results/cpu-30ep)",
    "08": "appendix: read (runs in the lab preset too)",
}


def chapter_times(run_json: str | Path | dict) -> dict[str, float]:
    """Seconds each chapter took in a run, ``{"00": 4.1, ...}``, from the run's ``run.json`` (its path or the
    loaded record). The course quotes a chapter's time from a committed run's record, never typed by hand."""
    if isinstance(run_json, dict):
        record = run_json
    else:
        path = Path(run_json)
        record = read_run_json(path.parent) if path.name == "run.json" else read_run_json(path)
        if record is None:
            raise RunError(f"{path}: no run.json; run the series first (textscd run)")
    times = {e["notebook"][:2]: float(e["seconds"]) for e in record.get("notebooks", []) if "seconds" in e}
    if not times:
        raise RunError(f"{run_json if not isinstance(run_json, dict) else 'run.json'}: no chapter has a time")
    return times


PREVIOUS = "previous-run.json"   # a run folder's last finished record, kept when a whole series starts again


def _finished(record: dict | None) -> bool:
    entries = (record or {}).get("notebooks", [])
    return bool(record) and record.get("status") == "ok" and bool(entries) and all("seconds" in e for e in entries)


def keep_previous(out: Path) -> None:
    """Before a whole series rewrites ``out/run.json``: keep the finished record there as :data:`PREVIOUS`
    (a record not finished, or none, leaves the kept one as it is)."""
    record = read_run_json(out)
    if _finished(record):
        atomic_write_json(out / PREVIOUS, record)


def finished_record(run_path: str | Path, previous: bool = True) -> dict | None:
    """The run's record when the run finished (status ok, a time for every chapter it ran). A run still in
    progress - the very run that asks, when ``make demo`` rewrites ``results/demo`` - has no times yet: then
    (``previous``) the run folder's previous finished record (:data:`PREVIOUS`, with ``"record_file"`` naming it),
    else None."""
    record = read_run_json(Path(run_path))
    if _finished(record):
        return record
    old = read_run_json(Path(run_path), PREVIOUS) if previous else None
    return {**old, "record_file": PREVIOUS} if _finished(old) else None


def lab_route(times: dict[str, float], measured: dict[str, float] | None = None) -> list[dict]:
    """One row per chapter: the demo run's seconds, the lab route's step, the lab run's expected seconds
    (chapter 05 scaled by epochs, LAB_EPOCHS / DEMO_EPOCHS; the others as in the demo, an upper bound for 06-07,
    which read committed predictions instead of this run's) and, given a lab run's :func:`chapter_times`
    (``measured``), what it took."""
    rows = []
    for chapter, route in LAB_ROUTE.items():
        demo = times.get(chapter)
        lab = None if demo is None else demo * (LAB_EPOCHS / DEMO_EPOCHS if chapter == "05" else 1.0)
        row = {"chapter": chapter, "demo s": demo, "lab s (expected)": lab, "lab route": route}
        if measured is not None:
            row["lab s (measured)"] = measured.get(chapter)
        rows.append(row)
    return rows


PRESETS = Path(__file__).parent / "presets"


def preset_file(name: str) -> Path | None:
    """``textscd_lib/course/presets/<name>.yaml`` for a bare preset name (``textscd run --params lab``); None when
    ``name`` is a path or no preset has that name, so that the caller reads it as a file."""
    if not name or Path(name).name != name or Path(name).suffix:
        return None
    f = PRESETS / f"{name}.yaml"
    return f if f.is_file() else None


def preset_names() -> list[str]:
    """The presets shipped with the package."""
    return sorted(p.stem for p in PRESETS.glob("*.yaml"))
