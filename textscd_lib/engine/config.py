"""The training configuration and its option metadata (chapter 05; ``textscd train``).

:class:`TrainConfig` is the one place where a training option is defined: its default (the paper's recipe, §4.1,
with the reference protocol's epochs and poly decay), its help text and how a command line parses it live in the
field's ``metadata`` (``help``, ``type``, optional ``flags`` and ``cli=False`` for the fields the ``textscd
train`` command fills in itself). ``textscd_lib.cli.train`` builds its options from these fields.

This module imports no torch, so ``textscd --help`` starts quickly.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from textscd_lib.common.paths import resolve, results_root
from textscd_lib.models.kinds import KINDS, TAILS

__all__ = ["KINDS", "PRECISIONS", "TrainConfig", "check_size", "option_fields"]

PRECISIONS = ("auto", "bf16", "fp32")

MIN_SIZE = 32  # the encoder's output stride: a side must be a multiple of it


def check_size(size: int | None) -> int | None:
    """``None`` (native size) or a side ≥ 32 that is a multiple of 32 (the ResNet34's stride); raises ValueError."""
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, int) or size < MIN_SIZE or size % MIN_SIZE:
        raise ValueError(f"size {size!r}: must be 'native' (None) or a multiple of {MIN_SIZE} that is at least "
                         f"{MIN_SIZE} (the encoder's stride)")
    return size


def _opt(default, help: str, type: str, **extra):
    return field(default=default, metadata={"help": help, "type": type, **extra})


@dataclass
class TrainConfig:
    """Everything a training run needs (chapter 05); defaults = the paper's recipe (§4.1) with the reference
    protocol's epochs and poly decay. ``data_root`` (a prepared folder) and, for TextSCD, ``text_features``
    (a file made by ``textscd features``) are the trainer's given inputs: it makes neither."""

    data_root: str = _opt("", "prepared data folder with train/ and val/ (textscd data synth | prepare-second)",
                          "str", shown="none, required")
    run: str = _opt("demo", "results/<run>/ to write into", "str", flags=("--run-name", "--run"))
    results_root: str = _opt("", "folder that holds the run folders ('': $TEXTSCD_RESULTS, else results)", "str")
    model: str = _opt("textscd", "which model of Table 1", "str", choices=KINDS)
    captions: str = _opt("oracle", "caption source the text features were made from (recorded; textscd train "
                         "reads it from the features file)", "str", cli=False)
    text_encoder: str = _opt("auto", "text encoder the features were made with (recorded; textscd train reads "
                             "it from the features file)", "str", cli=False)
    text_features: str | None = _opt(None, "text-feature file of the data's captions (textscd features); "
                                     "TextSCD needs it", "opt_str", shown="none")
    allow_empty_text: bool = _opt(False, "train on empty text on purpose (the caption ablation's 'empty' source; "
                                  "recorded in the run's warnings); otherwise more than 5 %% of pairs without a "
                                  "caption is refused", "flag")
    image_weights: str | None = _opt("auto", "ResNet34 weights: auto, imagenet, random or a file", "opt_str")
    width: int = _opt(128, "decoder channel width", "pos_int")
    tail: str = _opt("paper", "decoder tail after stride 4 (docs/performance.md)", "str", choices=TAILS)
    tgi_lr_scale: float = _opt(1.0, "learning-rate multiplier of the TGI parameters (ours, for the text-dynamics "
                               "study; the paper trains every parameter at one lr)", "float")
    zero_init_tgi: bool = _opt(False, "zero the TGI output projections at the start, so F_o = F_diff (ours, for the "
                               "text-dynamics study; the paper says nothing of the TGI's initialisation)", "flag")
    epochs: int = _opt(50, "epochs (reference protocol: 50)", "pos_int")
    batch_size: int = _opt(8, "pairs per step, the global batch: under torchrun the ranks share it, each "
                           "taking batch_size / world (paper §4.1: 8)", "pos_int")
    lr: float = _opt(0.1, "initial learning rate (paper §4.1: 0.1)", "float")
    momentum: float = _opt(0.9, "SGD momentum (paper §4.1: 0.9)", "float")
    nesterov: bool = _opt(False, "Nesterov momentum (reference protocol: on; paper: not said)", "flag")
    weight_decay: float = _opt(5e-4, "weight decay (paper §4.1: 5e-4)", "float")
    poly_power: float = _opt(1.5, "poly decay power lr·(1 − it/total)^p", "float")
    size: int | None = _opt(None, "train at SIZE×SIZE: 'native' or a multiple of 32 (≥ 32)", "size")
    normalization: str = _opt("second", "per-date mean/std table", "str")
    device: str = _opt("auto", "auto, cpu, cuda, cuda:1", "str")
    precision: str = _opt("auto", "auto = bf16 on CUDA, fp32 on CPU", "str", choices=PRECISIONS)
    channels_last: str | bool = _opt("auto", "auto (on CUDA), true, false", "auto_bool")
    compile: bool = _opt(False, "torch.compile the model", "flag")
    device_resident: str | bool = _opt("auto", "keep the uint8 dataset on the device: auto, true, false",
                                       "auto_bool")
    workers: int = _opt(4, "DataLoader workers of the streamed mode", "nonneg_int")
    seed: int = _opt(0, "seed of weights, batches and flips", "int")
    val_every: int = _opt(1, "validate every N epochs", "pos_int")
    max_steps_per_epoch: int | None = _opt(None, "cap the steps per epoch (quick runs)", "opt_pos_int")
    sync_every: int | None = _opt(None, "host syncs every N steps", "opt_pos_int", shown="1 on CPU, 50 on CUDA")
    resume: bool = _opt(False, "continue from results/<run>/checkpoints/<model>/last.pt", "flag")
    stop_after: int | None = _opt(None, "stop after N epochs in this call (continue later with --resume)",
                                  "opt_pos_int")
    out_dir: str | None = _opt(None, "checkpoint folder", "opt_str", shown="results/<run>/checkpoints/<model>")

    @classmethod
    def from_record(cls, record: dict, **changes) -> TrainConfig:
        """The config a run recorded (a checkpoint's ``config``, ``effective.json``), with ``changes``. Keys this
        version does not define are left out, so older records load: ``fast`` (the FAST switch, which the
        trainer never read; the notebooks' pipeline takes it as an argument) and any other retired option."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in {**record, **changes}.items() if k in known})

    def checkpoint_dir(self) -> Path:
        if self.out_dir:
            return resolve(self.out_dir)
        return results_root(self.results_root) / self.run / "checkpoints" / self.model

    def check(self) -> TrainConfig:
        """Refuse impossible values with one clear ValueError (the CLI checks the same at parse time)."""
        check_size(self.size)
        if self.model not in KINDS:
            raise ValueError(f"unknown model {self.model!r}; expected one of {', '.join(KINDS)}")
        if self.tail not in TAILS:
            raise ValueError(f"decoder tail {self.tail!r}: expected one of {', '.join(TAILS)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: expected one of {', '.join(PRECISIONS)}")
        for name in ("width", "epochs", "batch_size", "val_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} {v!r}: must be an integer >= 1")
        for name in ("max_steps_per_epoch", "sync_every", "stop_after"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{name} {v!r}: must be None or an integer >= 1")
        return self


def option_fields(cls=TrainConfig):
    """The fields a command line exposes (``metadata['cli']`` not False), in declaration order."""
    return [f for f in fields(cls) if f.metadata.get("cli", True)]
