"""Training refuses what would silently mix or lose work (chapter 05), each in one line with the right exit code:
a resume with another decoder tail or on other data, text features made for another mini-SECOND with the same
pair names, a device that does not exist, a second training into a checkpoint folder in use, a results folder
that cannot be written, ``--val-fraction`` outside (0, 1). A killed checkpoint write leaves no temp file behind."""

from __future__ import annotations

import errno
import json
import logging
import subprocess
import sys

import pytest
import torch

from textscd_lib.cli.main import main
from textscd_lib.data.synthetic import ensure_mini_second, synthesize
from textscd_lib.engine.trainer import TrainConfig, train
from textscd_lib.text.features import TextFeatures, TextFeaturesMismatch, check_features_data

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def data():
    return ensure_mini_second(fast=True)


@pytest.fixture(scope="module")
def other_data(tmp_path_factory, data):
    """Another mini-SECOND with the same pair names (another seed): other scenes, other scene log."""
    params = json.loads((data / "mini_second.json").read_text())["params"]
    out = synthesize(tmp_path_factory.mktemp("other") / "mini", params["pairs"], params["size"], seed=7,
                     ambiguity=params["ambiguity"], val_fraction=params["val_fraction"])
    names = {p.name for p in out.glob("*/im1/*.png")}
    assert names == {p.name for p in data.glob("*/im1/*.png")}
    return out


@pytest.fixture(scope="module")
def features(tmp_path_factory, data):
    """Text features of ``data``'s oracle captions (they record its scene log)."""
    from textscd_lib.engine.stages import make_text_features
    from textscd_lib.text.captions import caption_dataset

    root = tmp_path_factory.mktemp("feat")
    caption_dataset(data, "oracle", root / "caps.jsonl", seed=0)
    make_text_features(root / "caps.jsonl", root / "features.pt", "auto")
    return root / "features.pt"


def tiny(tmp_path, data, run="r", **kw) -> TrainConfig:
    base = dict(run=run, results_root=str(tmp_path), data_root=str(data), model="baseline", epochs=2,
                batch_size=4, width=16, max_steps_per_epoch=1, image_weights=None, device="cpu", seed=0)
    return TrainConfig(**{**base, **kw})


def cli(tmp_path, data, *extra) -> list[str]:
    return ["train", "--run-name", "c", "--results-root", str(tmp_path), "--model", "baseline", "--data-root",
            str(data), "--epochs", "1", "--batch-size", "4", "--width", "16", "--max-steps-per-epoch", "1",
            "--image-weights", "random", "--device", "cpu", *extra]


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if "error" in ln]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_resume_with_another_decoder_tail_is_refused_in_one_line(tmp_path, data):
    train(tiny(tmp_path, data, stop_after=1))
    with pytest.raises(ValueError) as e:
        train(tiny(tmp_path, data, resume=True, tail="narrow"))
    assert "tail='paper' (now 'narrow')" in str(e.value) and "\n" not in str(e.value)


def test_resume_on_another_data_root_is_refused_before_the_run_record_changes(tmp_path, data, other_data, capsys):
    assert main(cli(tmp_path, data, "--epochs", "2", "--stop-after", "1")) == 0
    run_json = {p: p.read_bytes() for p in (tmp_path / "c").rglob("*.json")}
    capsys.readouterr()
    assert main(cli(tmp_path, other_data, "--epochs", "2", "--resume")) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "cannot resume" in line and "data fingerprint" in line and str(other_data) in line
    assert {p: p.read_bytes() for p in (tmp_path / "c").rglob("*.json")} == run_json  # nothing rewritten


def test_text_features_of_another_dataset_with_the_same_pair_names_are_refused(tmp_path, other_data, features):
    with pytest.raises(TextFeaturesMismatch) as e:
        train(tiny(tmp_path, other_data, model="textscd", text_features=str(features)))
    msg = str(e.value)
    tf = TextFeatures.load(features)
    made_for = tf.provenance["data"]["scene_log"]
    assert made_for and f"scene log {made_for}" in msg and str(other_data) in msg and "\n" not in msg
    assert not list((tmp_path / "r").rglob("*.pt"))  # nothing trained


def test_features_that_record_no_data_are_warned_about_once(tmp_path, data, features, caplog):
    tf = TextFeatures.load(features)
    assert check_features_data(tf, data) is None  # made for this data: nothing to say
    tf.provenance = {k: v for k, v in tf.provenance.items() if k not in ("data", "captions_file")}  # an older file
    tf.path = tmp_path / "old-features.pt"
    with caplog.at_level(logging.WARNING):
        first = check_features_data(tf, data)
        check_features_data(tf, data)
    assert first and "do not record the data" in first
    assert sum("do not record the data" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("device", ["bogus", "cuda"])
def test_a_device_that_does_not_exist_is_one_line_exit_2(tmp_path, data, capsys, device):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(cli(tmp_path, data, "--device", device)) == 2
    assert f"device {device!r}" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "c").exists()


def test_a_second_training_into_a_checkpoint_folder_in_use_is_refused_naming_the_holder(tmp_path, data):
    from textscd_lib.common.lock import LockHeld

    shared = tmp_path / "shared-ckpts"
    hold = ("import sys, time\nfrom textscd_lib.common.lock import run_lock\n"
            f"with run_lock({str(shared)!r}, 'textscd train --run-name first'):\n"
            "    print('held', flush=True)\n    time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    try:  # the first training (another live process) holds the folder
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockHeld) as e:
            train(tiny(tmp_path, data, run="second", out_dir=str(shared)))
        assert f"pid {holder.pid}" in str(e.value) and "--run-name first" in str(e.value)
        assert not (shared / "last.pt").exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_checkpoint_write_leaves_no_temp_file_on_the_next_run(tmp_path, data):
    out = tmp_path / "ckpts"
    out.mkdir()
    stale = [out / ".last.pt.k1ll3d_x.tmp", out / ".best.pt.abc123.tmp", out / ".log.json.q9.tmp"]
    foreign = [out / ".notes.txt.abc.tmp", out / "mine.tmp"]
    for f in stale + foreign:
        f.write_bytes(b"partial")
    train(tiny(tmp_path, data, epochs=1, out_dir=str(out)))
    assert not any(f.exists() for f in stale)
    assert all(f.exists() for f in foreign)  # only our own temp names are removed
    assert (out / "last.pt").is_file()


@pytest.mark.parametrize("err,code", [(errno.EROFS, 2), (errno.ENOSPC, 1)])
def test_a_results_folder_that_cannot_be_written_is_one_line_and_nothing_half_written(tmp_path, data, capsys,
                                                                                   monkeypatch, err, code):
    import os

    import textscd_lib.common.io as io

    def refuse(src, dst):
        raise OSError(err, os.strerror(err), str(src))

    monkeypatch.setattr(io.os, "replace", refuse)
    assert main(cli(tmp_path, data)) == code
    line = one_error_line(capsys.readouterr().err)
    assert "cannot write into" in line and str(tmp_path / "c") in line
    assert not list((tmp_path / "c").rglob("*.tmp"))


def test_val_fraction_outside_0_1_is_refused_in_one_line(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["data", "synth", "--out", str(out), "--pairs", "4", "--size", "32", "--val-fraction", "1.5"]) == 2
    assert "--val-fraction 1.5" in one_error_line(capsys.readouterr().err)
    assert not out.exists()


def test_a_full_disk_while_saving_a_checkpoint_is_one_line_naming_it_and_keeps_the_previous_one(
        tmp_path, data, capsys, monkeypatch):
    assert main(cli(tmp_path, data, "--epochs", "2", "--stop-after", "1")) == 0
    ckpts = tmp_path / "c" / "checkpoints" / "baseline"
    before = (ckpts / "last.pt").read_bytes()

    def full_disk(obj, f, *args, **kwargs):  # torch's stream writer when the disk fills up mid-file
        with open(f, "wb") as fh:
            fh.write(b"PK\x03\x04 partial")
        raise RuntimeError("[enforce fail at inline_container.cc:595] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    monkeypatch.setattr(torch, "save", full_disk)
    capsys.readouterr()
    assert main(cli(tmp_path, data, "--epochs", "2", "--resume")) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "disk full / cannot write" in line and (str(ckpts / "best.pt") in line or str(ckpts / "last.pt") in line)
    assert (ckpts / "last.pt").read_bytes() == before  # the previous checkpoint, intact
    assert not list(ckpts.glob(".*.tmp"))


def test_resume_accepts_the_same_data_in_a_moved_run_and_data_folder_and_says_so(tmp_path, data, caplog):
    import shutil

    first, moved = tmp_path / "first", tmp_path / "moved"
    shutil.copytree(data, first / "data")
    train(tiny(first, first / "data", stop_after=1))
    full = train(tiny(tmp_path / "whole", data))
    shutil.move(first, moved)  # the run folder and the data folder, elsewhere
    with caplog.at_level(logging.INFO, logger="textscd_lib.engine.checkpoints"):
        resumed = train(tiny(moved, moved / "data", resume=True))
    assert [r["epoch"] for r in resumed["history"]] == [1, 2] and resumed["epochs_run"] == 1
    assert resumed["history"][-1]["train_total"] == full["history"][-1]["train_total"]
    said = [r.getMessage() for r in caplog.records if "data folder moved" in r.getMessage()]
    assert len(said) == 1 and str(first / "data") in said[0] and str(moved / "data") in said[0]


def test_resume_still_refuses_other_data_at_the_recorded_path(tmp_path, data, other_data):
    import shutil

    here = tmp_path / "data"
    shutil.copytree(data, here)
    train(tiny(tmp_path, here, stop_after=1))
    shutil.rmtree(here)
    shutil.copytree(other_data, here)  # the same path, other content
    with pytest.raises(ValueError, match="cannot resume.*data fingerprint"):
        train(tiny(tmp_path, here, resume=True))


def test_records_of_runs_that_still_hold_the_retired_fast_switch_load_and_resume(tmp_path, data):
    from textscd_lib.engine.checkpoints import load_checkpoint, load_model

    train(tiny(tmp_path, data, stop_after=1))
    last = tmp_path / "r" / "checkpoints" / "baseline" / "last.pt"
    ck = load_checkpoint(last)
    ck["config"]["fast"] = True  # what a checkpoint written before the switch was retired holds
    torch.save(ck, last)
    cfg = TrainConfig.from_record(ck["config"], resume=True)
    assert not hasattr(cfg, "fast") and cfg.epochs == 2 and cfg.data_root == str(data)
    assert load_model(last).checkpoint["config"]["fast"] is True
    assert train(cfg)["history"][-1]["epoch"] == 2


def test_predict_on_a_device_that_does_not_exist_writes_nothing(tmp_path, data, capsys):
    assert main(cli(tmp_path, data)) == 0
    best = tmp_path / "c" / "checkpoints" / "baseline" / "best.pt"
    out = tmp_path / "pred"
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(best), "--data", str(data), "--out", str(out), "--device",
                 "bogus"]) == 2
    assert "device 'bogus'" in one_error_line(capsys.readouterr().err)
    assert not out.exists()
