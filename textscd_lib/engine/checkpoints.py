"""Checkpoints of the trainer (chapter 05): what a checkpoint holds, resuming a run exactly, and loading a
trained model back (chapters 05-07).

Both files are plain Python values and tensors, loadable with ``torch.load(path, weights_only=True)`` (no pickled
code or numpy objects), written atomically by :mod:`textscd_lib.engine.trainer`:

- ``best.pt`` (portable): the weights, the run's config, the model kind, ``text_dim``, ``width``, epoch, step,
  the best and last scores, the substitutes and the text features' encoder and caption hash — what rebuilding and
  using the model needs. No optimizer state.
- ``last.pt`` (exact resume): the same plus the optimizer state, the history and the random-number generators
  that training draws from, as tensors: torch's global generator (it seeds the streamed DataLoader's workers),
  CUDA's, and the augmentation generator. Python's ``random`` and numpy's global generator are seeded at the start
  of a run but never drawn from while training (batches and flips have their own generators), so they are not
  stored. A resumed CPU run is bit-identical to an uninterrupted one. A resume with other trajectory-defining
  settings (:data:`RESUME_KEYS`, or text features made from other captions) is refused, naming each difference.

A checkpoint that cannot be read (zero bytes, truncated by a killed copy, not a checkpoint) is named in one line
with what to do (:class:`CheckpointError`).
"""

from __future__ import annotations

import csv
import io
import logging
import pickle
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from textscd_lib.common.io import atomic_write_json, atomic_write_text
from textscd_lib.common.paths import resolve
from textscd_lib.models.textscd import build_model

log = logging.getLogger(__name__)

FORMAT = "textscd-checkpoint/2"

# trajectory-defining fields: a resume with other values would not continue the same run
RESUME_KEYS = ("model", "epochs", "batch_size", "lr", "momentum", "nesterov", "weight_decay", "poly_power",
               "size", "seed", "captions", "text_encoder", "width", "max_steps_per_epoch", "normalization")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read; the message names it and says what to do."""


def unwrap(model):
    """The plain module under DDP and torch.compile wrappers (what a checkpoint stores)."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


def plain(value):
    """``value`` with numpy scalars/arrays turned into Python numbers/lists (``weights_only`` loads them)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def rng_state(aug_gen: torch.Generator) -> dict:
    """The generators training draws from, as tensors: torch, CUDA, augmentation (module docstring)."""
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "augment": aug_gen.get_state()}


def restore_rng(state: dict, aug_gen: torch.Generator) -> None:
    """Put back the generators saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    aug_gen.set_state(state["augment"].cpu() if aug_gen.device.type == "cpu" else state["augment"])


def make_checkpoint(model, cfg, epoch: int, step: int, text_dim: int, best, scores, substitutes, data_root,
                    text_features) -> dict:
    """The portable part of a checkpoint (all of ``best.pt``; ``last.pt`` adds optimizer, history and RNG)."""
    return {"format": FORMAT, "model": model.state_dict(), "epoch": epoch, "step": step, "config": plain(asdict(cfg)),
            "model_kind": cfg.model, "text_dim": int(text_dim), "width": int(cfg.width), "best": plain(best),
            "scores": plain(scores), "substitutes": list(substitutes), "data_root": str(data_root),
            "text_features": None if text_features is None else text_features.encoder_name,
            "text_features_hash": None if text_features is None else text_features.captions_hash}


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", legacy: bool = False) -> dict:
    """A checkpoint's dict, read with ``weights_only=True``; :class:`CheckpointError` (one line naming the file
    and what to do) when it is missing, empty, truncated or not a checkpoint of this version. ``legacy=True``
    (the trainer's ``--resume`` of a run it wrote itself) reads the previous format (numpy/python RNG states
    pickled) with a warning; nothing else unpickles objects."""
    path = resolve(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint (train first: textscd train)")
    size = path.stat().st_size
    fix = ("resume from best.pt, or delete it and train again" if path.name == "last.pt"
           else "delete it and train again (or use the run's last.pt)")
    if size == 0:
        raise CheckpointError(f"{path}: empty checkpoint (0 bytes, an interrupted write?): {fix}")
    try:
        ck = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        if ("weights_only" in str(e) or "Weights only" in str(e)) and legacy:
            log.warning("%s: a checkpoint of the previous format (pickled numpy/python RNG states); resuming "
                        "from it with pickle: only do so with your own runs", path)
            return torch.load(path, map_location=device, weights_only=False)
        if "weights_only" in str(e) or "Weights only" in str(e):
            raise CheckpointError(f"{path}: written by an older textscd (pickled objects, not plain tensors): "
                                  f"{fix}") from None
        raise CheckpointError(f"{path}: not a readable checkpoint ({size} bytes, truncated?): {fix}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        why = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise CheckpointError(f"{path}: truncated or not a checkpoint ({size} bytes; {why}): {fix}") from None
    if not isinstance(ck, dict) or "model" not in ck or "model_kind" not in ck:
        raise CheckpointError(f"{path}: not a textscd checkpoint (no model weights/kind): {fix}")
    return ck


def check_resume(ck: dict, cfg, path: Path, text_features=None) -> None:
    """Refuse to resume ``path`` when ``cfg`` (a TrainConfig) differs in a trajectory-defining field, or when
    the text features were made from other captions than the checkpoint's."""
    if "optimizer" not in ck or "rng" not in ck:
        raise CheckpointError(f"{path}: holds no optimizer/RNG state (a best.pt?): resume needs the run's last.pt")
    old = ck.get("config", {})
    diff = {k: (old.get(k), getattr(cfg, k)) for k in RESUME_KEYS if old.get(k) != getattr(cfg, k)}
    now = None if text_features is None else text_features.captions_hash
    if ck.get("text_features_hash") and now and ck["text_features_hash"] != now:
        diff["text features (caption hash)"] = (ck["text_features_hash"], now)
    if diff:
        raise ValueError(f"{path}: cannot resume, the checkpoint was trained with other settings "
                         + ", ".join(f"{k}={a!r} (now {b!r})" for k, (a, b) in diff.items()))


def load_model(checkpoint: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the model saved in a checkpoint (chapters 05, 06); ``model.checkpoint`` keeps its metadata."""
    path = resolve(checkpoint)
    ck = load_checkpoint(path)
    quiet = logging.getLogger("textscd_lib.models.image_encoder")  # "random init" is false here: weights come next
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        model = build_model(ck["model_kind"], text_dim=ck["text_dim"], weights=None, width=ck["width"],
                            tail=ck.get("config", {}).get("tail", "paper"))  # runs before the option: paper
    finally:
        quiet.setLevel(level)
    model.load_state_dict(ck["model"])
    model.checkpoint = {k: ck[k] for k in ("epoch", "step", "config", "best", "scores", "text_features",
                                           "text_features_hash", "substitutes", "data_root") if k in ck}
    model.checkpoint["path"] = str(path)
    return model.to(device).eval()


def write_history(history: list[dict], out: Path) -> tuple[Path, Path]:
    """The per-epoch history as ``log.csv`` and ``log.json`` in ``out`` (atomically)."""
    cols: list[str] = []
    for row in history:
        cols += [k for k in row if k not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    w.writerows(history)
    return atomic_write_text(out / "log.csv", buf.getvalue()), atomic_write_json(out / "log.json", history)
