"""The SECOND augmentation on a whole batch on the device (chapter 05): the same draws and the same result as
:func:`textscd_lib.data.dataset.augment`, bit for bit, so that a resumed run and a run on the GPU flip every
pair exactly as the plain path does."""

from __future__ import annotations

import torch

from textscd_lib.data.dataset import orient


def augment_batch(im1, im2, label1, label2, generator: torch.Generator, rank: int = 0, world: int = 1):
    """:func:`textscd_lib.data.dataset.augment` for a batch (B,C,H,W)/(B,H,W) on any device, with the same draws
    from ``generator`` and the same result, bit for bit; the per-group sample indices go to the device in one
    (pinned) copy instead of one blocking copy per group, so a step never waits for the host.

    Under DDP (``world`` > 1, the same generator state on every rank) the draws are made for the global batch
    and each rank keeps its own pairs' (positions ``rank::world``, as
    :func:`textscd_lib.engine.sharding.epoch_batches` deals them out), so every pair gets the flip it would get
    in one process with the whole batch."""
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
