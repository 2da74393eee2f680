"""The stages around the trainer (data -> captions -> text features -> train -> predict -> evaluate): each takes
explicit inputs, refuses a missing one naming the command that makes it, and records in the run what stood in for
the paper's setting exactly as the chained pipeline of the notebooks does."""

from __future__ import annotations

import shutil

import pytest
import torch

from textscd_lib.common.runs import read_substitutes
from textscd_lib.course.pipeline import train_pipeline
from textscd_lib.data.synthetic import ensure_mini_second, synthesize
from textscd_lib.engine.stages import check_data_folder, make_text_features, predict_to_folder
from textscd_lib.engine.trainer import TrainConfig, train
from textscd_lib.metrics import score_folders
from textscd_lib.text.captions import caption_dataset
from textscd_lib.text.features import TextFeatures

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny(tmp_path, run: str, **kw) -> TrainConfig:
    base = dict(run=run, results_root=str(tmp_path), model="baseline", epochs=1, batch_size=4, width=16,
                max_steps_per_epoch=1, image_weights=None, device="cpu", seed=0)
    return TrainConfig(**{**base, **kw})


def test_train_refuses_a_missing_data_folder_naming_the_command_that_makes_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="textscd data synth --out DIR"):
        train(tiny(tmp_path, "r", data_root=""))
    with pytest.raises(FileNotFoundError, match="no such data folder.*textscd data synth"):
        train(tiny(tmp_path, "r", data_root=str(tmp_path / "nowhere")))
    only_train = synthesize(tmp_path / "one-split", pairs=3, size=32, seed=1, val_fraction=0.34)
    shutil.rmtree(only_train / "val")  # no train/ and val/ working layout
    with pytest.raises(FileNotFoundError, match="no train/ and val/ splits"):
        check_data_folder(only_train)


def test_textscd_refuses_training_without_text_features_naming_the_commands(tmp_path):
    data = ensure_mini_second(fast=True)
    with pytest.raises(FileNotFoundError, match="textscd caption DATA .* textscd features CAPTIONS.jsonl"):
        train(tiny(tmp_path, "r", model="textscd", data_root=str(data)))
    with pytest.raises(FileNotFoundError, match="no such text-feature file"):
        train(tiny(tmp_path, "r", model="textscd", data_root=str(data), text_features=str(tmp_path / "x.pt")))


def test_features_file_records_its_captions_and_encoder_and_train_records_them_in_the_run(tmp_path):
    data = ensure_mini_second(fast=True)
    caption_dataset(data, "noisy", tmp_path / "caps.jsonl", noise=0.6, seed=2)
    tf = make_text_features(tmp_path / "caps.jsonl", tmp_path / "f.pt", "minilm")
    assert tf.provenance["source"] == "noisy-0.6" and tf.provenance["encoder"] == "minilm"
    again = TextFeatures.load(tmp_path / "f.pt")
    assert again.provenance == tf.provenance  # stored in the file, read back with weights_only
    assert "probability 0.6" in again.provenance["captions"]["used"]
    with pytest.raises(ValueError, match="caption source 'noisy-0.6'"):  # the run must say what it reads
        train(tiny(tmp_path, "r", model="textscd", data_root=str(data), text_features=str(tmp_path / "f.pt")))
    res = train(tiny(tmp_path, "r", model="textscd", data_root=str(data), text_features=str(tmp_path / "f.pt"),
                     captions="noisy-0.6"))
    subs = read_substitutes(tmp_path / "r")
    assert set(subs) == {"data", "captions", "text_encoder", "image_encoder"}
    assert subs["captions"] == again.provenance["captions"]
    assert subs["text_encoder"]["used"].startswith("all-MiniLM-L6-v2")
    assert subs["text_encoder"]["why"] == "asked for the 'minilm' text encoder"
    assert res["substitutes"][-1] == again.provenance["text_encoder"]


def test_pipeline_records_the_same_substitutes_as_the_stages_run_one_by_one(tmp_path):
    """The chained pipeline (notebooks) and the stages (command line) leave the same record in a run."""
    piped = train_pipeline(tiny(tmp_path, "piped", model="textscd"), export=False, fast=True)
    data = piped["data_root"]
    caption_dataset(data, "oracle", tmp_path / "caps.jsonl", seed=0)
    make_text_features(tmp_path / "caps.jsonl", tmp_path / "f.pt", "auto")
    train(tiny(tmp_path, "staged", model="textscd", data_root=data, text_features=str(tmp_path / "f.pt")))
    assert read_substitutes(tmp_path / "piped") == read_substitutes(tmp_path / "staged")
    assert set(read_substitutes(tmp_path / "piped")) == {"data", "captions", "text_encoder", "image_encoder"}
    # the same captions encoded the same way: the two runs trained on identical text features
    a = TextFeatures.load(piped["text_features"])
    b = TextFeatures.load(tmp_path / "f.pt")
    assert a.captions_hash == b.captions_hash and torch.equal(a.features, b.features)


def test_baseline_run_does_not_touch_the_text_parts_of_the_record(tmp_path):
    train_pipeline(tiny(tmp_path, "r", model="textscd"), export=False, fast=True)
    before = read_substitutes(tmp_path / "r")
    train_pipeline(tiny(tmp_path, "r", model="baseline"), export=False, fast=True)
    assert read_substitutes(tmp_path / "r") == before


def test_predict_stage_writes_maps_that_evaluate_scores_as_the_trainer_did(tmp_path):
    res = train_pipeline(tiny(tmp_path, "p", model="textscd"), export=False, fast=True)
    out = predict_to_folder(res["paths"]["best"], res["data_root"], tmp_path / "pred", res["text_features"])
    assert len(list((out / "label1").glob("*.png"))) == len(list((out / "label2").glob("*.png"))) > 0
    scored = score_folders(out, res["data_root"], split="val")
    for m in ("OA", "mIoU"):
        assert scored[m] == pytest.approx(res["last"][m], abs=1e-12)
    with pytest.raises(FileNotFoundError, match="needs --features FILE"):
        predict_to_folder(res["paths"]["best"], res["data_root"], tmp_path / "pred2")


def test_command_line_chain_caption_features_train_predict_evaluate(tmp_path, capsys):
    """The stages as subcommands, each given the previous one's output; evaluate scores predict's maps as the
    trainer's own validation did."""
    import json

    from textscd_lib.cli.main import main

    data = str(ensure_mini_second(fast=True))
    caps, feats, pred = str(tmp_path / "caps.jsonl"), str(tmp_path / "f.pt"), str(tmp_path / "pred")
    assert main(["caption", data, "--backend", "oracle", "--out", caps]) == 0
    assert main(["features", caps, "--encoder", "minilm", "--out", feats]) == 0
    capsys.readouterr()
    assert main(["train", "--data-root", data, "--text-features", feats, "--run-name", "chain", "--results-root",
                 str(tmp_path), "--epochs", "1", "--batch-size", "4", "--width", "16", "--max-steps-per-epoch",
                 "1", "--image-weights", "random", "--device", "cpu", "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)
    best = str(tmp_path / "chain" / "checkpoints" / "textscd" / "best.pt")
    assert main(["predict", "--checkpoint", best, "--data", data, "--features", feats, "--out", pred]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--pred", pred, "--gt", data, "--split", "val", "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["OA"] == pytest.approx(trained["last"]["OA"], abs=1e-12)
    assert read_substitutes(tmp_path / "chain")["captions"]["used"].startswith("oracle captions")
    cfg = torch.load(best, weights_only=True)["config"]
    assert cfg["captions"] == "oracle" and cfg["text_encoder"] == "minilm"  # from the features file



def test_predict_uses_the_precision_the_run_validated_with(tmp_path, monkeypatch):
    """A run validated in bf16: predict runs the model in bf16 too (by default the run's precision, as its
    checkpoint records it), so predict + evaluate give the validation scores; ``precision`` overrides it."""
    import textscd_lib.engine.inference as inference

    res = train_pipeline(tiny(tmp_path, "bf", precision="bf16"), export=False, fast=True)
    assert res["precision"] == "bf16"
    used = []
    real = inference.autocast_for
    monkeypatch.setattr(inference, "autocast_for", lambda device, precision: used.append(precision)
                        or real(device, precision))
    out = predict_to_folder(res["paths"]["best"], res["data_root"], tmp_path / "pred", device="cpu")
    assert used == ["bf16"]
    scored = score_folders(out, res["data_root"], split="val")
    for m in ("OA", "mIoU"):
        assert scored[m] == pytest.approx(res["last"][m], abs=1e-12), m
    predict_to_folder(res["paths"]["best"], res["data_root"], tmp_path / "pred32", device="cpu", precision="fp32")
    assert used == ["bf16", "fp32"]
