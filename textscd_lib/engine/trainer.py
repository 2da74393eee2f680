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

The trainer is one stage of data -> captions -> text features -> train -> predict -> analyse: it reads a
prepared data folder (``cfg.data_root``: ``textscd data synth`` or ``prepare-second``) and, for TextSCD, a
text-feature file (``cfg.text_features``: ``textscd features``), and makes neither; a missing input is refused
with the command that makes it. ``textscd_lib.course.pipeline`` chains the stages for the notebooks. It records
in the run's ``substitutes.json`` what stood in for the paper's setting: the data (a mini-SECOND folder carries
``mini_second.json``), the captions and the text encoder (as the features file records them) and the image
encoder. Predictions are written by ``textscd_lib.engine.stages.predict_to_folder`` (``textscd predict``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from textscd_lib.common.device import pick_device
from textscd_lib.common.io import atomic_torch_save, atomic_write_json
from textscd_lib.common.lock import run_lock
from textscd_lib.common.runs import record_effective, run_dir
from textscd_lib.data.dataset import NORMALIZATION
from textscd_lib.data.second import find_pairs
from textscd_lib.engine.batches import BatchSource, Normalizer, load_split
from textscd_lib.engine.checkpoints import (
    check_resume,
    clean_stale_temps,
    data_fingerprint,
    load_checkpoint,
    make_checkpoint,
    plain,
    restore_rng,
    rng_state,
    unwrap,
    write_history,
)
from textscd_lib.engine.config import TrainConfig
from textscd_lib.engine.evaluation import evaluate_source
from textscd_lib.engine.inference import autocast_for, forward_batch, lookup_features
from textscd_lib.engine.sharding import epoch_batches, rank_batch_size
from textscd_lib.engine.stages import check_data_folder, load_features_input, record_inputs
from textscd_lib.models.losses import total_loss
from textscd_lib.models.textscd import KINDS, build_model
from textscd_lib.text.features import check_features_data, check_text_features, record_text_check

log = logging.getLogger(__name__)

__all__ = ["TrainConfig", "TrainingDiverged", "train", "poly_lr"]

def poly_lr(base: float, it: int, total: int, power: float) -> float:
    """Per-iteration poly decay lr·(1 − it/total)^power (docs/facts.md#training-protocol, chapter 05)."""
    return base * max(0.0, 1.0 - it / max(total, 1)) ** power


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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
    """Rank 0 prepares shared files (the decoded dataset cache) before the others read them."""
    if world > 1 and rank != 0:
        dist.barrier()
    yield
    if world > 1 and rank == 0:
        dist.barrier()


def train(cfg: TrainConfig) -> dict:
    """Train Baseline or TextSCD with ``cfg`` (chapter 05); returns history, best/last metrics and paths
    (``epochs_run``: the epochs this call trained, 0 when ``resume`` found the run finished).

    ``cfg.data_root`` must be a prepared data folder and, for TextSCD, ``cfg.text_features`` a text-feature file
    (module docstring); ``textscd_lib.course.pipeline.train_pipeline`` makes both and exports predictions.
    Under ``torchrun`` (or inside an initialised process group) it trains data-parallel; rank 0 alone
    writes checkpoints and logs."""
    rank, world, owns = _init_distributed(cfg)
    try:
        with _writer_locks(cfg) if rank == 0 else contextlib.nullcontext():
            return _train(cfg, rank, world)
    finally:
        if owns:
            dist.destroy_process_group()


@contextlib.contextmanager
def _writer_locks(cfg: TrainConfig):
    """One writer per run folder and per checkpoint folder (common/lock.py; ``--out-dir`` may be shared by two
    runs): rank 0 alone writes, so rank 0 alone takes them. Under the lock, the temporary files a killed
    checkpoint write left behind are removed."""
    what = f"train {cfg.model} into run {cfg.run} ({' '.join(sys.argv)[:120]})"
    with run_lock(run_dir(cfg.run, cfg.results_root), what), run_lock(cfg.checkpoint_dir(), what):
        clean_stale_temps(cfg.checkpoint_dir())
        yield


def _train(cfg: TrainConfig, rank: int, world: int) -> dict:  # noqa: C901 - one loop, read top to bottom

    if cfg.model not in KINDS:
        raise ValueError(f"unknown model {cfg.model!r}; expected one of {', '.join(KINDS)}")
    cfg.check()
    data_root = check_data_folder(cfg.data_root)             # given inputs: refused with the command that
    text_features = load_features_input(cfg)                  # makes them when missing
    device = pick_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    per_rank = rank_batch_size(cfg.batch_size, world)  # --batch-size is the global batch, shared by the ranks
    if cfg.compile and device.type != "cuda":
        raise ValueError(f"compile: torch.compile is used on CUDA only; device {device} (drop --compile)")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # static shapes: cuDNN times its algorithms once and keeps the fastest
    precision = ("bf16" if device.type == "cuda" else "fp32") if cfg.precision == "auto" else cfg.precision
    channels_last = device.type == "cuda" if cfg.channels_last == "auto" else bool(cfg.channels_last)
    sync_every = cfg.sync_every or (1 if device.type == "cpu" else 50)
    run_path = run_dir(cfg.run, cfg.results_root)
    out = cfg.checkpoint_dir()
    writer = rank == 0
    last_path, best_path = out / "last.pt", out / "best.pt"
    fingerprint = data_fingerprint(data_root)  # recorded in the checkpoints; a resume on other data is refused
    resume_ck = None
    if cfg.resume and last_path.is_file():  # refused before anything of the run is recorded
        resume_ck = load_checkpoint(last_path, device)
        check_resume(resume_ck, cfg, last_path, text_features, data_root, fingerprint)
    if text_features is not None:  # text reaches the model or the run stops (text/features.py)
        names = [p.name for split in ("train", "val") for p in find_pairs(data_root, split)]
        empty_source = cfg.captions == "empty" or text_features.provenance.get("source") == "empty"
        check = check_text_features(text_features, names, allow_empty=cfg.allow_empty_text or empty_source,
                                    split="train and val")
        check_features_data(text_features, data_root)  # features of another dataset with the same names: refused
        if writer:
            record_text_check(run_path, f"text_{out.name}", [check])
    if writer:  # what this training really used (after FAST), next to the parameters as given (run.json)
        record_effective(run_path, f"train_{out.name}", {
            k: getattr(cfg, k) for k in ("epochs", "batch_size", "lr", "size", "max_steps_per_epoch", "seed",
                                         "captions", "text_encoder", "allow_empty_text", "fast")})

    with _rank0_first(rank, world):  # rank 0 decodes the dataset cache once, the others then read it
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
    model = build_model(cfg.model, text_dim=text_dim, weights=cfg.image_weights, width=cfg.width,
                        tail=cfg.tail).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    text_subs = record_inputs(run_path, cfg.model, data_root, text_features, model.substitutes, writer)
    subs = [*model.substitutes, *text_subs]
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                          weight_decay=cfg.weight_decay)
    aug_gen = torch.Generator(device="cpu")
    start_epoch, step, history, best = 0, 0, [], None
    if resume_ck is not None:
        ck, resume_ck = resume_ck, None
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
        return epoch_batches(train_src.n, per_rank, epoch, cfg.seed, True, rank, world,
                             cfg.max_steps_per_epoch)

    steps_per_epoch = len(batches_of(0))
    total_steps = steps_per_epoch * cfg.epochs
    shard = [int(i) for b in batches_of(start_epoch) for i in b]
    t_start, epochs_done, scores = time.perf_counter(), 0, None
    for epoch in range(start_epoch, cfg.epochs):
        if cfg.stop_after is not None and epochs_done >= cfg.stop_after:
            break
        run_model.train()
        aug_gen.manual_seed(cfg.seed * 1_000_003 + epoch * 1009)  # the same draws on every rank: each keeps its own
        batches = batches_of(epoch)
        sums = torch.zeros(len(PARTS), dtype=torch.float64, device=device)
        step_t = torch.full((), step, dtype=torch.long, device=device)
        first_bad = torch.full((), -1, dtype=torch.long, device=device)
        bar = tqdm(total=len(batches), desc=f"{cfg.model} {epoch + 1}/{cfg.epochs}", unit="step",
                   disable=not writer or os.environ.get("TQDM_DISABLE", "0") not in ("", "0"), leave=False)
        t0 = time.perf_counter()
        lr = cfg.lr
        for k, batch in enumerate(train_src.batches(batches, aug_gen, rank, world)):
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
                                pairs_s=f"{(k + 1) * per_rank * world / (time.perf_counter() - t0):.1f}")
        bar.close()
        if world > 1:
            dist.all_reduce(sums)
        train_s = time.perf_counter() - t0
        n_steps = max(len(batches), 1) * world
        row = {"epoch": epoch + 1, "step": step, "lr": lr,
               **{f"train_{p}": float(sums[i]) / n_steps for i, p in enumerate(PARTS)},
               "train_seconds": round(train_s, 3),
               "pairs_per_s": round(len(batches) * per_rank * world / max(train_s, 1e-9), 2)}
        if (epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs:
            t1 = time.perf_counter()
            scores = evaluate_source(unwrap(run_model), val_src, feats_val, per_rank, precision, rank, world)
            row.update({f"val_{m}": scores[m] for m in ("OA", "mIoU", "SeK", "F_scd")})
            row["val_seconds"] = round(time.perf_counter() - t1, 3)
        history.append(row)
        epochs_done += 1
        improved = scores is not None and "val_F_scd" in row and math.isfinite(row["val_F_scd"]) and (
            best is None or row["val_F_scd"] > best["F_scd"])
        if improved:
            best = {"epoch": epoch + 1, **{m: scores[m] for m in ("OA", "mIoU", "SeK", "F_scd")}}
        if writer:
            ck = make_checkpoint(unwrap(run_model), cfg, epoch + 1, step, text_dim, best, scores, subs, data_root,
                                 text_features, fingerprint)
            if improved:
                atomic_torch_save(best_path, ck)  # portable: weights + config, no optimizer state
            atomic_torch_save(last_path, {**ck, "optimizer": opt.state_dict(), "history": plain(history),
                                          "rng": rng_state(aug_gen)})
            write_history(history, out)
    seconds = time.perf_counter() - t_start
    if writer and history and not best_path.exists() and last_path.exists():
        log.warning("%s: no finite val F_scd in any epoch; best.pt = the last epoch's weights", cfg.model)
        last = load_checkpoint(last_path)
        atomic_torch_save(best_path, {k: v for k, v in last.items() if k not in ("optimizer", "history", "rng")})
    if world > 1:
        dist.barrier()
    result = {"model": cfg.model, "history": history, "best": best, "last": scores, "device": str(device),
              "precision": precision, "channels_last": channels_last, "resident": resident,
              "world": world, "rank": rank, "steps": step, "seconds": seconds, "epochs_run": epochs_done,
              "substitutes": subs,
              "shard": shard, "data_root": str(data_root), "text_features": cfg.text_features,
              "paths": {"best": str(best_path), "last": str(last_path), "log_csv": str(out / "log.csv"),
                        "log_json": str(out / "log.json")}}
    finished = bool(history) and history[-1]["epoch"] == cfg.epochs
    if writer and finished:
        atomic_write_json(run_path / "metrics" / f"train_{cfg.model}.json",
                          {k: v for k, v in result.items() if k != "shard"})
    return result
