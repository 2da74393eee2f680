"""Scores of a model on a split (chapters 05, 06): the 7×7 confusion matrix (and on request the 49×49
from→to transition matrix) accumulated on the device over :func:`textscd_lib.engine.inference.predictions` and
summed over DDP ranks, so every rank reports the scores of the whole split."""

from __future__ import annotations

import torch
import torch.distributed as dist

from textscd_lib.common.device import pick_device
from textscd_lib.data.second import NUM_CLASSES
from textscd_lib.engine.inference import dataset_source, predictions
from textscd_lib.metrics import SCDConfusion, TransitionConfusion, scores_from_confusion


def _summed(matrix, device: torch.device, world: int) -> torch.Tensor:
    """``matrix`` (any shape) as an int64 tensor on ``device``, summed over the ``world`` DDP ranks."""
    t = torch.as_tensor(matrix, dtype=torch.int64, device=device)
    if world > 1:
        dist.all_reduce(t)
    return t


def evaluate_source(model, source, feats, batch_size: int, precision: str = "auto", rank: int = 0,
                    world: int = 1, transitions: bool = False) -> dict:
    """Validation of ``model`` on ``source`` (a :class:`textscd_lib.engine.batches.BatchSource`): the scores of
    :func:`textscd_lib.metrics.scores_from_confusion` plus ``confusion`` (7×7) and, with ``transitions``,
    ``transition_confusion`` (49×49), each summed over the DDP ranks."""
    conf = SCDConfusion(device=source.device)
    trans = TransitionConfusion() if transitions else None
    for batch, p1, p2 in predictions(model, source, feats, batch_size, precision, rank, world):
        conf.update(p1, p2, batch["label1"], batch["label2"])
        if trans is not None:
            trans.update(p1, p2, batch["label1"], batch["label2"])
    counts = conf.counts
    if world > 1:
        dist.all_reduce(counts)
    matrix = counts.cpu().numpy().reshape(NUM_CLASSES, NUM_CLASSES)
    res = scores_from_confusion(matrix)
    res["confusion"] = matrix.tolist()
    if trans is not None:
        res["transition_confusion"] = _summed(trans.matrix, counts.device, world).cpu().numpy().tolist()
    return res


def evaluate(model, dataset, text_features=None, device: str | torch.device = "auto", batch_size: int = 8,
             transitions: bool = False, precision: str = "auto") -> dict:
    """Score a model on a dataset split (chapter 06): OA, mIoU, SeK, F_scd, per-class IoU, confusion.

    ``dataset``: an ``SCDDataset`` or a ``DecodedCache`` (anything with ``root``/``split`` or ``names``,
    ``images``, ``labels``)."""
    device = pick_device(device) if isinstance(device, str) else device
    _, source, feats = dataset_source(dataset, text_features, device)
    return evaluate_source(model.to(device), source, feats, batch_size, precision, transitions=transitions)
