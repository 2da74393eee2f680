"""Output paths (textscd_lib.common.outputs): no command destroys a folder or file it did not write, or writes
into its own inputs. Each refusal exits 2 with one line naming the path, and the user's files stay
byte-identical."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from textscd_lib.cli.main import main
from textscd_lib.common.outputs import (
    MARKER,
    OutputRefused,
    guard_output_dir,
    guard_output_file,
    mark_output_dir,
)
from textscd_lib.data.synthetic import synthesize


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (or ``root`` itself) with a hash of its bytes."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def refused(argv: list[str], capsys, *names: str) -> str:
    """Run ``textscd ARGV``; it must exit 2 with one error line that names each of ``names``."""
    rc = main(argv)
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 2, err
    assert len(err) == 1 and all(n in err[0] for n in names), err
    return err[0]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return synthesize(tmp_path_factory.mktemp("d") / "mini", pairs=3, size=32, seed=1, val_fraction=0.34)


# ------------------------------------------------------------------------------------------- data synth
def test_synth_refuses_a_foreign_folder_a_parent_folder_and_a_file(tmp_path, capsys, monkeypatch):
    notes = tmp_path / "project"
    (notes / "sub").mkdir(parents=True)
    (notes / "thesis.tex").write_text("three years of work")
    (notes / "sub" / "data.csv").write_text("1,2,3")
    text = tmp_path / "notes.txt"
    text.write_text("my notes")
    before, before_text = snapshot(notes), snapshot(text)
    refused(["data", "synth", "--out", str(notes), "--pairs", "2", "--size", "32"], capsys, str(notes), MARKER)
    monkeypatch.chdir(notes / "sub")  # `--out ..` from a sub-folder named the parent of the current folder
    refused(["data", "synth", "--out", "..", "--pairs", "2", "--size", "32", "--force"], capsys, str(notes))
    refused(["data", "synth", "--out", str(text), "--pairs", "2", "--size", "32", "--force"], capsys, str(text))
    assert snapshot(notes) == before and snapshot(text) == before_text


def test_synth_replaces_its_own_dataset_only_with_force(tmp_path, capsys):
    out = tmp_path / "mini"
    assert main(["data", "synth", "--out", str(out), "--pairs", "2", "--size", "32"]) == 0
    assert (out / MARKER).is_file()
    before = snapshot(out)
    refused(["data", "synth", "--out", str(out), "--pairs", "2", "--size", "32", "--seed", "4"], capsys, "--force")
    assert snapshot(out) == before
    assert main(["data", "synth", "--out", str(out), "--pairs", "2", "--size", "32", "--seed", "4", "--force"]) == 0
    assert snapshot(out) != before


# ------------------------------------------------------------------------------------ data prepare-second
def test_prepare_second_refuses_an_output_that_holds_its_source(tmp_path, capsys):
    """SECOND's own download has train/ in the SECOND layout: preparing SECOND/train into SECOND would have
    cleaned the source's files up as stale."""
    second = synthesize(tmp_path / "SECOND", pairs=3, size=32, seed=2, val_fraction=0)
    before = snapshot(second)
    for _ in range(2):
        refused(["data", "prepare-second", str(second / "train"), "--out", str(second)], capsys, str(second))
    assert snapshot(second) == before


def test_prepare_second_refuses_a_foreign_folder_and_keeps_files_it_did_not_write(tmp_path, dataset, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "results.xlsx").write_bytes(b"PK\x03\x04 a spreadsheet")
    before = snapshot(mine)
    refused(["data", "prepare-second", str(dataset / "train"), "--out", str(mine)], capsys, str(mine))
    assert snapshot(mine) == before
    work = tmp_path / "work"
    assert main(["data", "prepare-second", str(dataset / "train"), "--out", str(work), "--val-fraction", "0.5"]) == 0
    stray = work / "train" / "im1" / "not-a-source-pair.png"
    stray.write_bytes(b"someone else's image")
    assert main(["data", "prepare-second", str(dataset / "train"), "--out", str(work), "--seed", "3"]) == 0
    assert stray.read_bytes() == b"someone else's image"


# -------------------------------------------------------------------------------------------- predict
@pytest.fixture(scope="module")
def baseline(tmp_path_factory, dataset):
    import torch

    from textscd_lib.course.pipeline import prepare_inputs
    from textscd_lib.engine.trainer import TrainConfig, train

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    cfg = TrainConfig(run="guards", results_root=str(tmp_path_factory.mktemp("r")), model="baseline", epochs=1,
                      data_root=str(dataset),
                      batch_size=4, width=16, max_steps_per_epoch=1, image_weights=None, device="cpu",
                      seed=0)
    try:
        return train(prepare_inputs(cfg))["paths"]["best"]
    finally:
        torch.set_num_threads(n)


def test_predict_refuses_to_write_into_the_ground_truth_or_a_foreign_folder(tmp_path, dataset, baseline, capsys):
    data = tmp_path / "DATA"
    shutil.copytree(dataset, data)
    before = snapshot(data)
    base = ["predict", "--checkpoint", baseline, "--data", str(data), "--device", "cpu", "--force"]
    refused([*base, "--out", str(data / "val")], capsys, str(data / "val"), "inside the input")
    refused([*base, "--out", str(data)], capsys, str(data))
    assert snapshot(data) == before
    other = tmp_path / "photos"
    other.mkdir()
    (other / "label1").mkdir()
    (other / "holiday.jpg").write_bytes(b"\xff\xd8 a photo")
    before = snapshot(other)
    refused([*base, "--out", str(other)], capsys, str(other))
    assert snapshot(other) == before


def test_predict_replaces_its_own_predictions_only_with_force(tmp_path, dataset, baseline, capsys):
    out = tmp_path / "pred"
    argv = ["predict", "--checkpoint", baseline, "--data", str(dataset), "--device", "cpu", "--out", str(out)]
    assert main(argv) == 0 and (out / MARKER).is_file()
    refused(argv, capsys, str(out), "--force")
    assert main([*argv, "--force"]) == 0


# ------------------------------------------------------------------------------------------- features
def test_features_refuses_to_replace_the_caption_store_or_a_foreign_file(tmp_path, dataset, capsys):
    caps = tmp_path / "caps.jsonl"
    assert main(["caption", str(dataset), "--backend", "oracle", "--out", str(caps)]) == 0
    notes = tmp_path / "notes.txt"
    notes.write_text("not features")
    before = {**snapshot(caps), **snapshot(notes)}
    refused(["features", str(caps), "--encoder", "clip-random", "--out", str(caps), "--force"], capsys, str(caps))
    refused(["features", str(caps), "--encoder", "clip-random", "--out", str(notes), "--force"], capsys, str(notes))
    refused(["features", str(caps), "--encoder", "clip-random", "--out", str(tmp_path)], capsys, "contains the input")
    assert {**snapshot(caps), **snapshot(notes)} == before


# -------------------------------------------------------------------------------------------- caption
def test_caption_refuses_a_feature_file_a_text_file_and_a_path_inside_the_data(tmp_path, dataset, capsys):
    feats = tmp_path / "features.pt"
    feats.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)  # a zip (torch.save) without a final newline
    notes = tmp_path / "notes.txt"
    notes.write_text("line one\nline two")
    before = {**snapshot(feats), **snapshot(notes), **snapshot(dataset)}
    refused(["caption", str(dataset), "--out", str(feats), "--dry-run"], capsys, str(feats), "caption store")
    refused(["caption", str(dataset), "--backend", "oracle", "--out", str(notes)], capsys, str(notes))
    refused(["caption", str(dataset), "--backend", "oracle", "--out", str(dataset / "caps.jsonl")], capsys,
            "inside the input")
    assert {**snapshot(feats), **snapshot(notes), **snapshot(dataset)} == before


# ----------------------------------------------------------------------------------------- the rule
def test_the_guard_names_the_kind_it_found_and_only_force_opens_its_own(tmp_path):
    a = tmp_path / "a"
    mark_output_dir(a, "prediction folder")
    with pytest.raises(OutputRefused, match="holds a prediction folder output, not a mini-SECOND"):
        guard_output_dir(a, "mini-SECOND dataset", force=True)
    with pytest.raises(OutputRefused, match="pass --force"):
        guard_output_dir(a, "prediction folder")
    assert guard_output_dir(a, "prediction folder", force=True) == a.resolve()
    assert guard_output_dir(tmp_path / "new", "x") == (tmp_path / "new").resolve()
    link = tmp_path / "link"
    link.symlink_to(a)
    with pytest.raises(OutputRefused, match="is the input"):
        guard_output_dir(link, "prediction folder", inputs=[a], force=True)
    f = tmp_path / "f.bin"
    f.write_bytes(b"x")
    with pytest.raises(OutputRefused, match="is not a caption store"):
        guard_output_file(f, "caption store", force=True, recognise=lambda p: False)
