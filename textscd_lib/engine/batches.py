"""Batches for training and validation: device-resident or streamed (chapter 05, the GPU fast path).

Both modes start from the decoded uint8 dataset (``textscd_lib.data.dataset.DecodedCache``: images (N,2,H,W,3),
labels (N,2,H,W)) and end the same way: a uint8 batch on the device is augmented there
(``textscd_lib.data.dataset.augment`` on batched tensors, with the trainer's own generator so that a resumed run
draws the same flips), then normalised on the device and put in channels_last.

- *resident*: the whole uint8 dataset lives on the device (GPU when it fits; on CPU the memory-mapped cache
  itself), a batch is one index_select — no PNG decoding, no worker processes, no host round trip;
- *streamed*: a ``DataLoader`` whose workers gather uint8 batches from the memory-mapped cache into pinned
  memory (datasets larger than the GPU).

Shuffling is one permutation per epoch drawn from ``(seed, epoch)``, so it needs no saved state; with DDP
every rank draws the same permutation and takes its own slice (:func:`epoch_batches`).

No host synchronisation per step (issue 16): the epoch's batch indices reach the device in one copy, the
augmentation's per-group indices in one pinned copy per batch (:func:`augment_batch`, the same draws and the
same result as ``augment``), and each batch carries its indices on the device (``idx_t``) for the text-feature
lookup. On the CPU nothing is copied and the batches are bit-identical to the plain path.

Validation and prediction run through the same batches (:func:`evaluate_source`, :func:`evaluate`,
:func:`export_predictions`): the 7×7 confusion matrix is accumulated on the device and summed over DDP ranks.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from textscd_lib.common.device import pick_device
from textscd_lib.common.io import atomic_save_png
from textscd_lib.common.paths import resolve
from textscd_lib.data.dataset import NORMALIZATION, DecodedCache, orient
from textscd_lib.data.second import NUM_CLASSES, index_to_rgb
from textscd_lib.metrics import SCDConfusion, TransitionConfusion, scores_from_confusion
from textscd_lib.models.textscd import predict

log = logging.getLogger(__name__)


def augment_batch(im1, im2, label1, label2, generator: torch.Generator, rank: int = 0, world: int = 1):
    """:func:`textscd_lib.data.dataset.augment` for a batch (B,C,H,W)/(B,H,W) on any device, with the same draws
    from ``generator`` and the same result, bit for bit; the per-group sample indices go to the device in one
    (pinned) copy instead of one blocking copy per group (chapter 05, the GPU fast path).

    Under DDP (``world`` > 1, the same generator state on every rank) the draws are made for the global batch
    and each rank keeps its own pairs' (positions ``rank::world``, as :func:`epoch_batches` deals them out), so
    every pair gets the flip it would get in one process with the whole batch."""
    n, (h, w) = label1.shape[0], label1.shape[-2:]
    rot = (torch.rand(n * world, generator=generator) < 0.5)[rank::world] & (h == w)
    flip = torch.randint(0, 4, (n * world,), generator=generator)[rank::world]
    groups = [(r, f, torch.nonzero((rot == r) & (flip == f)).flatten()) for r in (False, True) for f in range(4)
              if r or f]
    groups = [(r, f, idx) for r, f, idx in groups if len(idx)]
    tensors = (im1, im2, label1, label2)
    outs = [t.clone() for t in tensors]
    if not groups:
        return tuple(outs)
    device = label1.device
    flat = torch.cat([idx for _, _, idx in groups])
    if device.type == "cuda":
        flat = flat.pin_memory().to(device, non_blocking=True)
    parts = flat.split([len(idx) for _, _, idx in groups])
    for (r, f, _), idx in zip(groups, parts):
        for k, t in enumerate(tensors):
            outs[k][idx] = orient(t[idx], r, f)
    return tuple(outs)


def rank_batch_size(global_batch: int, world: int) -> int:
    """Pairs per step on each of ``world`` ranks for a *global* batch of ``global_batch`` pairs (chapter 05,
    appendix 08): ``--batch-size`` is the paper's batch however many processes share it; a global batch that
    the ranks cannot share equally is refused."""
    if global_batch < 1 or world < 1:
        raise ValueError(f"batch size {global_batch} over {world} rank(s): both must be at least 1")
    if global_batch % world:
        raise ValueError(f"--batch-size {global_batch} is the global batch and {world} ranks cannot share it "
                         f"equally; use a multiple of {world} (e.g. {max(world, global_batch // world * world)})")
    return global_batch // world


def epoch_batches(n: int, batch_size: int, epoch: int, seed: int, shuffle: bool = True, rank: int = 0,
                  world: int = 1, max_batches: int | None = None, pad: bool = True) -> list[np.ndarray]:
    """This rank's index batches for one epoch (chapter 05).

    One permutation per (seed, epoch), identical on every rank; padded by wrapping to a multiple of
    ``world`` (as ``DistributedSampler`` does) and dealt out ``perm[rank::world]`` so the ranks' shards are
    disjoint and equally long. ``pad=False`` (validation) deals out the pairs without repeats."""
    if shuffle:
        g = torch.Generator().manual_seed(int(seed) * 100_003 + int(epoch))
        perm = torch.randperm(n, generator=g).numpy()
    else:
        perm = np.arange(n)
    if world > 1:
        extra = (-n) % world if pad else 0
        perm = np.concatenate([perm, perm[:extra]])[rank::world]
    batches = [perm[i:i + batch_size] for i in range(0, len(perm), batch_size)]
    return batches[:max_batches] if max_batches else batches


@dataclass
class Normalizer:
    """Per-date mean/std on the 0-255 scale (``textscd_lib.data.dataset.NORMALIZATION``), applied on the device."""

    mean1: torch.Tensor
    std1: torch.Tensor
    mean2: torch.Tensor
    std2: torch.Tensor

    @classmethod
    def create(cls, stats, device: torch.device) -> Normalizer:
        def t(v):
            return torch.as_tensor(v, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        return cls(*(t(v) for v in stats))

    def __call__(self, im1: torch.Tensor, im2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (im1.float() - self.mean1) / self.std1, (im2.float() - self.mean2) / self.std2


def resize_uint8(images: np.ndarray, labels: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize a uint8 dataset once (images bilinear, labels nearest), chunk by chunk (chapter 05)."""
    import torch.nn.functional as F

    n = len(images)
    out_i = np.empty((n, 2, size, size, 3), dtype=np.uint8)
    out_l = np.empty((n, 2, size, size), dtype=np.uint8)
    for s in range(0, n, 64):
        im = torch.from_numpy(np.asarray(images[s:s + 64])).flatten(0, 1).permute(0, 3, 1, 2).float()
        im = F.interpolate(im, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out_i[s:s + 64] = im.round().clamp(0, 255).byte().permute(0, 2, 3, 1).unflatten(0, (-1, 2)).numpy()
        lb = torch.from_numpy(np.asarray(labels[s:s + 64])).float()
        out_l[s:s + 64] = F.interpolate(lb, size=(size, size), mode="nearest").byte().numpy()
    return out_i, out_l


class _BatchGather(torch.utils.data.Dataset):
    """Streamed mode: item ``i`` of a batch list is the uint8 batch (images, labels, indices)."""

    def __init__(self, images, labels, batches: list[np.ndarray]) -> None:
        self.images, self.labels, self.batches = images, labels, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int):
        idx = np.sort(self.batches[i])  # sorted reads from the memory map; order restored below
        order = np.argsort(np.argsort(self.batches[i]))
        im = torch.from_numpy(np.ascontiguousarray(np.asarray(self.images[idx])[order]))
        lb = torch.from_numpy(np.ascontiguousarray(np.asarray(self.labels[idx])[order]))
        return im, lb, torch.from_numpy(np.asarray(self.batches[i]))


class BatchSource:
    """uint8 pairs of one split, served as augmented, normalised batches on ``device`` (chapter 05).

    ``images`` (N,2,H,W,3) and ``labels`` (N,2,H,W) uint8 (numpy or memmap); ``resident`` keeps them on the
    device; otherwise ``workers`` DataLoader processes gather batches into pinned memory."""

    def __init__(self, images, labels, device: torch.device, normalizer: Normalizer, resident: bool = True,
                 workers: int = 0, channels_last: bool = False) -> None:
        self.device, self.norm, self.resident = device, normalizer, resident
        self.workers, self.channels_last = workers, channels_last
        self.n = len(images)
        if resident and device.type != "cpu":
            self.images = torch.from_numpy(np.ascontiguousarray(images)).to(device)
            self.labels = torch.from_numpy(np.ascontiguousarray(labels)).to(device)
        else:
            self.images, self.labels = images, labels

    @staticmethod
    def fits_on(device: torch.device, nbytes: int, fraction: float = 0.4) -> bool:
        """Does a dataset of ``nbytes`` fit in ``fraction`` of the device's free memory? (CPU: always.)"""
        if device.type != "cuda":
            return True
        free, _ = torch.cuda.mem_get_info(device)
        return nbytes < fraction * free

    def _device_indices(self, batches: list[np.ndarray]) -> list[torch.Tensor]:
        """Every batch's indices as int64 tensors on the device, moved there in one (pinned) copy."""
        if not batches:
            return []
        flat = torch.from_numpy(np.concatenate([np.asarray(b, dtype=np.int64) for b in batches]))
        if self.device.type == "cuda":
            flat = flat.pin_memory().to(self.device, non_blocking=True)
        return list(flat.split([len(b) for b in batches]))

    def _uint8_batches(self, batches: list[np.ndarray]):
        if self.resident:
            for b, idx in zip(batches, self._device_indices(batches)):
                if isinstance(self.images, torch.Tensor):
                    yield self.images.index_select(0, idx), self.labels.index_select(0, idx), b, idx
                else:
                    yield torch.from_numpy(np.asarray(self.images[b])), torch.from_numpy(
                        np.asarray(self.labels[b])), b, idx
            return
        loader = torch.utils.data.DataLoader(
            _BatchGather(self.images, self.labels, batches), batch_size=None, shuffle=False,
            num_workers=self.workers, pin_memory=self.device.type == "cuda",
            persistent_workers=False, prefetch_factor=4 if self.workers else None)
        for im, lb, b in loader:  # pinned by the loader on CUDA
            yield (im.to(self.device, non_blocking=True), lb.to(self.device, non_blocking=True), b.numpy(),
                   b.to(self.device, non_blocking=True))

    def batches(self, batches: list[np.ndarray], augment_generator: torch.Generator | None = None, rank: int = 0,
                world: int = 1):
        """Yield dicts {idx (numpy), idx_t (the same on the device), x1, x2 (B,3,H,W) float normalised, label1,
        label2 (B,H,W) int64, change (B,H,W) float} on the device; augmented with :func:`augment_batch` (=
        :func:`textscd_lib.data.dataset.augment`; ``rank``/``world``: this rank's share of the global batch's
        draws) when a generator is given."""
        for im, lb, b, idx_t in self._uint8_batches(batches):
            im = im.to(self.device).permute(0, 1, 4, 2, 3)  # (B,2,3,H,W) uint8
            im1, im2, l1, l2 = im[:, 0], im[:, 1], lb[:, 0].to(self.device), lb[:, 1].to(self.device)
            if augment_generator is not None:

                im1, im2, l1, l2 = augment_batch(im1, im2, l1, l2, augment_generator, rank, world)
            x1, x2 = self.norm(im1, im2)
            if self.channels_last:
                x1 = x1.contiguous(memory_format=torch.channels_last)
                x2 = x2.contiguous(memory_format=torch.channels_last)
            else:
                x1, x2 = x1.contiguous(), x2.contiguous()
            l1, l2 = l1.long().contiguous(), l2.long().contiguous()
            yield {"idx": b, "idx_t": idx_t, "x1": x1, "x2": x2, "label1": l1, "label2": l2, "change": (l1 > 0).float()}


# ------------------------------------------------------------------------------------------------------
# validation and prediction on the same batches
# ------------------------------------------------------------------------------------------------------
def load_split(data_root: Path, split: str, size: int | None = None):
    """(names, images (N,2,H,W,3) uint8, labels (N,2,H,W) uint8) of one split from the decoded cache
    (``textscd_lib.data.dataset.DecodedCache``), resized once when ``size`` differs from the native size."""
    cache = DecodedCache(data_root, split)
    images, labels = cache.images, cache.labels
    if size and images.shape[2] != size:
        images, labels = resize_uint8(images, labels, size)
    return list(cache.names), images, labels


def lookup_features(text_features, names: list[str], device: torch.device):
    """The split's cached text features (F_text (N,L,D), mask (N,L)) on ``device``, row i = ``names[i]``."""
    if text_features is None:
        return None
    F_text, mask = text_features.lookup(names)
    return F_text.to(device), mask.to(device)


def autocast_for(device: torch.device, precision: str):
    """bf16 autocast on ``device`` for ``precision="bf16"``, else nothing."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def forward_batch(model, batch: dict, feats, autocast) -> dict:
    """The model on one batch, its text features looked up on the device by ``idx_t`` (no host copy)."""
    F_text = mask = None
    if feats is not None:
        idx = batch.get("idx_t")
        if idx is None or idx.device != feats[0].device:
            idx = torch.as_tensor(batch["idx"], device=feats[0].device)
        F_text, mask = feats[0].index_select(0, idx), feats[1].index_select(0, idx)
    with autocast:
        out = model(batch["x1"], batch["x2"], F_text, mask)
    return {k: v.float() for k, v in out.items()}


@torch.no_grad()
def evaluate_source(model, source: BatchSource, feats, batch_size: int, precision: str = "fp32",
                    rank: int = 0, world: int = 1, transitions: bool = False) -> dict:
    """Validation on the device: the 7×7 confusion matrix accumulated there, summed over DDP ranks."""

    was_training = model.training
    model.eval()
    conf = SCDConfusion(device=source.device)
    trans = TransitionConfusion() if transitions else None
    autocast = autocast_for(source.device, precision)
    for batch in source.batches(epoch_batches(source.n, batch_size, 0, 0, False, rank, world, pad=False)):
        p1, p2 = predict(forward_batch(model, batch, feats, autocast))
        conf.update(p1, p2, batch["label1"], batch["label2"])
        if trans is not None:
            trans.update(p1, p2, batch["label1"], batch["label2"])
    counts = conf.counts
    if world > 1:
        dist.all_reduce(counts)
    model.train(was_training)
    res = scores_from_confusion(counts.cpu().numpy().reshape(NUM_CLASSES, NUM_CLASSES))
    res["confusion"] = counts.cpu().numpy().reshape(NUM_CLASSES, NUM_CLASSES).tolist()
    if trans is not None:
        res["transition_confusion"] = trans.matrix.tolist()
    return res


def evaluate(model, dataset, text_features=None, device: str | torch.device = "auto", batch_size: int = 8,
             transitions: bool = False) -> dict:
    """Score a model on a dataset split (chapter 06): OA, mIoU, SeK, F_scd, per-class IoU, confusion.

    ``dataset``: an ``SCDDataset`` or a ``DecodedCache`` (anything with ``root``/``split`` or ``names``,
    ``images``, ``labels``)."""

    device = pick_device(device) if isinstance(device, str) else device
    names, images, labels = dataset_arrays(dataset)
    norm = Normalizer.create(NORMALIZATION[getattr(dataset, "normalization", "second")], device)
    source = BatchSource(images, labels, device, norm, resident=True)
    model = model.to(device)
    return evaluate_source(model, source, lookup_features(text_features, names, device), batch_size,
                           "bf16" if device.type == "cuda" else "fp32", transitions=transitions)


def dataset_arrays(dataset):
    cache = getattr(dataset, "cache", None) or dataset  # SCDDataset holds its DecodedCache
    if hasattr(cache, "images") and hasattr(cache, "labels"):
        return list(cache.names), cache.images, cache.labels
    return load_split(Path(dataset.root), dataset.split)


@torch.no_grad()
def export_predictions(model, dataset, text_features=None, out_root: str | Path = "predictions",
                       device: str | torch.device = "auto", batch_size: int = 8) -> Path:
    """Write predicted maps in the SECOND layout, RGB colours: ``out_root/{label1,label2}/NAME.png``
    (chapter 05; read back by ``textscd evaluate``)."""

    device = pick_device(device) if isinstance(device, str) else device
    out_root = resolve(out_root)
    names, images, labels = dataset_arrays(dataset)
    norm = Normalizer.create(NORMALIZATION[getattr(dataset, "normalization", "second")], device)
    source = BatchSource(images, labels, device, norm, resident=True)
    feats = lookup_features(text_features, names, device)
    model = model.to(device).eval()
    autocast = autocast_for(device, "bf16" if device.type == "cuda" else "fp32")
    for batch in source.batches(epoch_batches(source.n, batch_size, 0, 0, shuffle=False)):
        p1, p2 = (p.to(torch.uint8).cpu().numpy() for p in predict(forward_batch(model, batch, feats, autocast)))
        for k, i in enumerate(batch["idx"]):
            atomic_save_png(out_root / "label1" / f"{names[i]}.png", index_to_rgb(p1[k]))
            atomic_save_png(out_root / "label2" / f"{names[i]}.png", index_to_rgb(p2[k]))
    return out_root
