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
with what to do (:class:`CheckpointError`). Loading never runs code: every read is ``weights_only=True``, with no
fallback. A file that holds pickled objects (the previous format pickled numpy RNG states; a crafted file pickles
whatever it likes) is refused in one line naming :func:`convert_checkpoint` (``textscd convert-checkpoint``), which
unpickles on the user's word that the file is trusted and writes the portable format.

A checkpoint records the data it was trained on (``data_root`` and :func:`data_fingerprint`): a resume on other
data is refused like a resume with other settings, while the same data in another place (a run or data folder
moved or copied) resumes, saying in one log line that the path changed. Writing a checkpoint that fails (a full
disk) is one line naming the file (:func:`save_checkpoint`), with the previous checkpoint intact.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import logging
import pickle
import re
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from textscd_lib.common.io import atomic_torch_save, atomic_write_json, atomic_write_text
from textscd_lib.common.paths import resolve
from textscd_lib.data.second import find_pairs
from textscd_lib.models.textscd import build_model
from textscd_lib.text.features import scene_log_digest

log = logging.getLogger(__name__)

FORMAT = "textscd-checkpoint/2"

# trajectory-defining fields: a resume with other values would not continue the same run
RESUME_KEYS = ("model", "epochs", "batch_size", "lr", "momentum", "nesterov", "weight_decay", "poly_power",
               "size", "seed", "captions", "text_encoder", "width", "tail", "max_steps_per_epoch", "normalization",
               "tgi_lr_scale", "zero_init_tgi")
# what a checkpoint written before an option existed was trained with (a missing key means this value)
RESUME_DEFAULTS = {"tail": "paper", "tgi_lr_scale": 1.0, "zero_init_tgi": False}


CONVERT = "textscd convert-checkpoint {path} --out NEW.pt"

# the temporary names of common.io.atomic_write for the files the trainer writes into its checkpoint folder
OWN_FILES = ("last.pt", "best.pt", "log.csv", "log.json")
TEMP_NAME = re.compile(r"\.(?:" + "|".join(re.escape(n) for n in OWN_FILES) + r")\.[A-Za-z0-9_]+\.tmp")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read; the message names it and says what to do."""


class CheckpointWriteError(OSError):
    """A checkpoint that could not be written (a full disk, a quota, a read-only or forbidden folder): the
    message names the file; the previous checkpoint is left as it was and no temporary file stays behind. An
    OSError, so that the command line reports it as a write failure in one line."""


# errnos the command line reports as a folder that cannot be written; any other failure of a write is taken as
# a full disk (torch's stream writer says only "file write failed")
WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)
TORCH_WRITE_FAILURE = re.compile(r"PytorchStreamWriter|file write failed|unexpected pos", re.IGNORECASE)


def save_checkpoint(path: str | Path, ck: dict) -> Path:
    """Write ``ck`` to ``path`` atomically (:func:`textscd_lib.common.io.atomic_torch_save`). A failed write
    (an OSError, or the RuntimeError with which torch's stream writer reports a full disk) is raised as one
    :class:`CheckpointWriteError` naming the file; the temporary file is removed and the previous ``path``
    stays intact (the rename never happened)."""
    path = Path(path)
    try:
        return atomic_torch_save(path, ck)
    except OSError as e:
        code = e.errno if e.errno in WRITE_ERRNOS else errno.ENOSPC
        raise CheckpointWriteError(code, _cannot_write(path, e.strerror or str(e)), str(path)) from None
    except RuntimeError as e:
        if not TORCH_WRITE_FAILURE.search(str(e)):
            raise
        raise CheckpointWriteError(errno.ENOSPC, _cannot_write(path, str(e)), str(path)) from None


def _cannot_write(path: Path, why: str) -> str:
    first = " ".join(why.split())[:160]
    return (f"{path}: disk full / cannot write the checkpoint ({first}); the previous {path.name} is kept, "
            "no temporary file is left")


def data_fingerprint(data_root: str | Path) -> str:
    """16 hex digits identifying a data folder's content without reading its images: its scene log (a
    mini-SECOND) and every pair's split, name and file sizes. Two mini-SECONDs with the same pair names differ."""
    root = Path(data_root)
    rows = [[p.split, p.name, *(f.stat().st_size for f in p.files)] for p in find_pairs(root)]
    blob = repr([scene_log_digest(root), sorted(rows)])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def clean_stale_temps(folder: str | Path) -> list[Path]:
    """Remove the temporary files a killed checkpoint write left in ``folder`` (only names of our own atomic
    writes of :data:`OWN_FILES`, ``.last.pt.XXXX.tmp``); called under the folder's lock. Returns them."""
    folder = Path(folder)
    gone = [f for f in folder.glob(".*.tmp") if TEMP_NAME.fullmatch(f.name) and f.is_file()] if folder.is_dir() else []
    for f in gone:
        f.unlink(missing_ok=True)
        log.info("%s: removed a temporary file left by an interrupted write", f)
    return gone


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
                    text_features, fingerprint: str | None = None) -> dict:
    """The portable part of a checkpoint (all of ``best.pt``; ``last.pt`` adds optimizer, history and RNG)."""
    return {"format": FORMAT, "model": model.state_dict(), "epoch": epoch, "step": step, "config": plain(asdict(cfg)),
            "model_kind": cfg.model, "text_dim": int(text_dim), "width": int(cfg.width), "best": plain(best),
            "scores": plain(scores), "substitutes": list(substitutes), "data_root": str(data_root),
            "data_fingerprint": fingerprint,
            "text_features": None if text_features is None else text_features.encoder_name,
            "text_features_hash": None if text_features is None else text_features.captions_hash}


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict:
    """A checkpoint's dict, read with ``weights_only=True`` and nothing else (loading never runs code);
    :class:`CheckpointError` (one line naming the file and what to do) when it is missing, empty, truncated, not
    a checkpoint, or holds pickled objects (then the line names ``textscd convert-checkpoint``)."""
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
        if "weights_only" in str(e) or "Weights only" in str(e):
            raise CheckpointError(
                f"{path}: holds pickled Python objects (an older textscd's format, or a file not written by "
                f"textscd), which are never unpickled here: if you trust this file, convert it with "
                f"{CONVERT.format(path=path)} (that unpickles it), else {fix}") from None
        raise CheckpointError(f"{path}: not a readable checkpoint ({size} bytes, truncated?): {fix}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        why = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise CheckpointError(f"{path}: truncated or not a checkpoint ({size} bytes; {why}): {fix}") from None
    if not isinstance(ck, dict) or "model" not in ck or "model_kind" not in ck:
        raise CheckpointError(f"{path}: not a textscd checkpoint (no model weights/kind): {fix}")
    return ck


def convert_checkpoint(old: str | Path, new: str | Path) -> Path:
    """Rewrite a checkpoint of the previous format as the portable one (``textscd convert-checkpoint``).

    This UNPICKLES ``old`` (``weights_only=False``), which runs whatever code the file carries: only call it on
    a file you trust (one your own training wrote). Numpy values become Python numbers and lists; the pickled
    numpy/python RNG states of the previous format are dropped (training never draws from them). ``new`` is
    written atomically and read back with the safe loader; it may not be ``old``."""
    old, new = resolve(old), resolve(new)
    if not old.is_file():
        raise FileNotFoundError(f"{old}: no such checkpoint")
    if new == old:
        raise ValueError(f"{new}: --out must be a new file, not the checkpoint being converted")
    try:
        ck = torch.load(old, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, AttributeError,
            ModuleNotFoundError) as e:
        raise CheckpointError(f"{old}: cannot be unpickled ({str(e).splitlines()[0][:120]})") from None
    if not isinstance(ck, dict) or "model" not in ck or "model_kind" not in ck:
        raise CheckpointError(f"{old}: not a textscd checkpoint (no model weights/kind)")
    out = {k: v if k in ("model", "optimizer") else plain(v) for k, v in ck.items() if k != "rng"}
    rng = ck.get("rng") or {}
    if all(isinstance(rng.get(k), torch.Tensor) for k in ("torch", "augment")):
        out["rng"] = {k: rng.get(k) for k in ("torch", "cuda", "augment")}
    elif "optimizer" in out:
        log.warning("%s: no torch/augmentation RNG state: the converted file is a portable model, not a resume point",
                    old)
        out = {k: v for k, v in out.items() if k not in ("optimizer", "history")}
    out["format"] = FORMAT
    atomic_torch_save(new, out)
    try:
        load_checkpoint(new)
    except CheckpointError:
        new.unlink(missing_ok=True)
        raise CheckpointError(f"{old}: holds objects other than tensors and Python values; not convertible") from None
    return new


def check_resume(ck: dict, cfg, path: Path, text_features=None, data_root: str | Path | None = None,
                 fingerprint: str | None = None) -> None:
    """Refuse to resume ``path`` when ``cfg`` (a TrainConfig) differs in a trajectory-defining field, when the
    text features were made from other captions than the checkpoint's, or when the data differ (their
    :func:`data_fingerprint`; the folder's path only for a checkpoint that records no fingerprint): one line
    naming each difference."""
    if "optimizer" not in ck or "rng" not in ck:
        raise CheckpointError(f"{path}: holds no optimizer/RNG state (a best.pt?): resume needs the run's last.pt")
    old = ck.get("config", {})
    diff = {k: (old.get(k, RESUME_DEFAULTS.get(k)), getattr(cfg, k)) for k in RESUME_KEYS}
    diff = {k: ab for k, ab in diff.items() if ab[0] != ab[1]}
    now = None if text_features is None else text_features.captions_hash
    if ck.get("text_features_hash") and now and ck["text_features_hash"] != now:
        diff["text features (caption hash)"] = (ck["text_features_hash"], now)
    diff.update(_data_differences(ck, data_root, fingerprint))
    if diff:
        raise ValueError(f"{path}: cannot resume, the checkpoint was trained with other settings "
                         + ", ".join(f"{k}={a!r} (now {b!r})" for k, (a, b) in diff.items())
                         + "; resume with the same settings and data, or train into another run")


def _data_differences(ck: dict, data_root, fingerprint: str | None) -> dict:
    """{what: (checkpoint's, now)} for the data a resume is given: the fingerprint decides when both sides have
    one (a moved folder with the same content resumes), the folder's path otherwise."""
    if data_root is None:
        return {}
    recorded, given = ck.get("data_fingerprint"), fingerprint
    if recorded and given:
        if recorded != given:
            return {"data_root": (ck.get("data_root"), str(data_root)), "data fingerprint": (recorded, given)}
        was = ck.get("data_root")
        if was and resolve(was) != resolve(data_root):
            log.info("the data folder moved: trained on %s, resuming on %s (the same content, fingerprint %s)",
                     was, resolve(data_root), given)
        return {}
    was = ck.get("data_root")
    if was and resolve(was) != resolve(data_root):
        return {"data_root": (was, str(data_root))}
    return {}


class _DropRandomInit(logging.Filter):
    """Drops only the encoder's "random init" notice, which would be false while a checkpoint is loaded; the
    logger's level and every other message stay as its owner set them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "random init" not in record.getMessage()


def load_model(checkpoint: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the model saved in a checkpoint (chapters 05, 06); ``model.checkpoint`` keeps its metadata."""
    path = resolve(checkpoint)
    ck = load_checkpoint(path)
    encoder_log = logging.getLogger("textscd_lib.models.image_encoder")
    hide = _DropRandomInit()  # the encoder is built without weights, but the checkpoint's weights come next
    encoder_log.addFilter(hide)
    try:
        model = build_model(ck["model_kind"], text_dim=ck["text_dim"], weights=None, width=ck["width"],
                            tail=ck.get("config", {}).get("tail", "paper"))  # runs before the option: paper
    finally:
        encoder_log.removeFilter(hide)
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
