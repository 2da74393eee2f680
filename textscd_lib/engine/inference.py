"""The one inference path (chapters 05-07): validation during training, ``textscd evaluate``/``predict`` and
the chapters' maps in memory all run a model through :func:`predictions`, so the maps a run writes or scores
are the maps its validation scored.

One precision rule (:func:`precision_for`): bf16 autocast on CUDA, fp32 elsewhere, unless a caller names the
training run's precision. One batching: the split's uint8 pairs on the device (:class:`BatchSource`), in order,
normalised there, the text features looked up by the batch's indices on the device.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from textscd_lib.data.dataset import NORMALIZATION
from textscd_lib.engine.batches import BatchSource, Normalizer, dataset_arrays
from textscd_lib.engine.sharding import epoch_batches
from textscd_lib.models.textscd import predict


def precision_for(device: torch.device, precision: str = "auto") -> str:
    """The inference precision on ``device``: ``"auto"`` is bf16 on CUDA (as training there) and fp32
    elsewhere; ``"bf16"``/``"fp32"`` as given."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def autocast_for(device: torch.device, precision: str):
    """bf16 autocast on ``device`` for ``precision="bf16"``, else nothing."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def lookup_features(text_features, names: list[str], device: torch.device):
    """The split's cached text features (F_text (N,L,D), mask (N,L)) on ``device``, row i = ``names[i]``."""
    if text_features is None:
        return None
    F_text, mask = text_features.lookup(names)
    return F_text.to(device), mask.to(device)


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


def dataset_source(dataset, text_features, device: torch.device) -> tuple[list[str], BatchSource, tuple | None]:
    """``(names, source, feats)`` of a dataset split for inference: its uint8 pairs on ``device`` normalised
    with the dataset's statistics, and its text features (or None) in the same order. ``dataset``: an
    ``SCDDataset`` or a ``DecodedCache``."""
    names, images, labels = dataset_arrays(dataset)
    norm = Normalizer.create(NORMALIZATION[getattr(dataset, "normalization", "second")], device)
    return names, BatchSource(images, labels, device, norm, resident=True), lookup_features(text_features, names,
                                                                                          device)


@torch.no_grad()
def predictions(model, source: BatchSource, feats, batch_size: int, precision: str = "auto", rank: int = 0,
                world: int = 1) -> Iterator[tuple[dict, torch.Tensor, torch.Tensor]]:
    """Yield ``(batch, pred1, pred2)`` for this rank's share of ``source`` in order (no augmentation), the
    maps int64 (B,H,W) on the device by :func:`textscd_lib.models.textscd.predict`. The model runs in eval mode
    and gets its mode back afterwards."""
    was_training = model.training
    model.eval()
    autocast = autocast_for(source.device, precision_for(source.device, precision))
    try:
        for batch in source.batches(epoch_batches(source.n, batch_size, 0, 0, False, rank, world, pad=False)):
            p1, p2 = predict(forward_batch(model, batch, feats, autocast))
            yield batch, p1, p2
    finally:
        model.train(was_training)
