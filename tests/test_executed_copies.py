"""Executed copies a person can read, and run.json naming the machine (chapter 00; course/tidy.py, course/env.py)."""

from __future__ import annotations

import json

import torch

from textscd_lib.course import env, tidy


def _bar_chunks(desc: str, steps: int) -> list[str]:
    """What tqdm(leave=False) sends a notebook for one epoch: a redraw per step, then a wipe."""
    states = [f"\r{desc}: {100 * k // steps:3d}%| {k}/{steps} [loss={1 / (k + 1):.4f}]" for k in range(steps + 1)]
    return states + ["\r" + " " * 60, "\r"]


def test_training_bar_redraws_become_one_line_per_epoch():
    chunks = _bar_chunks("textscd 1/2", 30) + _bar_chunks("textscd 2/2", 30)
    outputs = [{"output_type": "stream", "name": "stderr", "text": c} for c in chunks]
    outputs.insert(0, {"output_type": "stream", "name": "stdout", "text": "training textscd\n"})
    tidied = tidy.tidy_outputs(outputs)
    assert [o["name"] for o in tidied] == ["stdout", "stderr"]
    lines = tidied[1]["text"].splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("textscd 1/2: 100%| 30/30") and lines[1].startswith("textscd 2/2: 100%| 30/30")
    assert tidied[0]["text"] == "training textscd\n"


def test_ipywidgets_warning_is_dropped_and_real_text_kept():
    text = ("/x/tqdm/auto.py:21: TqdmWarning: IProgress not found. Please update jupyter and ipywidgets.\n"
            "  from .autonotebook import tqdm as notebook_tqdm\n"
            "SeK 12.3\n\nF_scd 45.6\n")
    assert tidy.tidy_text(text) == "SeK 12.3\n\nF_scd 45.6\n"


def test_tidy_notebook_leaves_results_and_errors_alone(tmp_path):
    result = {"output_type": "execute_result", "data": {"text/plain": "'a\\rb'"}, "metadata": {}, "execution_count": 1}
    error = {"output_type": "error", "ename": "ValueError", "evalue": "x", "traceback": ["\rtb"]}
    nb = {"cells": [{"cell_type": "code", "source": "", "metadata": {}, "outputs": [result, error]},
                    {"cell_type": "markdown", "source": "a\rb", "metadata": {}}], "metadata": {}, "nbformat": 4,
          "nbformat_minor": 5}
    path = tmp_path / "x.ipynb"
    path.write_text(json.dumps(nb))
    tidy.tidy_file(path)
    assert json.loads(path.read_text()) == nb


def test_cpu_model_is_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz\n")
    assert env.cpu_model(info) == "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz"
    assert env.cpu_model(tmp_path / "missing") != ""  # falls back to what platform knows


def test_device_info_records_cpu_model_gpus_and_torch_threads():
    info = env.device_info()
    assert info["cpu_model"] == env.cpu_model()
    assert info["torch_threads"] == torch.get_num_threads()
    assert info["gpus"] == [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    assert info["cpu_model"] in info["device"] or info["cuda"]


def test_paths_of_the_machine_that_ran_the_series_are_printed_relative(tmp_path):
    home = tmp_path / "ann" / "textscd"
    stream = {"output_type": "stream", "name": "stdout",
              "text": f"read {home}/results/demo/predictions/val and {home}/data/mini-second/val\n"}
    shown = {"output_type": "display_data", "metadata": {},
             "data": {"text/plain": f"'{home}/results/demo/errors'", "image/png": f"{home}/not-text"}}
    error = {"output_type": "error", "ename": "OSError", "evalue": f"{home}/x", "traceback": [f"{home}/x"]}
    nb = {"cells": [{"cell_type": "code", "source": f"print('{home}')", "metadata": {},
                     "outputs": [stream, shown, error]}],
          "metadata": {"papermill": {"input_path": f"{home}/notebooks/06.ipynb", "output_path": "/elsewhere/x"}}}
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(nb))
    tidy.tidy_file(path, roots=[str(home), "/", ""])
    tidied = json.loads(path.read_text())
    assert tidied["metadata"]["papermill"] == {"input_path": "notebooks/06.ipynb", "output_path": "/elsewhere/x"}
    out = tidied["cells"][0]
    assert out["outputs"][0]["text"] == "read results/demo/predictions/val and data/mini-second/val\n"
    assert out["outputs"][1]["data"]["text/plain"] == "'results/demo/errors'"
    assert out["outputs"][1]["data"]["image/png"] == f"{home}/not-text"      # not text: untouched
    assert out["outputs"][2]["traceback"] == [f"{home}/x"]                   # errors stay as executed
    assert out["source"] == f"print('{home}')"                               # code unchanged
