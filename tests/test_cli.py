"""The ``textscd`` command's contract: options generated from TrainConfig's field metadata, no abbreviations,
numeric options checked at parse time, one exit-code rule (0 ok, 1 failure, 2 usage, tracebacks only for the
unexpected), ``--version``, a ``--help`` that does not import torch, and a train run that never writes into a
committed run folder by default."""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys

import pytest

import textscd_lib
from textscd_lib.cli.main import build_parser, exit_code, main, run
from textscd_lib.engine.config import TrainConfig, option_fields


def _run(*args, **kw):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, **kw)


def test_help_does_not_import_torch():
    code = ("import sys; from textscd_lib.cli.main import build_parser; p = build_parser(); "
            "p.format_help(); print('torch' in sys.modules)")
    out = _run("-c", code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    helped = _run("-m", "textscd_lib", "train", "--help")
    assert helped.returncode == 0 and "--text-features" in helped.stdout


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"textscd {textscd_lib.__version__}"


def test_every_cli_field_of_trainconfig_is_an_option_with_its_metadata_help():
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    by_dest = {a.dest: a for a in train._actions}
    for f in option_fields(TrainConfig):
        assert f.name in by_dest, f.name
        assert f.metadata["help"] in by_dest[f.name].help
    hidden = {f.name for f in dataclasses.fields(TrainConfig)} - {f.name for f in option_fields(TrainConfig)}
    assert hidden == {"captions", "text_encoder"}  # filled in from the features file
    assert by_dest["model"].choices == ("textscd", "baseline")


@pytest.mark.parametrize("argv, message", [
    (["train", "--resum"], "unrecognized arguments: --resum"),                   # no abbreviations
    (["data", "synth", "--ou", "x"], "the following arguments are required: --out"),  # nor in nested parsers
    (["train", "--size", "0"], "--size: must be 'native' or a multiple of 32"),   # 0 no longer means native
    (["train", "--size", "48"], "multiple of 32"),
    (["train", "--size", "big"], "expected 'native' or a multiple of 32"),
    (["train", "--batch-size", "0"], "--batch-size: must be >= 1"),
    (["train", "--epochs", "0"], "--epochs: must be >= 1"),
    (["train", "--model", "unet"], "invalid choice: 'unet'"),
    (["data", "synth", "--out", "x", "--pairs", "0"], "--pairs: must be >= 1"),
])
def test_bad_options_exit_2_with_argparse_message(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_size_native_and_multiples_of_32_are_accepted():
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    assert train.parse_args(["--size", "native"]).size is None
    assert train.parse_args(["--size", "64"]).size == 64
    assert train.parse_args([]).size is None


def test_exit_code_rule_user_error_2_failure_1_unexpected_keeps_traceback(tmp_path, capsys):
    # a missing input is a usage error: one line, exit 2
    assert main(["train", "--data-root", str(tmp_path / "nowhere"), "--run-name", "x",
                 "--results-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("textscd train: error: ") and "textscd data synth" in err and len(err.splitlines()) == 1
    # a failure the library reports in words: exit 1, one line
    from textscd_lib.engine.trainer import TrainingDiverged

    assert main(["train", "--resume"]) == 2  # a new timestamped run has nothing to resume
    assert "--resume continues a run: name it with --run-name" in capsys.readouterr().err
    assert exit_code(TrainingDiverged("nan")) == 1
    assert exit_code(FileNotFoundError("x")) == 2 and exit_code(ValueError("x")) == 2
    # anything else (torch's RuntimeError, OSError, a bug) is unexpected: the traceback is kept
    assert exit_code(RuntimeError("CUDA error")) is None and exit_code(OSError("disk")) is None

    def boom(args):
        raise RuntimeError("an unexpected torch error")

    with pytest.raises(RuntimeError, match="an unexpected torch error"):
        run(argparse.Namespace(func=boom, verbose=False, command="env"))

    def missing(args):
        raise FileNotFoundError("x.pt: no such file")

    assert run(argparse.Namespace(func=missing, verbose=False, command="predict")) == 2
    assert capsys.readouterr().err == "textscd predict: error: x.pt: no such file\n"


def test_data_validate_failure_exits_1(tmp_path):
    (tmp_path / "bad" / "im1").mkdir(parents=True)
    (tmp_path / "bad" / "im1" / "a.png").write_bytes(b"not a png")
    assert main(["data", "validate", str(tmp_path / "bad")]) == 1


def test_train_without_run_name_writes_a_new_run_folder_and_says_where(tmp_path):
    """`textscd train` with no --run-name must not write into results/demo (committed): a new timestamped run."""
    from textscd_lib.data.synthetic import ensure_mini_second

    data = ensure_mini_second(fast=True)
    out = _run("-m", "textscd_lib", "train", "--model", "baseline", "--data-root", str(data), "--epochs", "1",
               "--batch-size", "4", "--width", "16", "--max-steps-per-epoch", "1", "--image-weights", "random",
               "--device", "cpu", "--results-root", str(tmp_path),
               env={**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    runs = [p.name for p in tmp_path.iterdir()]
    assert len(runs) == 1 and runs[0].startswith("train-") and runs[0] != "demo"
    assert f"run '{runs[0]}', writing checkpoints and logs to {tmp_path / runs[0]}" in out.stderr
    assert (tmp_path / runs[0] / "checkpoints" / "baseline" / "best.pt").is_file()


def test_constants_and_option_lists_have_one_definition():
    """NUM_CLASSES/CLASSES live in data/second.py, the model kinds in models/kinds.py, the API-key variables in
    text/gemini.py; the modules that need them read those (models may not import data: checked here instead)."""
    from textscd_lib import metrics
    from textscd_lib.course import env
    from textscd_lib.data import second
    from textscd_lib.engine import config
    from textscd_lib.models import kinds, textscd
    from textscd_lib.text import gemini

    assert second.NUM_CLASSES == len(second.CLASSES) == textscd.NUM_CLASSES == metrics.NUM_CLASSES
    assert metrics.NUM_CLASSES is second.NUM_CLASSES
    assert textscd.KINDS is kinds.KINDS and config.KINDS is kinds.KINDS
    assert env.KEY_VARS is gemini.KEY_VARS


def test_prepare_second_with_a_bad_source_is_an_input_error_exit_2(tmp_path, capsys):
    (tmp_path / "src" / "im1").mkdir(parents=True)
    (tmp_path / "src" / "im1" / "a.png").write_bytes(b"not a png")
    assert main(["data", "prepare-second", str(tmp_path / "src"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("textscd data: error: ") and "a.png" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing written half-way
