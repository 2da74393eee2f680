"""Which pairs each step sees (chapter 05, appendix 08): one permutation per epoch drawn from ``(seed, epoch)``,
so shuffling needs no saved state and a resumed run sees the same batches; under DDP every rank draws the same
permutation and takes its own slice."""

from __future__ import annotations

import numpy as np
import torch


def rank_batch_size(global_batch: int, world: int) -> int:
    """Pairs per step on each of ``world`` ranks for a *global* batch of ``global_batch`` pairs: ``--batch-size``
    is the paper's batch however many processes share it; a global batch that the ranks cannot share equally
    is refused."""
    if global_batch < 1 or world < 1:
        raise ValueError(f"batch size {global_batch} over {world} rank(s): both must be at least 1")
    if global_batch % world:
        raise ValueError(f"--batch-size {global_batch} is the global batch and {world} ranks cannot share it "
                         f"equally; use a multiple of {world} (e.g. {max(world, global_batch // world * world)})")
    return global_batch // world


def epoch_batches(n: int, batch_size: int, epoch: int, seed: int, shuffle: bool = True, rank: int = 0,
                  world: int = 1, max_batches: int | None = None, pad: bool = True) -> list[np.ndarray]:
    """This rank's index batches for one epoch.

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
