"""SECOND format: colours, RGB/index labels, pair discovery, every bad-input class named, preparation."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from textscd_lib.cli import main as cli
from textscd_lib.data.prepare import prepare_second
from textscd_lib.data.second import (
    CLASSES,
    COLORS,
    SecondFormatError,
    find_pairs,
    index_to_rgb,
    read_label,
    rgb_to_index,
)
from textscd_lib.data.validate import validate

S = 16


def _labels(rng):
    change = rng.random((S, S)) < 0.3
    l1 = np.where(change, rng.integers(1, 7, (S, S)), 0).astype(np.uint8)
    l2 = np.where(change, rng.integers(1, 7, (S, S)), 0).astype(np.uint8)
    return l1, l2


def make_layout(root: Path, n: int = 4, split: str | None = None, index_labels: bool = False, seed: int = 0) -> Path:
    """A tiny valid SECOND-layout folder (flat, or under ``split``)."""
    rng = np.random.default_rng(seed)
    base = root / split if split else root
    for i in range(n):
        name = f"{i:05d}.png"
        l1, l2 = _labels(rng)
        for folder, arr in (("im1", rng.integers(0, 256, (S, S, 3))), ("im2", rng.integers(0, 256, (S, S, 3))),
                            ("label1", l1 if index_labels else COLORS[l1]),
                            ("label2", l2 if index_labels else COLORS[l2])):
            (base / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.asarray(arr, np.uint8)).save(base / folder / name)
    return root


def _only_problem(root: Path) -> str:
    rep = validate(root)
    assert not rep.ok and len(rep.problems) == 1, rep.problems
    return rep.problems[0]


def test_classes_and_official_second_colours():
    assert CLASSES == ("unchanged", "water", "ground", "low vegetation", "tree", "building", "playground")
    assert COLORS.tolist() == [[255, 255, 255], [0, 0, 255], [128, 128, 128], [0, 128, 0], [0, 255, 0],
                               [128, 0, 0], [255, 0, 0]]


def test_rgb_index_round_trip_covers_every_class():
    idx = np.arange(7, dtype=np.uint8).repeat(3).reshape(3, 7)
    assert np.array_equal(rgb_to_index(index_to_rgb(idx)), idx)


def test_valid_layout_passes_with_summary(tmp_path):
    rep = validate(make_layout(tmp_path))
    assert rep.ok, rep.problems
    assert rep.summary["pairs"] == 4 and rep.summary["sizes"] == ["16x16"]
    assert np.array(rep.summary["transitions"])[1:, 1:].sum() > 0
    assert "change ratio" in rep.format()


def test_unknown_label_colour_names_file_colour_and_pixel_count(tmp_path):
    make_layout(tmp_path)
    f = tmp_path / "label1" / "00001.png"
    arr = np.asarray(Image.open(f)).copy()
    arr[:1, :5] = (10, 20, 30)
    Image.fromarray(arr).save(f)
    msg = _only_problem(tmp_path)
    assert str(f) in msg and "(10, 20, 30) in 5 pixels" in msg


def test_unknown_index_value_names_file_value_and_pixel_count(tmp_path):
    make_layout(tmp_path, index_labels=True)
    f = tmp_path / "label2" / "00002.png"
    arr = np.asarray(Image.open(f)).copy()
    arr[:2, :3] = 9
    Image.fromarray(arr).save(f)
    msg = _only_problem(tmp_path)
    assert str(f) in msg and "unknown label value 9 in 6 pixels" in msg


def test_image_label_size_mismatch_names_the_file(tmp_path):
    make_layout(tmp_path)
    f = tmp_path / "label2" / "00000.png"
    Image.fromarray(np.full((8, 8, 3), 255, np.uint8)).save(f)
    msg = _only_problem(tmp_path)
    assert str(f) in msg and "size mismatch" in msg and "8x8" in msg


def test_file_without_twin_names_the_file(tmp_path):
    make_layout(tmp_path)
    (tmp_path / "im2" / "00003.png").unlink()
    msgs = validate(tmp_path).problems
    assert len(msgs) == 3  # im1, label1, label2 of 00003 have no twin in im2/
    assert all("00003.png" in m and "no twin in im2/" in m for m in msgs)


def test_corrupt_image_names_the_file(tmp_path):
    make_layout(tmp_path)
    f = tmp_path / "im1" / "00001.png"
    f.write_bytes(f.read_bytes()[:40])
    msg = _only_problem(tmp_path)
    assert str(f) in msg and "corrupt" in msg


def test_non_rgb_image_names_the_file_and_mode(tmp_path):
    make_layout(tmp_path)
    f = tmp_path / "im2" / "00000.png"
    Image.fromarray(np.zeros((S, S), np.uint8)).save(f)
    msg = _only_problem(tmp_path)
    assert str(f) in msg and "not an RGB image (mode L)" in msg


def test_change_masks_disagreeing_name_both_labels(tmp_path):
    make_layout(tmp_path, index_labels=True)
    f1, f2 = tmp_path / "label1" / "00002.png", tmp_path / "label2" / "00002.png"
    l1, l2 = np.asarray(Image.open(f1)).copy(), np.asarray(Image.open(f2)).copy()
    l1[0, 0], l2[0, 0] = 3, 0
    l1[1, 1], l2[1, 1] = 0, 0
    Image.fromarray(l1).save(f1)
    Image.fromarray(l2).save(f2)
    msg = _only_problem(tmp_path)
    assert str(f1) in msg and str(f2) in msg and "change masks disagree in 1 pixels" in msg


def test_empty_dataset_is_a_problem(tmp_path):
    (tmp_path / "im1").mkdir()
    msg = _only_problem(tmp_path)
    assert str(tmp_path) in msg and "empty dataset" in msg


def test_cli_validate_exits_0_when_valid_and_1_with_one_line_per_problem(tmp_path, capsys):
    make_layout(tmp_path)
    assert cli.main(["data", "validate", str(tmp_path)]) == 0
    assert "OK" in capsys.readouterr().out
    (tmp_path / "label1" / "00000.png").write_bytes(b"not a png")
    (tmp_path / "im2" / "00003.png").unlink()
    assert cli.main(["data", "validate", str(tmp_path)]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("INVALID") and len(out) == 1 + 1 + 3
    assert any("label1/00000.png" in line and "not an image" in line for line in out)  # bytes, not a PNG


def test_rgb_and_index_label_folders_load_to_identical_arrays(tmp_path):
    from textscd_lib.data.dataset import SCDDataset

    rgb = make_layout(tmp_path / "rgb", split="train", seed=3)
    idx = make_layout(tmp_path / "index", split="train", index_labels=True, seed=3)
    assert Image.open(rgb / "train/label1/00000.png").mode == "RGB"
    assert Image.open(idx / "train/label1/00000.png").mode == "L"
    pa, pb = find_pairs(rgb, "train"), find_pairs(idx, "train")
    for a, b in zip(pa, pb):
        assert np.array_equal(read_label(a.label1), read_label(b.label1))
        assert np.array_equal(read_label(a.label2), read_label(b.label2))
    da, db = SCDDataset(rgb, "train"), SCDDataset(idx, "train")
    for i in range(len(da)):
        for x, y in zip(da.raw(i), db.raw(i)):
            assert np.array_equal(x, y)


def test_find_pairs_reads_flat_and_split_layouts(tmp_path):
    make_layout(tmp_path / "flat", n=3)
    make_layout(tmp_path / "nested", n=3, split="train")
    make_layout(tmp_path / "nested", n=2, split="test", seed=1)
    assert [p.split for p in find_pairs(tmp_path / "flat")] == ["", "", ""]
    assert len(find_pairs(tmp_path / "nested")) == 5
    assert len(find_pairs(tmp_path / "nested", "test")) == 2
    with pytest.raises(SecondFormatError, match="empty dataset"):
        find_pairs(tmp_path / "nested", "val")


def test_an_unlabelled_split_like_second_test_is_skipped_not_an_error(tmp_path):
    make_layout(tmp_path, n=3, split="train")
    make_layout(tmp_path, n=2, split="test", seed=1)
    shutil.rmtree(tmp_path / "test" / "label1")
    shutil.rmtree(tmp_path / "test" / "label2")
    rep = validate(tmp_path)
    assert rep.ok and rep.summary["splits"] == {"train": 3}
    shutil.rmtree(tmp_path / "train" / "label2")  # a labelled split missing one folder is still an error
    assert any("no twin in label2/" in p for p in validate(tmp_path).problems)


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (hashlib.sha1(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_prepare_second_is_a_seeded_4_to_1_split_idempotent_and_leaves_src_untouched(tmp_path):
    src = make_layout(tmp_path / "SECOND", n=10)
    before = _snapshot(src)
    s1 = prepare_second(src, tmp_path / "work", seed=0)
    assert s1["counts"] == {"train": 8, "val": 2} and s1["files_copied"] == 40
    assert _snapshot(src) == before
    val1 = sorted(p.name for p in (tmp_path / "work/val/im1").iterdir())
    s2 = prepare_second(src, tmp_path / "work", seed=0)
    assert s2["files_copied"] == 0 and s2["files_removed"] == 0
    assert validate(tmp_path / "work").ok
    # another seed moves pairs; stale copies are removed, not left behind
    prepare_second(src, tmp_path / "work", seed=1)
    assert sum(1 for _ in (tmp_path / "work").rglob("*.png")) == 40
    shutil.rmtree(tmp_path / "work")
    assert sorted(p.name for p in (prepare_second(src, tmp_path / "w2", seed=0) and
                                   (tmp_path / "w2/val/im1").iterdir())) == val1


def test_prepare_second_follows_a_split_file(tmp_path):
    src = make_layout(tmp_path / "SECOND", n=5)
    f = tmp_path / "val.txt"
    f.write_text("# the validation names\n00001.png\n00004\n")
    s = prepare_second(src, tmp_path / "work", split_file=f)
    assert s["counts"] == {"train": 3, "val": 2}
    assert sorted(p.stem for p in (tmp_path / "work/val/label2").iterdir()) == ["00001", "00004"]
    f.write_text("00009\n")
    with pytest.raises(SecondFormatError, match="00009"):
        prepare_second(src, tmp_path / "work2", split_file=f)


def test_prepare_second_refuses_an_invalid_source_and_writes_nothing(tmp_path):
    src = make_layout(tmp_path / "SECOND", n=3)
    (src / "label1" / "00000.png").write_bytes(b"broken")
    with pytest.raises(SecondFormatError, match="00000.png"):
        prepare_second(src, tmp_path / "work")
    assert not (tmp_path / "work").exists()
    with pytest.raises(ValueError, match="outside the source"):
        prepare_second(src, src / "prepared")
