"""Batches for training and inference: the decoded uint8 pairs served on the device (chapter 05, the GPU fast
path).

Both modes start from the decoded uint8 dataset (``textscd_lib.data.dataset.DecodedCache``: images (N,2,H,W,3),
labels (N,2,H,W)) and end the same way: a uint8 batch on the device is augmented there
(:func:`textscd_lib.engine.augmentation.augment_batch`, with the trainer's own generator so that a resumed run
draws the same flips), then normalised on the device and put in channels_last.

- *resident*: the whole uint8 dataset lives on the device (GPU when it fits; on CPU the memory-mapped cache
  itself), a batch is one index_select: no PNG decoding, no worker processes, no host round trip;
- *streamed*: a ``DataLoader`` whose workers gather uint8 batches from the memory-mapped cache into pinned
  memory (datasets larger than the GPU).

Which pairs a step sees is :mod:`textscd_lib.engine.sharding`; a step never waits for the host: a batch list's
indices reach the device in one copy and each batch carries them there (``idx_t``) for the text-feature lookup.
On the CPU nothing is copied and the batches are bit-identical to the plain path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from textscd_lib.data.dataset import DecodedCache
from textscd_lib.engine.augmentation import augment_batch
from textscd_lib.engine.sharding import epoch_batches, rank_batch_size

__all__ = ["BatchSource", "Normalizer", "augment_batch", "dataset_arrays", "epoch_batches", "load_split",
           "rank_batch_size", "resize_uint8"]  # the sharding and augmentation names: the chapters import them here


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


def load_split(data_root: Path, split: str, size: int | None = None):
    """(names, images (N,2,H,W,3) uint8, labels (N,2,H,W) uint8) of one split from the decoded cache
    (``textscd_lib.data.dataset.DecodedCache``), resized once when ``size`` differs from the native size."""
    cache = DecodedCache(data_root, split)
    images, labels = cache.images, cache.labels
    if size and images.shape[2] != size:
        images, labels = resize_uint8(images, labels, size)
    return list(cache.names), images, labels


def dataset_arrays(dataset):
    """(names, images, labels) uint8 of a split: an ``SCDDataset``'s or ``DecodedCache``'s own arrays, else the
    decoded cache of its ``root``/``split``."""
    cache = getattr(dataset, "cache", None) or dataset  # SCDDataset holds its DecodedCache
    if hasattr(cache, "images") and hasattr(cache, "labels"):
        return list(cache.names), cache.images, cache.labels
    return load_split(Path(dataset.root), dataset.split)
