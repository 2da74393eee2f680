"""Executed copies a person can read (chapter 00, ``results/<run>/executed/``).

A progress bar in a notebook run by papermill arrives as hundreds of stream chunks, each one ``\\r`` plus the
bar's next state; a terminal overwrites the line, a saved notebook keeps every chunk (one 30-epoch training cell
held ≈690 KB of them). :func:`tidy_notebook` does what the terminal would have shown: consecutive stream
outputs of one cell are merged, every line keeps only its last non-blank state (a bar closed with
``leave=False`` keeps its final state, so one line per epoch remains), and known import-time noise (tqdm's
"IProgress not found" warning when ipywidgets is absent) is dropped. :func:`relative_paths` removes the folders
of the machine that ran the series from printed paths (``/home/ann/textscd/results/demo/x`` reads
``results/demo/x``: relative to ``TEXTSCD_HOME``, or to the repository for committed runs), so an executed copy
shows no user's or machine's folders. Nothing else changes: code, figures and errors stay as executed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from textscd_lib.common.io import atomic_write_text

# lines that say nothing about the course: (pattern of the line, number of lines that follow it and belong to it)
NOISE = (
    (re.compile(r".*TqdmWarning: IProgress not found"), 1),  # + the source line python prints under a warning
    (re.compile(r".*Kernel is running over TCP without encryption"), 0),
)


def collapse_line(line: str) -> list[str]:
    """One line as a terminal would leave it: the states between carriage returns overwrite each other; a
    state followed by a wipe (a blank state: a bar closed with ``leave=False``) is kept as a line of its own,
    so a bar redrawn once per step becomes one line per epoch."""
    shown, last = [], ""
    for state in line.split("\r"):
        if state.strip():
            last = state.rstrip()
        elif last:  # wiped: what stood there is the final state of that bar
            shown.append(last)
            last = ""
    return shown + ([last] if last else [])


def tidy_text(text: str) -> str:
    """A stream's text with progress-bar redraws collapsed and known noise lines removed."""
    lines, out, skip = text.split("\n"), [], 0
    for i, raw in enumerate(lines):
        if skip:
            skip -= 1
            continue
        shown = collapse_line(raw)
        noise = next((n for pat, n in NOISE if shown and pat.match(shown[0])), None)
        if noise is not None:
            skip = noise
            continue
        if shown:
            out += shown
        elif raw == "" and i < len(lines) - 1:  # a real empty line (not one a bar wiped out)
            out.append("")
    return "\n".join(out) + ("\n" if out and text.endswith(("\n", "\r")) else "")


def tidy_outputs(outputs: list[dict]) -> list[dict]:
    """Merge consecutive stream outputs of the same stream and tidy their text; other outputs unchanged."""
    merged: list[dict] = []
    for o in outputs:
        if o.get("output_type") == "stream":
            text = "".join(o.get("text", ""))
            if merged and merged[-1].get("output_type") == "stream" and merged[-1]["name"] == o["name"]:
                merged[-1]["text"] += text
                continue
            o = {**o, "text": text}
        merged.append(o)
    tidied = []
    for o in merged:
        if o.get("output_type") == "stream":
            o["text"] = tidy_text(o["text"])
            if not o["text"].strip():
                continue
        tidied.append(o)
    return tidied


TEXT_KEYS = ("text/plain", "text/markdown", "text/html")


def _strip_roots(text: str, roots: list[str]) -> str:
    for root in roots:
        text = text.replace(root.rstrip("/") + "/", "")
    return text


def relative_paths(nb: dict, roots: list[str]) -> dict:
    """Every printed path under one of ``roots`` (absolute folders, longest first) made relative to it, in stream
    text and the text forms of results and displays; errors keep their traceback as executed. In place."""
    roots = sorted({str(r) for r in roots if str(r) not in ("", "/")}, key=len, reverse=True)
    pm = nb.get("metadata", {}).get("papermill", {})
    for key in ("input_path", "output_path"):  # papermill's record of where it read and wrote the notebook
        if isinstance(pm.get(key), str):
            pm[key] = _strip_roots(pm[key], roots)
    for cell in nb.get("cells", []):
        for o in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            if o.get("output_type") == "stream":
                o["text"] = _strip_roots("".join(o.get("text", "")), roots)
            for key in TEXT_KEYS if o.get("output_type") in ("execute_result", "display_data") else ():
                if key in o.get("data", {}):
                    o["data"][key] = _strip_roots("".join(o["data"][key]), roots)
    return nb


def tidy_notebook(nb: dict) -> dict:
    """Every code cell's outputs tidied (:func:`tidy_outputs`); the notebook is changed in place and returned."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code" and cell.get("outputs"):
            cell["outputs"] = tidy_outputs(cell["outputs"])
    return nb


def tidy_file(path: str | Path, roots: list[str] | None = None) -> None:
    """Tidy an executed notebook file in place, atomically (the runner calls it after each chapter), and make
    the paths under ``roots`` relative (:func:`relative_paths`)."""
    path = Path(path)
    nb = tidy_notebook(json.loads(path.read_text(encoding="utf-8")))
    atomic_write_text(path, json.dumps(relative_paths(nb, roots or []), indent=1, ensure_ascii=False) + "\n")
