"""The trainer: Baseline or TextSCD on SECOND / mini-SECOND (chapter 05; validation metrics of chapter 06).

The default of :class:`TrainConfig` is the paper's recipe (§4.1: SGD lr 0.1, momentum 0.9, weight decay 5e-4,
batch 8, 512² = native size) with the SECOND reference protocol's (docs/facts.md#training-protocol) per-iteration poly decay
lr·(1 − it/total)^1.5, 50 epochs and best checkpoint by val F_scd. Loss: eq. (12) plus the lineage's semantic CE (``textscd_lib.models.losses``).

On CUDA the fast path is on by default: bf16 autocast, channels_last, text features computed once
(no text-encoder forward per step), the uint8 dataset resident on the GPU with augmentation there
(``textscd_lib.engine.batches``), the loss summed on the device and read back once per ``sync_every`` steps, and
the validation confusion matrix accumulated on the device. On CPU everything is plain fp32 and a run is
bit-identical when interrupted and resumed (``resume=True``). cuDNN's autotuner is on for a CUDA run only and
put back as it was afterwards (``textscd_lib.engine.cudnn``). Multi-GPU: launch with ``torchrun``; rank 0 alone
writes, and every rank validates with rank 0's BatchNorm statistics, so the scores reported are those of the
saved weights. Checkpoints and logs are written atomically; a write that fails is one line naming the file.

:func:`_train` reads as the recipe: set up, check and record the inputs, load the data, build model and optimiser,
resume, then per epoch :func:`train_one_epoch`, :func:`validate` and :func:`save`.

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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from textscd_lib.common.device import pick_device
from textscd_lib.common.io import atomic_write_json
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
    save_checkpoint,
    write_history,
)
from textscd_lib.engine.config import TrainConfig
from textscd_lib.engine.cudnn import cudnn_benchmark
from textscd_lib.engine.evaluation import evaluate_source
from textscd_lib.engine.inference import autocast_for, forward_batch, lookup_features
from textscd_lib.engine.sharding import epoch_batches, rank_batch_size
from textscd_lib.engine.stages import check_data_folder, load_features_input, record_inputs
from textscd_lib.models.losses import total_loss
from textscd_lib.models.textscd import build_model
from textscd_lib.text.features import (
    TextFeatures,
    check_features_data,
    check_text_features,
    record_text_check,
)

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
METRICS = ("OA", "mIoU", "SeK", "F_scd")


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


def _train(cfg: TrainConfig, rank: int, world: int) -> dict:
    """The recipe in the order it runs: set up the device and this rank, check and record the inputs, load the
    data, build model and optimiser, resume, then per epoch train, validate and save; the result last."""
    run = _setup(cfg, rank, world)
    resume_ck = _resume_point(run)  # refused before anything of the run is recorded
    _check_and_record_inputs(run)
    with cudnn_benchmark(run.device.type == "cuda"):  # static shapes: autotuned once; put back afterwards
        data = _load_data(run)
        net = _build(run)
        state = _resume(run, resume_ck, net)
        _wrap(run, net)
        shard = [int(i) for b in _epoch_batches(run, data, state.epoch) for i in b]
        t_start, epochs_done = time.perf_counter(), 0
        for epoch in range(state.epoch, cfg.epochs):
            if cfg.stop_after is not None and epochs_done >= cfg.stop_after:
                break
            row = train_one_epoch(run, net, data, state, epoch)
            improved = validate(run, net, data, state, row, epoch)
            epochs_done += 1
            if run.writer:
                save(run, net, state, improved)
        return _finish(run, net, state, data, shard, time.perf_counter() - t_start, epochs_done)


# ------------------------------------------------------------------------------------------------------
# the steps
# ------------------------------------------------------------------------------------------------------
@dataclass
class _Run:
    """What every step of one training shares: the checked inputs, the device, this process's rank and where
    it writes (``writer``: rank 0)."""

    cfg: TrainConfig
    rank: int
    world: int
    device: torch.device
    per_rank: int  # pairs per step on this rank: --batch-size is the global batch, shared by the ranks
    precision: str
    channels_last: bool
    sync_every: int
    data_root: Path
    text_features: TextFeatures | None
    fingerprint: str  # of the data folder, recorded in the checkpoints: a resume on other data is refused
    run_path: Path
    out: Path

    @property
    def writer(self) -> bool:
        return self.rank == 0

    @property
    def last_path(self) -> Path:
        return self.out / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.out / "best.pt"


@dataclass
class _Data:
    """The train and val splits as batch sources on the device, with their text features (None: Baseline)."""

    train: BatchSource
    val: BatchSource
    feats_train: tuple | None
    feats_val: tuple | None
    resident: bool


@dataclass
class _Net:
    """The model (plain, as checkpoints store it), what runs it (DDP/compiled wrapper), optimiser, the
    augmentation generator and what the run records of the model."""

    model: torch.nn.Module
    opt: torch.optim.Optimizer
    aug_gen: torch.Generator
    text_dim: int
    substitutes: list[str]
    run_model: torch.nn.Module | None = None
    autocast: object = None


@dataclass
class _State:
    """What carries from epoch to epoch (and through a resume): the epoch to start at, the step counter, the
    history, the best validation scores and the last ones."""

    epoch: int = 0
    step: int = 0
    history: list[dict] = field(default_factory=list)
    best: dict | None = None
    scores: dict | None = None


def _setup(cfg: TrainConfig, rank: int, world: int) -> _Run:
    """Check the config and the given inputs (refused naming the command that makes a missing one), pick the
    device (this rank's GPU under torchrun) and settle precision, memory format and host syncs for it."""
    cfg.check()
    data_root = check_data_folder(cfg.data_root)
    text_features = load_features_input(cfg)
    device = pick_device(cfg.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    per_rank = rank_batch_size(cfg.batch_size, world)
    if cfg.compile and device.type != "cuda":
        raise ValueError(f"compile: torch.compile is used on CUDA only; device {device} (drop --compile)")
    precision = ("bf16" if device.type == "cuda" else "fp32") if cfg.precision == "auto" else cfg.precision
    channels_last = device.type == "cuda" if cfg.channels_last == "auto" else bool(cfg.channels_last)
    return _Run(cfg=cfg, rank=rank, world=world, device=device, per_rank=per_rank, precision=precision,
                channels_last=channels_last, sync_every=cfg.sync_every or (1 if device.type == "cpu" else 50),
                data_root=data_root, text_features=text_features, fingerprint=data_fingerprint(data_root),
                run_path=run_dir(cfg.run, cfg.results_root), out=cfg.checkpoint_dir())


def _resume_point(run: _Run) -> dict | None:
    """The run's ``last.pt`` when ``resume`` is asked and it exists, checked against this call's settings and
    data (:func:`check_resume`); None otherwise."""
    if not (run.cfg.resume and run.last_path.is_file()):
        return None
    ck = load_checkpoint(run.last_path, run.device)
    check_resume(ck, run.cfg, run.last_path, run.text_features, run.data_root, run.fingerprint)
    return ck


def _check_and_record_inputs(run: _Run) -> None:
    """Text reaches the model or the run stops (text/features.py): features of every train and val pair, of
    this data folder; then record the check and the values this training really uses in the run."""
    cfg, tf = run.cfg, run.text_features
    if tf is not None:
        names = [p.name for split in ("train", "val") for p in find_pairs(run.data_root, split)]
        empty_source = cfg.captions == "empty" or tf.provenance.get("source") == "empty"
        check = check_text_features(tf, names, allow_empty=cfg.allow_empty_text or empty_source,
                                    split="train and val")
        check_features_data(tf, run.data_root)  # features of another dataset with the same names: refused
        if run.writer:
            record_text_check(run.run_path, f"text_{run.out.name}", [check])
    if run.writer:  # next to the parameters as given (run.json)
        record_effective(run.run_path, f"train_{run.out.name}", {
            k: getattr(cfg, k) for k in ("epochs", "batch_size", "lr", "size", "max_steps_per_epoch", "seed",
                                         "captions", "text_encoder", "allow_empty_text")})


def _load_data(run: _Run) -> _Data:
    """Both splits decoded (rank 0 first: it writes the shared cache), as uint8 batch sources, on the device
    when they fit (``device_resident``), and their text features looked up once."""
    cfg, device = run.cfg, run.device
    with _rank0_first(run.rank, run.world):
        train_names, train_images, train_labels = load_split(run.data_root, "train", cfg.size)
        val_names, val_images, val_labels = load_split(run.data_root, "val", cfg.size)
    nbytes = sum(a.nbytes for a in (train_images, train_labels, val_images, val_labels))
    resident = BatchSource.fits_on(device, nbytes) if cfg.device_resident == "auto" else bool(cfg.device_resident)
    norm = Normalizer.create(NORMALIZATION[cfg.normalization], device)
    return _Data(
        train=BatchSource(train_images, train_labels, device, norm, resident, cfg.workers, run.channels_last),
        val=BatchSource(val_images, val_labels, device, norm, resident, cfg.workers, run.channels_last),
        feats_train=lookup_features(run.text_features, train_names, device),
        feats_val=lookup_features(run.text_features, val_names, device), resident=resident)


def _build(run: _Run) -> _Net:
    """The model from the seed (identical initial weights on every rank), recorded in the run with the
    substitutes of its inputs, and its SGD optimiser (paper §4.1)."""
    cfg = run.cfg
    _seed_everything(cfg.seed)
    text_dim = run.text_features.dim if run.text_features is not None else 512
    model = build_model(cfg.model, text_dim=text_dim, weights=cfg.image_weights, width=cfg.width,
                        zero_init_tgi=cfg.zero_init_tgi, tail=cfg.tail).to(run.device)
    if run.channels_last:
        model = model.to(memory_format=torch.channels_last)
    text_subs = record_inputs(run.run_path, cfg.model, run.data_root, run.text_features, model.substitutes,
                              run.writer)
    opt = torch.optim.SGD(param_groups(model, cfg.tgi_lr_scale), lr=cfg.lr, momentum=cfg.momentum,
                          nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    return _Net(model=model, opt=opt, aug_gen=torch.Generator(device="cpu"), text_dim=text_dim,
                substitutes=[*model.substitutes, *text_subs])


def param_groups(model: torch.nn.Module, tgi_lr_scale: float = 1.0) -> list[dict]:
    """The optimiser's parameter groups, each with the ``lr_scale`` its step multiplies the scheduled lr by:
    one group at scale 1 (the paper's recipe), or the TGI parameters apart at ``tgi_lr_scale`` (ours)."""
    if tgi_lr_scale <= 0:
        raise ValueError(f"tgi_lr_scale must be > 0, got {tgi_lr_scale}")
    tgi = getattr(model, "tgi", None)
    if tgi is None and tgi_lr_scale != 1.0:
        raise ValueError(f"tgi_lr_scale={tgi_lr_scale}: this model has no TGI (a Baseline?)")
    if tgi is None or tgi_lr_scale == 1.0:
        return [{"params": list(model.parameters()), "lr_scale": 1.0}]
    ids = {id(p) for p in tgi.parameters()}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return [{"params": rest, "lr_scale": 1.0}, {"params": list(tgi.parameters()), "lr_scale": tgi_lr_scale}]


def _resume(run: _Run, ck: dict | None, net: _Net) -> _State:
    """A fresh state, or the one ``last.pt`` saved: weights, optimiser, epoch, step, history, best and the
    generators training draws from (so a resumed run continues bit-identically)."""
    if ck is None:
        if run.cfg.resume:
            log.warning("resume asked but %s does not exist: starting from scratch", run.last_path)
        return _State()
    net.model.load_state_dict(ck["model"])
    net.opt.load_state_dict(ck["optimizer"])
    restore_rng(ck["rng"], net.aug_gen)
    log.info("resuming %s from %s (epoch %d, step %d)", run.cfg.model, run.last_path, ck["epoch"], ck["step"])
    return _State(epoch=ck["epoch"], step=ck["step"], history=ck["history"], best=ck["best"])


def _wrap(run: _Run, net: _Net) -> None:
    """What runs the model: DDP over the ranks, then torch.compile when asked; and the autocast of the run's
    precision."""
    run_model = net.model
    if run.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        run_model = DDP(net.model, device_ids=[run.device.index] if run.device.type == "cuda" else None)
    if run.cfg.compile:
        run_model = torch.compile(run_model)
    net.run_model, net.autocast = run_model, autocast_for(run.device, run.precision)


def _epoch_batches(run: _Run, data: _Data, epoch: int) -> list[np.ndarray]:
    """This rank's index batches of ``epoch`` (one permutation per seed and epoch; engine/sharding.py)."""
    return epoch_batches(data.train.n, run.per_rank, epoch, run.cfg.seed, True, run.rank, run.world,
                         run.cfg.max_steps_per_epoch)


def train_one_epoch(run: _Run, net: _Net, data: _Data, state: _State, epoch: int) -> dict:
    """One epoch of SGD steps under the poly decay; returns the epoch's history row (losses averaged over the
    steps and ranks, throughput). The losses stay on the device and the host reads them (and checks for a
    non-finite one, :class:`TrainingDiverged`) once per ``sync_every`` steps."""
    cfg = run.cfg
    net.run_model.train()
    net.aug_gen.manual_seed(cfg.seed * 1_000_003 + epoch * 1009)  # the same draws on every rank: each keeps its own
    batches = _epoch_batches(run, data, epoch)
    steps_per_epoch = len(_epoch_batches(run, data, 0))
    total_steps = steps_per_epoch * cfg.epochs
    sums = torch.zeros(len(PARTS), dtype=torch.float64, device=run.device)
    step_t = torch.full((), state.step, dtype=torch.long, device=run.device)
    first_bad = torch.full((), -1, dtype=torch.long, device=run.device)
    bar = _progress(run, len(batches), epoch)
    t0, lr = time.perf_counter(), cfg.lr
    for k, batch in enumerate(data.train.batches(batches, net.aug_gen, run.rank, run.world)):
        lr = poly_lr(cfg.lr, state.step, total_steps, cfg.poly_power)
        loss, parts = _sgd_step(net, batch, data.feats_train, lr)
        sums += parts
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), step_t, first_bad)
        step_t += 1
        state.step += 1
        bar.update(1)
        if state.step % run.sync_every == 0 or k == len(batches) - 1:
            _stop_if_diverged(run, first_bad, epoch, steps_per_epoch, lr, bar)
            bar.set_postfix(loss=f"{float(sums[-1]) / (k + 1):.4f}", lr=f"{lr:.3g}",
                            pairs_s=f"{(k + 1) * run.per_rank * run.world / (time.perf_counter() - t0):.1f}")
    bar.close()
    if run.world > 1:
        dist.all_reduce(sums)
    train_s = time.perf_counter() - t0
    n_steps = max(len(batches), 1) * run.world
    return {"epoch": epoch + 1, "step": state.step, "lr": lr,
            **{f"train_{p}": float(sums[i]) / n_steps for i, p in enumerate(PARTS)},
            "train_seconds": round(train_s, 3),
            "pairs_per_s": round(len(batches) * run.per_rank * run.world / max(train_s, 1e-9), 2)}


def _progress(run: _Run, steps: int, epoch: int) -> tqdm:
    """The epoch's progress bar, on rank 0 only and not under ``TQDM_DISABLE``."""
    off = not run.writer or os.environ.get("TQDM_DISABLE", "0") not in ("", "0")
    return tqdm(total=steps, desc=f"{run.cfg.model} {epoch + 1}/{run.cfg.epochs}", unit="step", disable=off,
                leave=False)


def _sgd_step(net: _Net, batch: dict, feats, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step at learning rate ``lr``; returns the loss and its parts (:data:`PARTS`) on the device,
    without a host sync."""
    for g in net.opt.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
    out = forward_batch(net.run_model, batch, feats, net.autocast)
    loss, parts = total_loss(out, batch, as_float=False)
    net.opt.zero_grad(set_to_none=True)
    loss.backward()
    net.opt.step()
    return loss.detach(), torch.stack([parts[p] for p in PARTS]).double()


def _stop_if_diverged(run: _Run, first_bad: torch.Tensor, epoch: int, steps_per_epoch: int, lr: float,
                      bar: tqdm) -> None:
    """Raise :class:`TrainingDiverged` naming the first step (on any rank) whose loss was not finite."""
    if run.world > 1:
        dist.all_reduce(first_bad, op=dist.ReduceOp.MAX)
    bad = int(first_bad)  # the one host sync per sync_every steps
    if bad >= 0:
        bar.close()
        raise TrainingDiverged(
            f"{run.cfg.model}: non-finite loss at step {bad + 1} (epoch {epoch + 1}, "
            f"step {bad - epoch * steps_per_epoch + 1} of {steps_per_epoch}, lr {lr:.3g}); "
            f"lower the learning rate (now {run.cfg.lr}) or check the data")


def validate(run: _Run, net: _Net, data: _Data, state: _State, row: dict, epoch: int) -> bool:
    """Score the model on val when due (every ``val_every`` epochs, and the last), add the epoch's ``row`` to
    the history; True when val F_scd beat the best so far (``state.best`` then holds these scores).

    The scores are those of the weights rank 0 saves: under DDP each rank's BatchNorm has running statistics of
    its own shard, so every rank first takes rank 0's buffers (the next training step broadcasts them anyway)."""
    cfg = run.cfg
    if (epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs:
        _take_rank0_buffers(net.model, run.world)
        t1 = time.perf_counter()
        state.scores = evaluate_source(net.model, data.val, data.feats_val, run.per_rank, run.precision, run.rank,
                                       run.world)
        row.update({f"val_{m}": state.scores[m] for m in METRICS})
        row["val_seconds"] = round(time.perf_counter() - t1, 3)
    state.history.append(row)
    improved = state.scores is not None and "val_F_scd" in row and math.isfinite(row["val_F_scd"]) and (
        state.best is None or row["val_F_scd"] > state.best["F_scd"])
    if improved:
        state.best = {"epoch": epoch + 1, **{m: state.scores[m] for m in METRICS}}
    return improved


def _take_rank0_buffers(model: torch.nn.Module, world: int) -> None:
    """Every rank's buffers (BatchNorm running statistics) made rank 0's."""
    if world > 1:
        for buf in model.buffers():
            dist.broadcast(buf, src=0)


def save(run: _Run, net: _Net, state: _State, improved: bool) -> None:
    """Rank 0 writes the epoch: ``best.pt`` when it improved (portable: weights and config, no optimiser),
    ``last.pt`` (plus optimiser, history and generators: an exact resume point) and the logs, each atomically;
    a write that fails leaves the previous file as it was (:func:`save_checkpoint`)."""
    ck = make_checkpoint(net.model, run.cfg, state.history[-1]["epoch"], state.step, net.text_dim, state.best,
                         state.scores, net.substitutes, run.data_root, run.text_features, run.fingerprint)
    if improved:
        save_checkpoint(run.best_path, ck)
    save_checkpoint(run.last_path, {**ck, "optimizer": net.opt.state_dict(), "history": plain(state.history),
                                    "rng": rng_state(net.aug_gen)})
    write_history(state.history, run.out)


def _finish(run: _Run, net: _Net, state: _State, data: _Data, shard: list[int], seconds: float,
            epochs_done: int) -> dict:
    """The result (and, once the run has finished, ``metrics/train_<model>.json``); a run whose val F_scd was
    never finite gets the last epoch's weights as ``best.pt``."""
    cfg, writer = run.cfg, run.writer
    if writer and state.history and not run.best_path.exists() and run.last_path.exists():
        log.warning("%s: no finite val F_scd in any epoch; best.pt = the last epoch's weights", cfg.model)
        last = load_checkpoint(run.last_path)
        save_checkpoint(run.best_path, {k: v for k, v in last.items() if k not in ("optimizer", "history", "rng")})
    if run.world > 1:
        dist.barrier()
    out = run.out
    result = {"model": cfg.model, "history": state.history, "best": state.best, "last": state.scores,
              "device": str(run.device), "precision": run.precision, "channels_last": run.channels_last,
              "resident": data.resident, "world": run.world, "rank": run.rank, "steps": state.step,
              "seconds": seconds, "epochs_run": epochs_done, "substitutes": net.substitutes,
              "shard": shard, "data_root": str(run.data_root), "text_features": cfg.text_features,
              "paths": {"best": str(run.best_path), "last": str(run.last_path), "log_csv": str(out / "log.csv"),
                        "log_json": str(out / "log.json")}}
    finished = bool(state.history) and state.history[-1]["epoch"] == cfg.epochs
    if writer and finished:
        atomic_write_json(run.run_path / "metrics" / f"train_{cfg.model}.json",
                          {k: v for k, v in result.items() if k != "shard"})
    return result
