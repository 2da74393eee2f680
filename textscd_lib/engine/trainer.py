"""The trainer: Baseline or TextSCD on SECOND / mini-SECOND (chapter 05; validation metrics of chapter 06).

The default of :class:`TrainConfig` is the paper's recipe (§4.1: SGD lr 0.1, momentum 0.9, weight decay 5e-4,
batch 8, 512² = native size) with the SECOND reference protocol's (docs/facts.md#training-protocol) per-iteration poly decay
lr·(1 − it/total)^1.5, 50 epochs and best checkpoint by val F_scd. Loss: eq. (12) plus the lineage's semantic CE (``textscd_lib.models.losses``).

On CUDA the fast path is on by default: bf16 autocast, channels_last, text features computed once
(no text-encoder forward per step), the uint8 dataset resident on the GPU with augmentation there
(``textscd_lib.engine.batches``), the loss summed on the device and read back once per ``sync_every`` steps, and
the validation confusion matrix accumulated on the device. On CPU everything is plain fp32 and a run is
bit-identical when interrupted and resumed (``resume=True``). Multi-GPU: launch with ``torchrun``; rank 0
alone writes. Checkpoints and logs are written atomically.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from textscd_lib.common.device import pick_device
from textscd_lib.common.io import atomic_torch_save, atomic_write_json
from textscd_lib.common.paths import resolve
from textscd_lib.common.runs import clear_substitute, record_substitute_line, run_dir
from textscd_lib.data.dataset import NORMALIZATION, DecodedCache
from textscd_lib.data.synthetic import resolve_data_root
from textscd_lib.engine.batches import (
    BatchSource,
    Normalizer,
    autocast_for,
    epoch_batches,
    evaluate_source,
    export_predictions,
    forward_batch,
    load_split,
    lookup_features,
)
from textscd_lib.engine.checkpoints import (
    check_resume,
    load_model,
    restore_rng,
    rng_state,
    unwrap,
    write_history,
)
from textscd_lib.models.losses import total_loss
from textscd_lib.models.textscd import build_model
from textscd_lib.text.captions import ensure_captions, load_captions
from textscd_lib.text.encoder import load_text_encoder
from textscd_lib.text.features import TextFeatures, build_text_features, features_path

log = logging.getLogger(__name__)

__all__ = ["TrainConfig", "TrainingDiverged", "train", "poly_lr"]

@dataclass
class TrainConfig:
    """Everything a training run needs (chapter 05); defaults = the paper's recipe (§4.1) with the reference
    protocol's epochs and poly decay (module docstring)."""

    data_root: str = ""                 # "" = the embedded mini-SECOND; else a prepared SECOND folder
    run: str = "demo"                   # results/<run>/
    results_root: str = "results"
    model: str = "textscd"              # "textscd" | "baseline"
    captions: str = "oracle"            # caption source (results/<run>/captions/<source>.jsonl)
    text_encoder: str = "auto"
    text_features: str | None = None    # a prebuilt TextFeatures file (skips captions and the text encoder)
    image_weights: str | None = "auto"
    width: int = 128
    epochs: int = 50
    batch_size: int = 8
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    poly_power: float = 1.5
    size: int | None = None             # None = native (512 on SECOND)
    normalization: str = "second"
    device: str = "auto"
    precision: str = "auto"             # "auto" = bf16 on CUDA, fp32 on CPU; or "bf16" | "fp32"
    channels_last: str | bool = "auto"  # "auto" = on CUDA only
    compile: bool = False
    device_resident: str | bool = "auto"  # "auto" = when the uint8 dataset fits on the device
    workers: int = 4                    # DataLoader workers of the streamed mode
    seed: int = 0
    val_every: int = 1
    max_steps_per_epoch: int | None = None
    sync_every: int | None = None       # host syncs for loss/NaN checks: None = 1 on CPU, 50 on CUDA
    resume: bool = False
    stop_after: int | None = None       # stop after this many epochs in this call (time box / interruption)
    export: bool = True                 # write the best model's val predictions (SECOND layout, RGB)
    out_dir: str | None = None          # derived: results/<run>/checkpoints/<model>
    fast: bool = field(default_factory=lambda: os.environ.get("TEXTSCD_FAST", "0") == "1")

    def checkpoint_dir(self) -> Path:
        if self.out_dir:
            return resolve(self.out_dir)
        return resolve(self.results_root) / self.run / "checkpoints" / self.model


def poly_lr(base: float, it: int, total: int, power: float) -> float:
    """Per-iteration poly decay lr·(1 − it/total)^power (docs/facts.md#training-protocol, chapter 05)."""
    return base * max(0.0, 1.0 - it / max(total, 1)) ** power


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _text_features(cfg: TrainConfig, data_root: Path, run_path: Path, record: bool = True):
    """Captions → frozen text encoder → cached per-pair features (chapters 02, 03). None for Baseline."""
    if cfg.model == "baseline":
        return None, []

    if cfg.text_features:
        return TextFeatures.load(resolve(cfg.text_features)), []

    # the run's seed draws the offline captions (oracle wording, noise, shuffle), as chapters 02, 06 and 07 do
    store = ensure_captions(data_root, cfg.captions, run_path, record=record, seed=cfg.seed)
    encoder = load_text_encoder(cfg.text_encoder, device="cpu")
    path = features_path(run_path, encoder.name, cfg.captions)
    feats = build_text_features(encoder, load_captions(store), path)
    return feats, [encoder.substitute] if encoder.substitute else []


class TrainingDiverged(RuntimeError):
    """A NaN/inf loss: the run stops and names the step."""


# ------------------------------------------------------------------------------------------------------
# the training loop
# ------------------------------------------------------------------------------------------------------
PARTS = ("ce1", "ce2", "bce", "dice", "sim", "total")


def _init_distributed(cfg: TrainConfig) -> tuple[int, int, bool]:
    """(rank, world, owns_group): joins a torchrun launch (env WORLD_SIZE) or an existing process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        cuda = torch.cuda.is_available() and cfg.device != "cpu"
        dist.init_process_group("nccl" if cuda else "gloo")
        return dist.get_rank(), dist.get_world_size(), True
    return 0, 1, False


@contextlib.contextmanager
def _rank0_first(rank: int, world: int):
    """Rank 0 prepares shared files (data, captions, caches) before the others read them."""
    if world > 1 and rank != 0:
        dist.barrier()
    yield
    if world > 1 and rank == 0:
        dist.barrier()


def train(cfg: TrainConfig) -> dict:
    """Train Baseline or TextSCD with ``cfg`` (chapter 05); returns history, best/last metrics and paths
    (``epochs_run``: the epochs this call trained, 0 when ``resume`` found the run finished).

    Under ``torchrun`` (or inside an initialised process group) it trains data-parallel; rank 0 alone
    writes checkpoints, logs and predictions."""
    rank, world, owns = _init_distributed(cfg)
    try:
        return _train(cfg, rank, world)
    finally:
        if owns:
            dist.destroy_process_group()


def _train(cfg: TrainConfig, rank: int, world: int) -> dict:  # noqa: C901 - one loop, read top to bottom

    if cfg.model not in ("textscd", "baseline"):
        raise ValueError(f"unknown model {cfg.model!r}; expected 'textscd' or 'baseline'")
    device = pick_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    precision = ("bf16" if device.type == "cuda" else "fp32") if cfg.precision == "auto" else cfg.precision
    channels_last = device.type == "cuda" if cfg.channels_last == "auto" else bool(cfg.channels_last)
    sync_every = cfg.sync_every or (1 if device.type == "cpu" else 50)
    run_path = run_dir(cfg.run, cfg.results_root)
    out = cfg.checkpoint_dir()
    writer = rank == 0

    with _rank0_first(rank, world):
        data_root = resolve_data_root(cfg.data_root, cfg.fast, run_path, record=writer)  # rank 0 records
        text_features, subs = _text_features(cfg, data_root, run_path, record=writer)
        train_names, train_images, train_labels = load_split(data_root, "train", cfg.size)
        val_names, val_images, val_labels = load_split(data_root, "val", cfg.size)
    nbytes = sum(a.nbytes for a in (train_images, train_labels, val_images, val_labels))
    resident = BatchSource.fits_on(device, nbytes) if cfg.device_resident == "auto" else bool(cfg.device_resident)
    norm = Normalizer.create(NORMALIZATION[cfg.normalization], device)
    train_src = BatchSource(train_images, train_labels, device, norm, resident, cfg.workers, channels_last)
    val_src = BatchSource(val_images, val_labels, device, norm, resident, cfg.workers, channels_last)
    feats_train = lookup_features(text_features, train_names, device)
    feats_val = lookup_features(text_features, val_names, device)

    _seed_everything(cfg.seed)  # identical initial weights on every rank
    text_dim = text_features.dim if text_features is not None else 512
    model = build_model(cfg.model, text_dim=text_dim, weights=cfg.image_weights, width=cfg.width).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if writer:  # the same part names as the notebooks use, so run.json holds one entry per part
        parts = [("image_encoder", model.substitutes)]
        if cfg.model != "baseline" and not cfg.text_features:  # the Baseline reads no text; given features
            # were recorded by whoever encoded them
            parts.append(("text_encoder", subs))
        for part, lines in parts:
            for line in lines:
                record_substitute_line(run_path, part, line)
            if not lines:
                clear_substitute(run_path, part)
    subs = [*model.substitutes, *subs]
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                          weight_decay=cfg.weight_decay)
    aug_gen = torch.Generator(device="cpu")
    start_epoch, step, history, best = 0, 0, [], None
    last_path, best_path = out / "last.pt", out / "best.pt"
    if cfg.resume and last_path.is_file():
        ck = torch.load(last_path, map_location=device, weights_only=False)
        check_resume(ck, cfg, last_path)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        start_epoch, step, history, best = ck["epoch"], ck["step"], ck["history"], ck["best"]
        restore_rng(ck["rng"], aug_gen)
        log.info("resuming %s from %s (epoch %d, step %d)", cfg.model, last_path, start_epoch, step)
    elif cfg.resume:
        log.warning("resume asked but %s does not exist: starting from scratch", last_path)
    run_model = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        run_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        run_model = torch.compile(run_model)
    autocast = autocast_for(device, precision)

    def batches_of(epoch: int) -> list[np.ndarray]:
        return epoch_batches(train_src.n, cfg.batch_size, epoch, cfg.seed, True, rank, world,
                             cfg.max_steps_per_epoch)

    steps_per_epoch = len(batches_of(0))
    total_steps = steps_per_epoch * cfg.epochs
    shard = [int(i) for b in batches_of(start_epoch) for i in b]
    t_start, epochs_done, scores = time.perf_counter(), 0, None
    for epoch in range(start_epoch, cfg.epochs):
        if cfg.stop_after is not None and epochs_done >= cfg.stop_after:
            break
        run_model.train()
        aug_gen.manual_seed(cfg.seed * 1_000_003 + epoch * 1009 + rank)
        batches = batches_of(epoch)
        sums = torch.zeros(len(PARTS), dtype=torch.float64, device=device)
        step_t = torch.full((), step, dtype=torch.long, device=device)
        first_bad = torch.full((), -1, dtype=torch.long, device=device)
        bar = tqdm(total=len(batches), desc=f"{cfg.model} {epoch + 1}/{cfg.epochs}", unit="step",
                   disable=not writer or os.environ.get("TQDM_DISABLE", "0") not in ("", "0"), leave=False)
        t0 = time.perf_counter()
        lr = cfg.lr
        for k, batch in enumerate(train_src.batches(batches, aug_gen)):
            lr = poly_lr(cfg.lr, step, total_steps, cfg.poly_power)
            for g in opt.param_groups:
                g["lr"] = lr
            out_ = forward_batch(run_model, batch, feats_train, autocast)
            loss, parts = total_loss(out_, batch, as_float=False)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sums += torch.stack([parts[p] for p in PARTS]).double()
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss.detach()), step_t, first_bad)
            step_t += 1
            step += 1
            bar.update(1)
            if step % sync_every == 0 or k == len(batches) - 1:
                if world > 1:
                    dist.all_reduce(first_bad, op=dist.ReduceOp.MAX)
                bad = int(first_bad)  # the one host sync per sync_every steps
                if bad >= 0:
                    bar.close()
                    raise TrainingDiverged(
                        f"{cfg.model}: non-finite loss at step {bad + 1} (epoch {epoch + 1}, "
                        f"step {bad - epoch * steps_per_epoch + 1} of {steps_per_epoch}, lr {lr:.3g}); "
                        f"lower the learning rate (now {cfg.lr}) or check the data")
                bar.set_postfix(loss=f"{float(sums[-1]) / (k + 1):.4f}", lr=f"{lr:.3g}",
                                pairs_s=f"{(k + 1) * cfg.batch_size * world / (time.perf_counter() - t0):.1f}")
        bar.close()
        if world > 1:
            dist.all_reduce(sums)
        train_s = time.perf_counter() - t0
        n_steps = max(len(batches), 1) * world
        row = {"epoch": epoch + 1, "step": step, "lr": lr,
               **{f"train_{p}": float(sums[i]) / n_steps for i, p in enumerate(PARTS)},
               "train_seconds": round(train_s, 3),
               "pairs_per_s": round(len(batches) * cfg.batch_size * world / max(train_s, 1e-9), 2)}
        if (epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs:
            t1 = time.perf_counter()
            scores = evaluate_source(unwrap(run_model), val_src, feats_val, cfg.batch_size, precision, rank, world)
            row.update({f"val_{m}": scores[m] for m in ("OA", "mIoU", "SeK", "F_scd")})
            row["val_seconds"] = round(time.perf_counter() - t1, 3)
        history.append(row)
        epochs_done += 1
        improved = scores is not None and "val_F_scd" in row and math.isfinite(row["val_F_scd"]) and (
            best is None or row["val_F_scd"] > best["F_scd"])
        if improved:
            best = {"epoch": epoch + 1, **{m: scores[m] for m in ("OA", "mIoU", "SeK", "F_scd")}}
        if writer:
            ck = {"model": unwrap(run_model).state_dict(), "optimizer": opt.state_dict(), "epoch": epoch + 1,
                  "step": step, "config": asdict(cfg), "model_kind": cfg.model, "text_dim": text_dim,
                  "width": cfg.width, "rng": rng_state(aug_gen), "history": history, "best": best,
                  "scores": scores, "substitutes": subs, "data_root": str(data_root),
                  "text_features": None if text_features is None else text_features.encoder_name}
            atomic_torch_save(last_path, ck)
            if improved:
                atomic_torch_save(best_path, ck)
            write_history(history, out)
    seconds = time.perf_counter() - t_start
    if writer and history and not best_path.exists() and last_path.exists():
        log.warning("%s: no finite val F_scd in any epoch; best.pt = last.pt", cfg.model)
        atomic_torch_save(best_path, torch.load(last_path, map_location="cpu", weights_only=False))
    if world > 1:
        dist.barrier()
    result = {"model": cfg.model, "history": history, "best": best, "last": scores, "device": str(device),
              "precision": precision, "channels_last": channels_last, "resident": resident,
              "world": world, "rank": rank, "steps": step, "seconds": seconds, "epochs_run": epochs_done,
              "substitutes": subs,
              "shard": shard, "data_root": str(data_root),
              "paths": {"best": str(best_path), "last": str(last_path), "log_csv": str(out / "log.csv"),
                        "log_json": str(out / "log.json")}}
    finished = bool(history) and history[-1]["epoch"] == cfg.epochs
    if writer and cfg.export and finished and best_path.exists():

        best_model = load_model(best_path, device)
        pred_root = run_path / "predictions" / cfg.model / "val"
        export_predictions(best_model, DecodedCache(data_root, "val"), text_features, pred_root, device,
                           cfg.batch_size)
        result["paths"]["predictions"] = str(pred_root)
        atomic_write_json(run_path / "metrics" / f"train_{cfg.model}.json",
                          {k: v for k, v in result.items() if k != "shard"})
    return result
