"""The trainer on CPU (tiny: the FAST mini-SECOND, 64², a few steps): resume, NaN stop, logs, checkpoints,
exported predictions scored by the same metrics. The trainer is given its inputs: these tests make them with
``textscd_lib.course.pipeline`` (data -> captions -> text features) as the notebooks do."""

from __future__ import annotations

import json
import math

import pytest
import torch

from textscd_lib.course.pipeline import prepare_inputs, train_pipeline
from textscd_lib.engine.batches import epoch_batches
from textscd_lib.engine.checkpoints import load_model
from textscd_lib.engine.trainer import TrainConfig, TrainingDiverged, poly_lr
from textscd_lib.engine.trainer import train as train_given
from textscd_lib.metrics import score_folders


def train(cfg: TrainConfig) -> dict:
    """The trainer with its inputs made first (the mini-SECOND; captions and text features for TextSCD)."""
    return train_given(prepare_inputs(cfg, fast=True))


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny(tmp_path, run: str, **kw) -> TrainConfig:
    base = dict(run=run, results_root=str(tmp_path), model="baseline", epochs=2, batch_size=4, width=16,
                max_steps_per_epoch=2, image_weights=None, device="cpu", seed=3)
    base.update(kw)
    return TrainConfig(**base)


def test_poly_decay_matches_the_reference_schedule():
    assert poly_lr(0.1, 0, 100, 1.5) == 0.1
    assert abs(poly_lr(0.1, 50, 100, 1.5) - 0.1 * 0.5 ** 1.5) < 1e-15
    assert poly_lr(0.1, 100, 100, 1.5) == 0.0


def test_epoch_batches_shard_disjointly_across_ranks_and_reshuffle_each_epoch():
    r0 = epoch_batches(10, 2, epoch=0, seed=0, rank=0, world=2)
    r1 = epoch_batches(10, 2, epoch=0, seed=0, rank=1, world=2)
    s0, s1 = {int(i) for b in r0 for i in b}, {int(i) for b in r1 for i in b}
    assert s0.isdisjoint(s1) and s0 | s1 == set(range(10))
    e1 = epoch_batches(10, 2, epoch=1, seed=0)
    assert [b.tolist() for b in e1] != [b.tolist() for b in epoch_batches(10, 2, epoch=0, seed=0)]


def test_interrupted_and_resumed_run_equals_uninterrupted_run(tmp_path):
    full = train(tiny(tmp_path, "full"))
    part = train(tiny(tmp_path, "resumed", stop_after=1))
    assert len(part["history"]) == 1
    resumed = train(tiny(tmp_path, "resumed", resume=True))
    assert [r["epoch"] for r in resumed["history"]] == [1, 2]
    for a, b in zip(full["history"], resumed["history"]):
        for k in a:
            if k.startswith(("train_", "val_")) and "seconds" not in k:
                assert a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])), k
    ma = load_model(full["paths"]["last"]).state_dict()
    mb = load_model(resumed["paths"]["last"]).state_dict()
    assert all(torch.equal(ma[k], mb[k]) for k in ma)


def test_resume_refuses_a_checkpoint_trained_with_other_settings(tmp_path):
    train(tiny(tmp_path, "r", stop_after=1, epochs=2))
    with pytest.raises(ValueError, match="lr=0.1"):
        train(tiny(tmp_path, "r", resume=True, lr=0.05))


def test_nan_loss_stops_the_run_and_names_the_step(tmp_path, monkeypatch):
    import textscd_lib.engine.trainer as losses  # the trainer calls total_loss by this name

    real = losses.total_loss
    calls = {"n": 0}

    def poisoned(out, batch, as_float=True):
        calls["n"] += 1
        loss, parts = real(out, batch, as_float=as_float)
        return (loss * float("nan"), parts) if calls["n"] == 3 else (loss, parts)

    monkeypatch.setattr(losses, "total_loss", poisoned)
    with pytest.raises(TrainingDiverged, match=r"step 3 \(epoch 2, step 1 of 2"):
        train(tiny(tmp_path, "nan"))


def test_textscd_run_writes_logs_checkpoints_and_predictions_that_evaluate_reads(tmp_path):
    res = train_pipeline(tiny(tmp_path, "tx", model="textscd", epochs=1), export=True, fast=True)
    out = tmp_path / "tx" / "checkpoints" / "textscd"
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()
    rows = json.loads((out / "log.json").read_text())
    assert len(rows) == 1 and {"train_total", "val_F_scd", "val_SeK", "pairs_per_s"} <= set(rows[0])
    assert (out / "log.csv").read_text().splitlines()[0].startswith("epoch,step,lr,train_ce1")
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporaries
    pred = tmp_path / "tx" / "predictions" / "textscd" / "val"
    scored = score_folders(pred, res["data_root"], split="val")
    for m in ("OA", "mIoU", "SeK"):
        assert scored[m] == pytest.approx(res["last"][m], abs=1e-12) or math.isnan(res["last"][m])
    model = load_model(out / "best.pt")
    assert model.kind == "textscd" and model.checkpoint["epoch"] == 1


def test_streamed_dataloader_batches_equal_device_resident_batches(tmp_path):
    resident = train(tiny(tmp_path, "resident", epochs=1, device_resident=True))
    streamed = train(tiny(tmp_path, "streamed", epochs=1, device_resident=False, workers=1))
    assert not streamed["resident"] and resident["resident"]
    assert resident["history"][0]["train_total"] == streamed["history"][0]["train_total"]
    assert resident["history"][0]["val_OA"] == streamed["history"][0]["val_OA"]


def test_cli_train_shows_each_offline_substitute_once_on_stderr(tmp_path):
    """`textscd train` offline: data, captions, text and image encoder substitutes are each said once
    (the INFO line of record_substitute), never repeated on stdout or by the encoders in other words."""
    import os
    import re
    import subprocess
    import sys

    from textscd_lib.common.runs import read_substitutes, substitute_lines
    from textscd_lib.data.synthetic import ensure_mini_second
    from textscd_lib.engine.stages import make_text_features
    from textscd_lib.text.captions import caption_dataset

    data = ensure_mini_second(fast=True)  # the stages before `textscd train`: data, captions, text features
    caption_dataset(data, "oracle", tmp_path / "caps.jsonl", seed=0)
    make_text_features(tmp_path / "caps.jsonl", tmp_path / "features.pt", "auto")
    env = {**os.environ, "TEXTSCD_FAST": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "TQDM_DISABLE": "1"}
    cmd = [sys.executable, "-m", "textscd_lib", "train", "--run-name", "cli", "--results-root", str(tmp_path),
           "--model", "textscd", "--epochs", "1", "--batch-size", "4", "--width", "16", "--max-steps-per-epoch",
           "1", "--image-weights", "random", "--device", "cpu", "--data-root", str(data),
           "--text-features", str(tmp_path / "features.pt")]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    recorded = substitute_lines(tmp_path / "cli")
    assert set(read_substitutes(tmp_path / "cli")) == {"data", "captions", "text_encoder", "image_encoder"}
    for line in recorded:
        assert out.stderr.count(line) == 1, (line, out.stderr)
        assert line not in out.stdout
    shown = re.findall(r"OFFLINE SUBSTITUTE \[(\w+)\]", out.stdout + out.stderr)
    assert sorted(shown) == sorted(read_substitutes(tmp_path / "cli")), shown
    # the modules that detect a stand-in say which weights they loaded at INFO, not the substitute again
    assert out.stderr.count("ResNet34 random init instead of") == 1
    assert out.stderr.count(" instead of CLIP") == 1  # the features file says what encoded it; said once
    warned = [ln for ln in out.stderr.splitlines() if ln.startswith("WARNING") and " instead of " in ln]
    assert not warned, warned


def test_the_run_s_seed_draws_the_offline_captions_the_trainer_reads(tmp_path):
    """Chapters 02, 06 and 07 draw the offline captions with the run's SEED; the trainer must read the same draw
    (it used seed 0 whatever the run's seed, rewriting the store under the chapters' feet)."""
    from textscd_lib.text.captions import CaptionStore, ensure_captions

    res = train_pipeline(tiny(tmp_path, "sd", model="textscd", epochs=1, captions="noisy-0.3", seed=3), export=False,
                         fast=True)
    path = tmp_path / "sd" / "captions" / "noisy-0.3.jsonl"
    trained_with = CaptionStore(path).latest()
    assert {r["params"]["seed"] for r in trained_with.values()} == {3}
    before = path.read_bytes()
    ensure_captions(res["data_root"], "noisy-0.3", tmp_path / "sd", seed=3)  # what chapters 06 and 07 call
    assert path.read_bytes() == before  # the same draw: not rewritten


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_cudnn_autotuning_is_on_for_a_cuda_run_only_and_put_back_afterwards(tmp_path, monkeypatch, device):
    """``torch.backends.cudnn.benchmark`` is process-wide: the trainer sets it for the length of the run (on for
    CUDA, whose static shapes it autotunes; off otherwise) and gives the caller's value back, also when the run
    stops with an error."""
    import textscd_lib.engine.trainer as T

    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    real, seen = T.total_loss, []

    def watching(out, batch, as_float=True):
        seen.append(torch.backends.cudnn.benchmark)
        return real(out, batch, as_float=as_float)

    monkeypatch.setattr(T, "total_loss", watching)
    callers = not (device == "cuda")  # a value the run must change, then put back
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", callers)
    train(tiny(tmp_path, "cudnn", epochs=1, device=device, precision="fp32"))
    assert seen and set(seen) == {device == "cuda"}
    assert torch.backends.cudnn.benchmark is callers
    def failing(out, batch, as_float=True):
        raise TrainingDiverged("stopped inside the run")

    monkeypatch.setattr(T, "total_loss", failing)
    with pytest.raises(TrainingDiverged):
        train(tiny(tmp_path, "cudnn-fails", epochs=1, device=device, precision="fp32"))
    assert torch.backends.cudnn.benchmark is callers
