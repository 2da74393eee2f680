"""Portable checkpoints (chapter 05): best.pt and last.pt are plain tensors and Python values that
``torch.load(weights_only=True)`` reads; best.pt holds no optimizer state; an unreadable file is named in one line
with what to do."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from textscd_lib.course.pipeline import prepare_inputs
from textscd_lib.engine.checkpoints import CheckpointError, load_checkpoint, load_model
from textscd_lib.engine.trainer import TrainConfig, train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ck")
    cfg = TrainConfig(run="ck", results_root=str(root), model="textscd", epochs=1, batch_size=4, width=16,
                      max_steps_per_epoch=1, image_weights=None, device="cpu", seed=0)
    try:
        yield train(prepare_inputs(cfg, fast=True))
    finally:
        torch.set_num_threads(n)


def test_best_and_last_load_with_weights_only_and_best_has_no_optimizer(trained):
    best = torch.load(trained["paths"]["best"], map_location="cpu", weights_only=True)
    last = torch.load(trained["paths"]["last"], map_location="cpu", weights_only=True)
    assert "optimizer" not in best and "rng" not in best and "history" not in best
    for key in ("model", "config", "model_kind", "text_dim", "width", "scores", "substitutes", "epoch"):
        assert key in best, key
    assert best["model_kind"] == "textscd" and best["width"] == 16 and best["text_dim"] == 384
    assert best["config"]["run"] == "ck" and isinstance(best["scores"]["OA"], float)
    assert set(last["rng"]) == {"torch", "cuda", "augment"}  # python/numpy RNG are never drawn from in training
    assert all(isinstance(last["rng"][k], torch.Tensor) for k in ("torch", "augment"))
    assert "state" in last["optimizer"] and last["history"][0]["epoch"] == 1
    assert all(torch.equal(best["model"][k], last["model"][k]) for k in best["model"])  # one epoch: same weights


def test_truncated_and_empty_checkpoints_are_named_in_one_line_with_the_fix(trained, tmp_path):
    data = open(trained["paths"]["last"], "rb").read()
    cut = tmp_path / "last.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(cut)
    msg = str(e.value)
    assert str(cut) in msg and "resume from best.pt, or delete it and train again" in msg and "\n" not in msg
    empty = tmp_path / "best.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"best.pt: empty checkpoint \(0 bytes"):
        load_model(empty)
    not_ck = tmp_path / "notes.pt"
    torch.save({"hello": torch.zeros(1)}, not_ck)
    with pytest.raises(CheckpointError, match="not a textscd checkpoint"):
        load_checkpoint(not_ck)


def test_a_checkpoint_with_pickled_objects_is_refused_naming_the_converter(tmp_path, trained):
    import numpy as np

    ck = torch.load(trained["paths"]["best"], map_location="cpu", weights_only=True)
    ck["rng"] = {"numpy": np.random.get_state()}  # what the previous format stored
    old = tmp_path / "last.pt"
    torch.save(ck, old)
    with pytest.raises(CheckpointError, match="older textscd.*textscd convert-checkpoint"):
        load_checkpoint(old)  # never unpickled, not even for the trainer's own resume (tests/test_safe_loading.py)


def test_cli_predict_with_a_truncated_checkpoint_exits_2_with_one_line(trained, tmp_path):
    cut = tmp_path / "best.pt"
    cut.write_bytes(open(trained["paths"]["best"], "rb").read()[:1000])
    out = subprocess.run([sys.executable, "-m", "textscd_lib", "predict", "--checkpoint", str(cut), "--data",
                          trained["data_root"], "--out", str(tmp_path / "pred")], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 2, out.stderr
    errors = [ln for ln in out.stderr.splitlines() if "error" in ln]
    assert len(errors) == 1 and str(cut) in errors[0] and "Traceback" not in out.stderr


def test_loading_a_model_leaves_the_image_encoders_logger_level_as_its_owner_set_it(trained, monkeypatch):
    import logging

    import textscd_lib.engine.checkpoints as C

    enc = logging.getLogger("textscd_lib.models.image_encoder")
    seen = []
    build = C.build_model

    def spy(*a, **k):
        seen.append(enc.level)  # the level while the weightless encoder is built
        enc.warning("a real warning still gets through")
        return build(*a, **k)

    monkeypatch.setattr(C, "build_model", spy)
    enc.setLevel(logging.INFO)
    kept = []
    probe = logging.Handler()
    probe.emit = kept.append
    enc.addHandler(probe)
    try:
        load_model(trained["paths"]["best"])
    finally:
        enc.removeHandler(probe)
        enc.setLevel(logging.NOTSET)
    assert seen == [logging.INFO]
    msgs = [r.getMessage() for r in kept]
    assert "a real warning still gets through" in msgs and not any("random init" in m for m in msgs)
