"""Loading never runs code (chapter 05): a checkpoint (``last.pt`` on ``--resume``, ``best.pt`` on ``predict``)
or a text-feature file that carries a pickled object whose ``__reduce__`` would run a shell command is refused in
one line, exit 2, and the command never runs. An old-format checkpoint is converted only by ``textscd
convert-checkpoint``, which says that it unpickles and writes the portable format."""

from __future__ import annotations

import os
import shlex

import pytest
import torch

from textscd_lib.cli.main import main
from textscd_lib.data.synthetic import ensure_mini_second
from textscd_lib.engine.checkpoints import CheckpointError, load_checkpoint, load_model

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

TINY = ["--epochs", "2", "--batch-size", "4", "--width", "16", "--max-steps-per-epoch", "1",
        "--image-weights", "random", "--device", "cpu", "--seed", "0"]


class Payload:
    """A pickled object that, when unpickled, runs a shell command creating ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A TextSCD run stopped after one of two epochs (data, oracle captions, text features, last.pt, best.pt)."""
    from textscd_lib.engine.stages import make_text_features
    from textscd_lib.text.captions import caption_dataset

    root = tmp_path_factory.mktemp("safe")
    data = ensure_mini_second(fast=True)
    caption_dataset(data, "oracle", root / "caps.jsonl", seed=0)
    make_text_features(root / "caps.jsonl", root / "features.pt", "auto")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", "--run-name", "r", "--results-root", str(root), "--model", "textscd", "--data-root",
                     str(data), "--text-features", str(root / "features.pt"), "--stop-after", "1", *TINY]) == 0
    finally:
        torch.set_num_threads(n)
    ckpts = root / "r" / "checkpoints" / "textscd"
    return {"root": root, "data": data, "features": root / "features.pt", "last": ckpts / "last.pt",
            "best": ckpts / "best.pt"}


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if "error" in ln]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def plant(path, marker, source):
    """``path`` rewritten as ``source`` (a checkpoint or feature dict) plus a pickled :class:`Payload`."""
    state = torch.load(source, map_location="cpu", weights_only=True)
    torch.save({**state, "extra": Payload(marker)}, path)


def test_resume_from_a_last_pt_carrying_code_refuses_and_never_runs_it(run, tmp_path, capsys):
    marker = tmp_path / "pwned"
    results = tmp_path / "results"
    evil = results / "r" / "checkpoints" / "textscd" / "last.pt"
    evil.parent.mkdir(parents=True)
    plant(evil, marker, run["last"])
    code = main(["train", "--run-name", "r", "--results-root", str(results), "--model", "textscd", "--resume",
                 "--data-root", str(run["data"]), "--text-features", str(run["features"]), *TINY])
    assert not marker.exists()
    assert code == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(evil) in line and "textscd convert-checkpoint" in line


def test_predict_with_a_best_pt_carrying_code_refuses_and_never_runs_it(run, tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "best.pt"
    plant(evil, marker, run["best"])
    code = main(["predict", "--checkpoint", str(evil), "--data", str(run["data"]), "--features",
                 str(run["features"]), "--out", str(tmp_path / "pred")])
    assert not marker.exists()
    assert code == 2
    assert str(evil) in one_error_line(capsys.readouterr().err)
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load_model(evil)
    assert not marker.exists()


def test_text_features_carrying_code_are_refused_and_never_run_it(run, tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "features.pt"
    plant(evil, marker, run["features"])
    code = main(["train", "--run-name", "f", "--results-root", str(tmp_path), "--model", "textscd", "--data-root",
                 str(run["data"]), "--text-features", str(evil), *TINY])
    assert not marker.exists()
    assert code == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(evil) in line and "never unpickled" in line


def test_convert_checkpoint_says_it_unpickles_and_writes_a_portable_file_with_the_resume_state(run, tmp_path, capsys):
    import numpy as np

    old_ck = torch.load(run["last"], map_location="cpu", weights_only=True)
    old_ck["rng"] = {**old_ck["rng"], "numpy": np.random.get_state()}  # what the previous format pickled
    old_ck["best"] = {k: np.float64(v) if isinstance(v, float) else v for k, v in old_ck["best"].items()}
    old = tmp_path / "old.pt"
    torch.save(old_ck, old)
    with pytest.raises(CheckpointError, match="convert-checkpoint"):
        load_checkpoint(old)
    new = tmp_path / "new" / "last.pt"
    assert main(["convert-checkpoint", str(old), "--out", str(new)]) == 0
    out = capsys.readouterr()
    assert "UNPICKLES" in out.err and "only run it on a file you trust" in out.err and str(new) in out.out
    ck = load_checkpoint(new)  # the safe loader reads it
    assert set(ck["rng"]) == {"torch", "cuda", "augment"} and isinstance(ck["best"]["OA"], float)
    assert all(torch.equal(ck["model"][k], old_ck["model"][k]) for k in ck["model"])
    assert "optimizer" in ck and ck["epoch"] == old_ck["epoch"]


def test_convert_checkpoint_help_warns_that_it_unpickles(capsys):
    with pytest.raises(SystemExit):
        main(["convert-checkpoint", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "UNPICKLES" in text and "a file you trust" in text and "portable format" in text
