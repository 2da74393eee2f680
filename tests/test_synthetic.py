"""mini-SECOND generator: round trip through validation, determinism, scene log, SECOND-like statistics,
pseudo-changes that defeat naive differencing, designed ambiguity, ensure/resolve caching."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from textscd_lib.cli import main as cli
from textscd_lib.data.second import CLASSES, find_pairs, read_image, read_label
from textscd_lib.data.synthetic import (
    ensure_mini_second,
    make_pair,
    read_scene_log,
    resolve_data_root,
    synthesize,
)
from textscd_lib.data.validate import validate


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("m") / "mini", pairs=10, size=64, seed=0, ambiguity=0.5)


def test_synth_then_validate_round_trip_through_the_cli(tmp_path, capsys):
    out = tmp_path / "ms"
    assert cli.main(["data", "synth", "--out", str(out), "--pairs", "6", "--size", "48", "--seed", "1"]) == 0
    assert cli.main(["data", "validate", str(out)]) == 0
    text = capsys.readouterr().out
    assert "OK" in text and "6 pairs" in text and "48x48" in text


def test_layout_is_real_second_with_rgb_images_and_colour_labels(mini):
    rep = validate(mini)
    assert rep.ok, rep.problems
    assert rep.summary["splits"] == {"train": 8, "val": 2}
    from PIL import Image

    p = find_pairs(mini, "train")[0]
    assert Image.open(p.im1).mode == "RGB" and Image.open(p.label1).mode == "RGB"
    meta = json.loads((mini / "mini_second.json").read_text())
    assert meta["params"]["pairs"] == 10 and meta["params"]["ambiguity"] == 0.5


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path):
    def digest(root):
        return hashlib.sha1(b"".join(p.read_bytes() for p in sorted(root.rglob("*.png")))).hexdigest()

    a = synthesize(tmp_path / "a", 4, 48, seed=7)
    b = synthesize(tmp_path / "b", 4, 48, seed=7)
    c = synthesize(tmp_path / "c", 4, 48, seed=8)
    assert digest(a) == digest(b) != digest(c)


def test_scene_log_describes_the_labelled_changes(mini):
    log = read_scene_log(mini)
    assert len(log) == 10
    words = {"top left", "top", "top right", "left", "centre", "right", "bottom left", "bottom", "bottom right"}
    for p in find_pairs(mini):
        rec = log[p.name]
        l1, l2 = read_label(p.label1), read_label(p.label2)
        assert rec["split"] == p.split and rec["size"] == 64
        assert rec["changed_area"] == pytest.approx((l1 > 0).mean(), abs=1e-4)
        assert sum(c["area"] for c in rec["changes"]) <= rec["changed_area"] + 1e-3
        for c in rec["changes"]:
            r0, c0, r1, c1 = c["bbox"]
            box = (l1[r0:r1, c0:c1] == CLASSES.index(c["from"])) & (l2[r0:r1, c0:c1] == CLASSES.index(c["to"]))
            assert box.mean() > 0 and c["where"] in words and c["from"] != c["to"]
        assert {"illumination", "noise"} <= {x["kind"] for x in rec["pseudo_changes"]}


def test_class_and_change_frequencies_are_second_like():
    trans, ratios = np.zeros((7, 7)), []
    for i in range(40):
        (_, _, l1, l2), _ = make_pair(np.random.default_rng([0, i]), 64)
        ratios.append((l1 > 0).mean())
        np.add.at(trans, (l1.ravel(), l2.ravel()), 1)
    assert 0.12 < np.mean(ratios) < 0.3
    per_class = (trans[1:, 1:].sum(0) + trans[1:, 1:].sum(1)) / (2 * trans[1:, 1:].sum())
    water, ground, lowveg, tree, building, playground = per_class
    assert ground + lowveg + building > 0.65
    assert water < 0.08 and playground < 0.08 and building > 0.1


def test_pseudo_changes_defeat_naive_differencing():
    diffs, changes = [], []
    for i in range(12):
        (a, b, l1, _), _ = make_pair(np.random.default_rng([0, i]), 64)
        diffs.append(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean(-1).ravel())
        changes.append((l1 > 0).ravel())
    d, c = np.concatenate(diffs), np.concatenate(changes)
    assert d[~c].mean() > 8  # unchanged pixels differ visibly between dates
    best = max(2 * (p & c).sum() / (p.sum() + c.sum()) for p in (d[:, None] > np.percentile(d, range(5, 100, 5))).T)
    assert best < 0.7, f"naive |im1 - im2| thresholding reaches F1 {best:.2f}: pseudo-changes too weak"


def test_ambiguity_shares_one_texture_in_changed_regions_of_that_fraction_of_scenes():
    recs_on = [make_pair(np.random.default_rng([0, i]), 64, ambiguity=1.0) for i in range(12)]
    recs_off = [make_pair(np.random.default_rng([0, i]), 64, ambiguity=0.0)[1] for i in range(12)]
    assert not any(r["ambiguous"] for r in recs_off)
    amb = [(arrays, r) for arrays, r in recs_on if r["ambiguous"]]
    assert len(amb) >= 10
    for (_, _, l1, l2), r in amb:
        a = r["ambiguous"][0]
        assert a["drawn_as"] in a["classes"] and a["area"] > 0
        (hidden,) = [CLASSES.index(x) for x in a["classes"] if x != a["drawn_as"]]
        assert (l1 == hidden).any() or (l2 == hidden).any()  # a changed region of that class looks like its partner


def test_ensure_mini_second_regenerates_only_when_parameters_change(tmp_path):
    root = ensure_mini_second(tmp_path / "ms", fast=True, pairs=4, size=48)
    stamp = (root / "mini_second.json").stat().st_mtime_ns
    assert ensure_mini_second(tmp_path / "ms", fast=True, pairs=4, size=48) == root
    assert (root / "mini_second.json").stat().st_mtime_ns == stamp
    ensure_mini_second(tmp_path / "ms", fast=True, pairs=5, size=48)
    assert len(find_pairs(root)) == 5


def test_resolve_data_root_validates_a_given_folder_and_names_bad_files(tmp_path):
    from textscd_lib.data.second import SecondFormatError

    root = synthesize(tmp_path / "real", 4, 48, val_fraction=0.25)
    assert resolve_data_root(str(root), True, tmp_path / "run") == root
    assert not (tmp_path / "run" / "substitutes.json").exists()
    bad = find_pairs(root, "val")[0].im2
    bad.write_bytes(b"junk")
    with pytest.raises(SecondFormatError, match=bad.name):
        resolve_data_root(str(root), True, tmp_path / "run")


def test_empty_data_root_means_mini_second_recorded_as_a_substitute(tmp_path):
    root = resolve_data_root("", True, tmp_path)
    assert (root / "mini_second.json").is_file() and read_image(find_pairs(root)[0].im1).shape[-1] == 3
    subs = json.loads((tmp_path / "substitutes.json").read_text())
    assert subs["data"]["used"].startswith("mini-SECOND") and subs["data"]["instead_of"] == "SECOND"


def test_parallel_generation_writes_the_same_dataset_as_serial(tmp_path):
    import hashlib

    from textscd_lib.data.synthetic import synthesize

    def digest(root):
        files = sorted(p for p in root.rglob("*.png"))
        return [(p.relative_to(root).as_posix(), hashlib.md5(p.read_bytes()).hexdigest()) for p in files], \
            (root / "scene_log.jsonl").read_text()

    serial = synthesize(tmp_path / "serial", pairs=6, size=48, seed=5, workers=1)
    parallel = synthesize(tmp_path / "parallel", pairs=6, size=48, seed=5, workers=2)
    assert digest(serial) == digest(parallel)
    assert len(digest(serial)[0]) == 24
