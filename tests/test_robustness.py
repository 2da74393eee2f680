"""Nothing lost silently (issue 17): text reaches the model or the run stops, run records tell the truth,
one writer per run folder, a decoded cache that verifies itself, validation warnings. See docs/robustness.md."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from textscd_lib.common import lock
from textscd_lib.common.runs import read_warnings, record_substitute, reset_substitutes, substitute_lines
from textscd_lib.text.features import (
    TextFeaturesMismatch,
    build_text_features,
    check_text_features,
    record_text_check,
)
from textscd_lib.text.store import CaptionStore, load_captions

TRAIN = [f"train_{i:03d}" for i in range(40)]


class WordEncoder:
    """A stand-in frozen text encoder: one token per word, a window of 6 tokens, features = word counts."""

    name, key, context_length, dim = "words", "words:test:L6", 6, 4

    def encode(self, texts):
        f = torch.tensor([[[len(t.split()), len(t), 1.0, 0.0]] * self.context_length for t in texts])
        m = torch.tensor([[i < min(len(t.split()), self.context_length) for i in range(self.context_length)]
                          for t in texts])
        return f, m

    def truncated(self, text):
        return text.split()[self.context_length:]


def _features(tmp_path, captions: dict[str, str]):
    return build_text_features(WordEncoder(), captions, tmp_path / "feats.pt")


# ------------------------------------------------------------------------------------------ text checks
def test_features_built_for_another_dataset_refuse_with_the_numbers_and_the_fix(tmp_path):
    other = {f"other_{i:03d}": "a new building on bare ground" for i in range(40)}
    tf = _features(tmp_path, other)
    assert tf.missing(TRAIN) == TRAIN
    with pytest.raises(TextFeaturesMismatch) as e:
        check_text_features(tf, TRAIN, split="train")
    msg = str(e.value)
    assert str(tmp_path / "feats.pt") in msg and "40 of 40 pairs have no caption" in msg
    assert "'train_000'" in msg and "--allow-empty-text" in msg and "textscd caption" in msg


def test_all_empty_captions_refuse_unless_empty_text_is_allowed_and_then_it_is_recorded(tmp_path):
    tf = _features(tmp_path, {n: "" for n in TRAIN})
    with pytest.raises(TextFeaturesMismatch, match="40 of 40 pairs have an empty caption"):
        check_text_features(tf, TRAIN)
    chk = check_text_features(tf, TRAIN, allow_empty=True)
    line = record_text_check(tmp_path, "text_textscd", [chk])
    assert "40 of 40 pairs have an empty caption (allowed: empty text on purpose)" in line
    assert read_warnings(tmp_path)["text_textscd"]["checks"][0]["allow_empty"] is True


def test_a_few_missing_and_cut_captions_are_a_recorded_warning_that_the_chapters_show(tmp_path, caplog):
    caps = {n: "new building" for n in TRAIN[1:]}               # train_000: no caption (1 of 40 = 2.5 %)
    caps["train_005"] = "one two three four five six seven eight"  # 8 words in a 6-token window
    caps["val_999"] = "a pair that is not read"
    tf = _features(tmp_path, caps)
    chk = check_text_features(tf, TRAIN)
    assert chk.unknown == ["train_000"] and chk.cut == {"train_005": 2} and chk.extra == ["val_999"]
    record_substitute(tmp_path, "data", "mini-SECOND", "SECOND", "offline")
    with caplog.at_level(logging.INFO):
        line = record_text_check(tmp_path, "text_textscd", [chk])
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(logging.INFO, line)]  # said once (the CLI)
    shown = substitute_lines(tmp_path)
    assert shown[0].startswith("OFFLINE SUBSTITUTE [data]")
    assert shown[1].startswith("WARNING [text_textscd]") and "1 of 40 pairs have no caption" in shown[1]
    assert "1 of 40 pairs have a caption cut by the token window (up to 2 tokens lost)" in shown[1]
    assert "'val_999'" in shown[1]
    # the problem fixed: the warning is cleared, not left behind; a whole series starts afresh
    record_text_check(tmp_path, "text_textscd", [check_text_features(_features(tmp_path, {n: "x" for n in TRAIN}),
                                                                     TRAIN)])
    assert "text_textscd" not in read_warnings(tmp_path)
    record_text_check(tmp_path, "text_textscd", [chk])
    reset_substitutes(tmp_path)
    assert substitute_lines(tmp_path) == []


def test_more_than_five_percent_of_pairs_without_caption_refuse(tmp_path):
    caps = {n: "new building" for n in TRAIN[3:]}  # 3 of 40 = 7.5 %
    with pytest.raises(TextFeaturesMismatch, match=r"3 of 40 pairs have no caption"):
        check_text_features(_features(tmp_path, caps), TRAIN)


def test_a_caption_that_is_a_list_is_an_error_naming_the_file_and_line(tmp_path):
    store = CaptionStore(tmp_path / "c.jsonl")
    store.write_all([{"pair": "a", "status": "ok", "caption": "fine"},
                     {"pair": "b", "status": "ok", "caption": ["not", "a", "string"]}])
    with pytest.raises(ValueError, match=r"c\.jsonl:2: the caption of pair 'b' is a list"):
        load_captions(store.path)


# ------------------------------------------------------------------------------------------ the lock
HOLD = ("import sys, time; from textscd_lib.common.lock import run_lock\n"
        "with run_lock(sys.argv[1], 'textscd train --run clash'):\n"
        "    print('held', flush=True); time.sleep(60)\n")


def test_a_second_writer_refuses_naming_the_holders_pid_and_command(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != lock.TOKEN_ENV}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(lock.LockHeld, match=rf"pid {holder.pid} .*'textscd train --run clash'"):
            with lock.run_lock(tmp_path, "textscd train --run clash"):
                pass
    finally:
        holder.kill()
        holder.wait()
    # the holder was killed (no clean-up ran): its lock is stale and is taken over, saying so
    assert lock.read_lock(tmp_path)["pid"] == holder.pid


def test_a_stale_lock_is_taken_over_and_said_and_the_holders_children_may_write(tmp_path, caplog):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    (tmp_path / lock.LOCK_NAME).write_text(json.dumps({"pid": int(dead), "host": os.uname().nodename,
                                                       "command": "textscd run", "token": "old"}))
    with caplog.at_level(logging.WARNING), lock.run_lock(tmp_path, "textscd run") as token:
        assert f"stale lock left by pid {dead}" in caplog.text
        assert lock.read_lock(tmp_path)["token"] == token
        with lock.run_lock(tmp_path, "nested trainer call"):  # the same job (a notebook's trainer) enters
            pass
        assert lock.read_lock(tmp_path)["token"] == token  # ... and leaves the lock to its holder
        child = subprocess.run([sys.executable, "-c", HOLD.replace("time.sleep(60)", "pass"), str(tmp_path)],
                               capture_output=True, text=True)  # a kernel inherits the token
        assert child.returncode == 0 and "held" in child.stdout, child.stderr
    assert lock.read_lock(tmp_path) is None and lock.TOKEN_ENV not in os.environ


# ------------------------------------------------------------------------------------------ the runner
def _book(folder: Path, name: str, params: str, body: str) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / name)


def _series(tmp_path: Path) -> Path:
    books = tmp_path / "nb"
    _book(books, "01_a.ipynb", "FAST = True\nRUN = 'x'\nEPOCHS: int | None = None",
          "from textscd_lib.common.runs import record_effective, run_dir\n"
          "record_effective(run_dir(RUN), 'train', {'epochs': 1 if FAST else EPOCHS})")
    _book(books, "02_sleep.ipynb", "FAST = True\nRUN = 'x'\nSLEEP = 0.0",
          "import pathlib, time\npathlib.Path(RUN + '.started').write_text('1')\ntime.sleep(SLEEP)")
    _book(books, "03_c.ipynb", "FAST = True\nRUN = 'x'\nEPOCHS = 1\nLR = 0.1", "pass")
    return books


def test_sigint_during_a_series_leaves_run_json_interrupted_and_a_rerun_keeps_the_rest_missing(tmp_path):
    from textscd_lib.course import runner

    books, res = _series(tmp_path), tmp_path / "res"
    code = ("import sys; from textscd_lib.course import runner\n"
            f"runner.run_series({{'SLEEP': 60.0}}, run_name='t', fast=True, results_root={str(res)!r}, "
            f"notebooks_dir=__import__('pathlib').Path({str(books)!r}))")
    env = {k: v for k, v in os.environ.items() if k != lock.TOKEN_ENV}
    # SIGINT back to its default in the child: a shell's background job (`make test &`) starts with SIGINT
    # ignored, and Python then never raises KeyboardInterrupt
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    started = books / "t.started"
    deadline = time.time() + 120
    while not started.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert started.exists(), proc.stderr.read() if proc.poll() is not None else "chapter 02 never started"
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    meta = json.loads((res / "t/run.json").read_text())
    assert meta["status"] == "interrupted" and meta["chapter"] == "02_sleep.ipynb"
    assert [(e["notebook"], e["status"]) for e in meta["notebooks"]] == [("01_a.ipynb", "ok"),
                                                                         ("02_sleep.ipynb", "interrupted")]
    assert not (res / "t" / lock.LOCK_NAME).exists()
    # rerunning chapter 02 alone does not make the series ok: chapter 03 never ran
    rep = runner.run_series({}, run_name="t", fast=True, results_root=res, notebooks_dir=books, only=["02"])
    meta = json.loads((res / "t/run.json").read_text())
    assert rep.status == "ok" and meta["status"] == "incomplete" and meta["missing"] == ["03_c.ipynb"]
    runner.run_series({}, run_name="t", fast=True, results_root=res, notebooks_dir=books, only=["03"])
    assert json.loads((res / "t/run.json").read_text())["status"] == "ok"


def test_a_rerun_that_changes_a_parameter_marks_the_other_chapters_declaring_it_stale(tmp_path):
    from textscd_lib.course import runner

    books, res = _series(tmp_path), tmp_path / "res"
    runner.run_series({"EPOCHS": 3}, run_name="t", fast=True, results_root=res, notebooks_dir=books)
    meta = json.loads((res / "t/run.json").read_text())
    assert meta["status"] == "ok" and meta["parameters"] == {"EPOCHS": 3}
    assert meta["effective"] == {"train": {"epochs": 1}}  # what FAST made of EPOCHS, next to what was given
    runner.run_series({"EPOCHS": 5}, run_name="t", fast=True, results_root=res, notebooks_dir=books, only=["03"])
    meta = json.loads((res / "t/run.json").read_text())
    assert meta["status"] == "incomplete" and meta["stale"] == ["01_a.ipynb"] and meta["missing"] == []


def test_a_whole_series_run_again_keeps_the_finished_record_it_replaces(tmp_path):
    from textscd_lib.course import runner
    from textscd_lib.course.runrecord import PREVIOUS, finished_record

    books, res = _series(tmp_path), tmp_path / "res"
    runner.run_series({"EPOCHS": 3}, run_name="t", fast=True, results_root=res, notebooks_dir=books, only=["01"])
    assert not (res / "t" / PREVIOUS).exists()              # an --only rerun of an unfinished run keeps nothing
    runner.run_series({"EPOCHS": 3}, run_name="t", fast=True, results_root=res, notebooks_dir=books)
    first = json.loads((res / "t/run.json").read_text())
    runner.run_series({"EPOCHS": 4}, run_name="t", fast=True, results_root=res, notebooks_dir=books)
    kept = json.loads((res / "t" / PREVIOUS).read_text())
    assert kept == first and kept["parameters"] == {"EPOCHS": 3}
    assert finished_record(res / "t")["parameters"] == {"EPOCHS": 4}   # the new record, once it has finished


@pytest.mark.parametrize("params, words", [({"EPOCHS": "ten"}, ["EPOCHS", "'ten' is a str", "int or None"]),
                                           ({"LR": "0.1"}, ["LR", "is a str", "float"]),
                                           ({"SLEEP": True}, ["SLEEP", "True is a bool"])])
def test_a_parameter_of_the_wrong_type_is_refused_before_any_notebook_runs(tmp_path, params, words):
    from textscd_lib.course import runner

    books, res = _series(tmp_path), tmp_path / "res"
    with pytest.raises(runner.RunError) as e:
        runner.run_series(params, run_name="t", fast=True, results_root=res, notebooks_dir=books)
    assert all(w in str(e.value) for w in words), str(e.value)
    assert not (res / "t/run.json").exists()
    runner.run_series({"EPOCHS": 2, "LR": 1, "SLEEP": 0}, run_name="t", fast=True, results_root=res,
                      notebooks_dir=books)  # an int where a float is declared is fine


# ------------------------------------------------------------------------------------------ data
def _layout(tmp_path: Path, n: int = 3) -> Path:
    from PIL import Image

    from textscd_lib.data.second import COLORS

    rng = np.random.default_rng(0)
    for i in range(n):
        l1 = np.zeros((8, 8), np.uint8)
        l1[:4] = 2
        l2 = np.where(l1 > 0, 5, 0).astype(np.uint8)
        if i == 0:
            l2[0, :3] = 2  # three changed pixels whose class stays 'ground'
        for folder, arr in (("im1", rng.integers(0, 256, (8, 8, 3))), ("im2", rng.integers(0, 256, (8, 8, 3))),
                            ("label1", COLORS[l1]), ("label2", COLORS[l2])):
            (tmp_path / "d" / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.asarray(arr, np.uint8)).save(tmp_path / "d" / folder / f"p{i}.png")
    return tmp_path / "d"


def test_a_truncated_decoded_cache_is_named_and_rebuilt(tmp_path, caplog):
    from textscd_lib.data.dataset import DecodedCache

    root = _layout(tmp_path)
    first = DecodedCache(root, None)
    want = np.array(first.images)
    images = first._file("images")
    del first
    images.write_bytes(images.read_bytes()[:200])  # a disk that filled up, a copy cut short
    with caplog.at_level(logging.WARNING, logger="textscd_lib.data.dataset"):
        again = DecodedCache(root, None)
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lines) == 1 and str(again.stem) in lines[0] and "rebuilding" in lines[0]
    assert again.built and np.array_equal(np.array(again.images), want)


def test_changed_pixels_with_the_same_class_on_both_dates_are_a_counted_warning(tmp_path):
    from textscd_lib.data.validate import validate

    rep = validate(_layout(tmp_path))
    assert rep.ok and rep.summary["warnings"] == 1
    assert len(rep.warnings) == 1 and "p0.png" in rep.warnings[0] and "3 of 32 changed pixels" in rep.warnings[0]
    assert rep.warnings[0] in rep.format()


def test_a_text_file_named_png_is_not_an_image_rather_than_a_missing_twin(tmp_path):
    from textscd_lib.data.second import SecondFormatError, read_image
    from textscd_lib.data.validate import validate

    root = _layout(tmp_path)
    notes = root / "im1" / "notes.png"
    notes.write_text("remember to check the labels\n")
    rep = validate(root)
    assert rep.problems == [f"{notes}: not an image (its content is no PNG/JPEG/TIFF/BMP, whatever its name says);"
                            f" remove it from {notes.parent}"]
    with pytest.raises(SecondFormatError, match=r"notes\.png: not an image"):
        read_image(notes)


# ------------------------------------------------------------------------------------------ the trainer
def _tiny_inputs(tmp_path, run: str):
    """The trainer's inputs without a text encoder: the FAST mini-SECOND, and a config for TextSCD."""
    from dataclasses import replace

    from textscd_lib.course.pipeline import prepare_inputs
    from textscd_lib.engine.config import TrainConfig

    cfg = TrainConfig(run=run, results_root=str(tmp_path / "results"), model="baseline", epochs=1, batch_size=4,
                      width=16, max_steps_per_epoch=1, image_weights=None, device="cpu", seed=3)
    return replace(prepare_inputs(cfg, fast=True), model="textscd")


def _names(root) -> list[str]:
    from textscd_lib.data.second import find_pairs

    return [p.name for s in ("train", "val") for p in find_pairs(root, s)]


def test_training_on_text_features_of_another_dataset_refuses_before_it_trains(tmp_path):
    from dataclasses import replace

    from textscd_lib.engine.trainer import train

    cfg = _tiny_inputs(tmp_path, "other")
    feats = build_text_features(WordEncoder(), {f"elsewhere_{n}": "a new road" for n in _names(cfg.data_root)},
                                tmp_path / "other.pt")
    with pytest.raises(TextFeaturesMismatch, match=r"no caption in the features"):
        train(replace(cfg, text_features=str(feats.path)))
    assert not list((tmp_path / "results/other/checkpoints").glob("*/last.pt"))
    assert not (tmp_path / "results/other" / lock.LOCK_NAME).exists()  # the lock went with the refusal


def test_empty_text_trains_only_when_allowed_and_the_run_records_it(tmp_path):
    from dataclasses import replace

    from textscd_lib.engine.trainer import train

    cfg = _tiny_inputs(tmp_path, "empty")
    feats = build_text_features(WordEncoder(), {n: "" for n in _names(cfg.data_root)}, tmp_path / "empty.pt")
    cfg = replace(cfg, text_features=str(feats.path), captions="none")
    with pytest.raises(TextFeaturesMismatch, match=r"have an empty caption"):
        train(cfg)
    res = train(replace(cfg, allow_empty_text=True))
    assert res["epochs_run"] == 1
    run = tmp_path / "results/empty"
    warning = read_warnings(run)["text_textscd"]
    assert warning["checks"][0]["allow_empty"] is True and "empty text on purpose" in warning["message"]
    assert any(line.startswith("WARNING [text_textscd]") for line in substitute_lines(run))
    assert json.loads((run / "effective.json").read_text())["train_textscd"]["epochs"] == 1
    # predicting with another dataset's features is refused as well
    from textscd_lib.engine.stages import predict_to_folder

    other = build_text_features(WordEncoder(), {"elsewhere": "a road"}, tmp_path / "other.pt")
    with pytest.raises(TextFeaturesMismatch, match=r"no caption in the features"):
        predict_to_folder(res["paths"]["best"], cfg.data_root, tmp_path / "pred", other, split="val", device="cpu")
    assert not (tmp_path / "pred").exists()


def test_a_second_training_into_a_run_folder_in_use_refuses_naming_the_first(tmp_path):
    from dataclasses import replace

    from textscd_lib.engine.trainer import train

    cfg = replace(_tiny_inputs(tmp_path, "clash"), model="baseline")
    env = {k: v for k, v in os.environ.items() if k != lock.TOKEN_ENV}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "results/clash")],
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(lock.LockHeld, match=rf"pid {holder.pid} .*textscd train --run clash"):
            train(cfg)
    finally:
        holder.terminate()
        holder.wait()
    assert not list((tmp_path / "results/clash/checkpoints").glob("*/last.pt"))


def test_captioning_into_a_run_folder_in_use_refuses(tmp_path):
    from textscd_lib.text.captions import caption_dataset

    root = _layout(tmp_path)
    run = tmp_path / "results/busy"
    env = {k: v for k, v in os.environ.items() if k != lock.TOKEN_ENV}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(lock.LockHeld, match=rf"pid {holder.pid}"):
            caption_dataset(root, "empty", run / "captions/empty.jsonl")
    finally:
        holder.terminate()
        holder.wait()
    assert not (run / "captions/empty.jsonl").exists()
    assert caption_dataset(root, "empty", run / "captions/empty.jsonl")["ok"] == 3  # the folder is free again
    assert not (run / lock.LOCK_NAME).exists()
