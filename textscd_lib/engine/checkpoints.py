"""Checkpoints of the trainer (chapter 05): what a checkpoint holds, resuming a run exactly, and loading a
trained model back (chapters 05-07).

A checkpoint (``best.pt`` / ``last.pt``, written atomically by :mod:`textscd_lib.engine.trainer`) holds the model and
optimizer state, the epoch and step, the run's config, the history, the best score and every random-number
generator's state, so that a resumed CPU run is bit-identical to an uninterrupted one. A resume with other
trajectory-defining settings (:data:`RESUME_KEYS`) is refused, naming each difference.
"""

from __future__ import annotations

import csv
import logging
import random
from pathlib import Path

import numpy as np
import torch

from textscd_lib.common.io import atomic_write_json, atomic_write_text
from textscd_lib.common.paths import resolve
from textscd_lib.models.textscd import build_model

# trajectory-defining fields: a resume with other values would not continue the same run
RESUME_KEYS = ("model", "epochs", "batch_size", "lr", "momentum", "nesterov", "weight_decay", "poly_power",
               "size", "seed", "captions", "text_encoder", "text_features", "width", "max_steps_per_epoch",
               "normalization")


def unwrap(model):
    """The plain module under DDP and torch.compile wrappers (what a checkpoint stores)."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


def rng_state(aug_gen: torch.Generator) -> dict:
    """Every generator a training run draws from (torch, numpy, python, CUDA, augmentation)."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "augment": aug_gen.get_state()}


def restore_rng(state: dict, aug_gen: torch.Generator) -> None:
    """Put back the generators saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    aug_gen.set_state(state["augment"].cpu() if aug_gen.device.type == "cpu" else state["augment"])


def check_resume(ck: dict, cfg, path: Path) -> None:
    """Refuse to resume ``path`` when ``cfg`` (a TrainConfig) differs in a trajectory-defining field."""
    old = ck.get("config", {})
    diff = {k: (old.get(k), getattr(cfg, k)) for k in RESUME_KEYS if old.get(k) != getattr(cfg, k)}
    if diff:
        raise ValueError(f"{path}: cannot resume, the checkpoint was trained with other settings "
                         + ", ".join(f"{k}={a!r} (now {b!r})" for k, (a, b) in diff.items()))


def load_model(checkpoint: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the model saved in a checkpoint (chapters 05, 06); ``model.checkpoint`` keeps its metadata."""

    path = resolve(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint (train first: textscd train)")
    ck = torch.load(path, map_location="cpu", weights_only=False)
    quiet = logging.getLogger("textscd_lib.models.image_encoder")  # "random init" is false here: weights come next
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        model = build_model(ck["model_kind"], text_dim=ck["text_dim"], weights=None, width=ck["width"])
    finally:
        quiet.setLevel(level)
    model.load_state_dict(ck["model"])
    model.checkpoint = {k: ck[k] for k in ("epoch", "step", "config", "best", "scores", "text_features")
                        if k in ck}
    return model.to(device).eval()


def write_history(history: list[dict], out: Path) -> tuple[Path, Path]:
    """The per-epoch history as ``log.csv`` and ``log.json`` in ``out`` (atomically)."""
    import io

    cols: list[str] = []
    for row in history:
        cols += [k for k in row if k not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    w.writerows(history)

    return atomic_write_text(out / "log.csv", buf.getvalue()), atomic_write_json(out / "log.json", history)
