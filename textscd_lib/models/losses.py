"""Losses of TextSCD, eq. (9)-(12), plus the semantic cross-entropy of the SECOND lineage (chapter 05).

Total (docs/facts.md#losses): ``L = 0.5 CE_1 + 0.5 CE_2 + L_bce + L_dice + L_sim``. The paper's eq. (12) lists
dice + BCE + sim; the two semantic heads also need the lineage's CE (Bi-SRNet, SCanNet), which ignores
class 0 so that only changed pixels supervise the semantic maps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CE_WEIGHT = 0.5


def dice_loss(change_logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """eq. (9): ``1 - 2 sum(p g) / (sum(p^2) + sum(g^2))`` over all pixels of the batch, p = sigmoid(logits).

    ``smooth`` is added to numerator and denominator (0/0 on an all-unchanged batch); ``smooth=0`` is eq. (9)
    exactly."""
    p = torch.sigmoid(change_logits.float()).reshape(-1)
    g = target.float().reshape(-1)
    return 1 - (2 * (p * g).sum() + smooth) / ((p * p).sum() + (g * g).sum() + smooth)  # eq. (9)


def bce_loss(change_logits: torch.Tensor, target: torch.Tensor, weighted: bool = True,
             weight_pos: float = 0.25, weight_neg: float = 0.75) -> torch.Tensor:
    """eq. (10): binary cross-entropy of the change map (chapter 05).

    ``weighted=True`` (the reference choice, docs/facts.md#losses): ``0.25 x mean over changed pixels +
    0.75 x mean over unchanged pixels``, each class normalised by its own pixel count. ``weighted=False``:
    the plain mean over all N pixels of eq. (10). The paper writes log2; like every implementation we use
    the natural log (log2 only rescales the loss by 1/ln 2)."""
    z = change_logits.float().reshape(-1)
    y = target.float().reshape(-1)
    per_pixel = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    if not weighted:
        return per_pixel.mean()  # eq. (10)
    pos = (y > 0.5).float()
    neg = 1 - pos
    return (weight_pos * (pos * per_pixel).sum() / pos.sum().clamp_min(1e-12)
            + weight_neg * (neg * per_pixel).sum() / neg.sum().clamp_min(1e-12))


def similarity_loss(sem1_logits: torch.Tensor, sem2_logits: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
    """eq. (11): ``1 - cos(P1, P2)`` on unchanged pixels, ``cos(P1, P2)`` on changed ones, mean over pixels.

    P_k = softmax over the 6 non-zero classes of date k's semantic logits (Bi-SRNet's ChangeSimilarity:
    CosineEmbeddingLoss with margin 0; probabilities are >= 0 so max(0, cos) = cos)."""
    p1 = F.softmax(sem1_logits[:, 1:].float(), dim=1)
    p2 = F.softmax(sem2_logits[:, 1:].float(), dim=1)
    cos = F.cosine_similarity(p1, p2, dim=1, eps=1e-8)  # (B, H, W)
    changed = change.reshape(cos.shape).float()
    return (changed * cos + (1 - changed) * (1 - cos)).mean()  # eq. (11)


def semantic_ce(sem_logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the 7 classes that ignores class 0 (unchanged) pixels (the lineage's semantic loss).

    Mean over the supervised pixels; 0 (not NaN) when a batch has no changed pixel."""
    label = label.long()
    per_pixel = F.cross_entropy(sem_logits.float(), label, ignore_index=0, reduction="none")
    count = (label != 0).sum().clamp_min(1)
    return per_pixel.sum() / count


def total_loss(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], as_float: bool = True):
    """eq. (12) plus the semantic CE: ``0.5 CE1 + 0.5 CE2 + BCE + dice + sim`` (chapter 05).

    Returns ``(loss, parts)``; ``parts`` maps "ce1", "ce2", "bce", "dice", "sim", "total" to floats (one
    device sync), or to detached tensors with ``as_float=False`` (no sync: the trainer's and the bench's
    step)."""
    change = batch["change"].to(out["change"].device)
    parts = {
        "ce1": semantic_ce(out["sem1"], batch["label1"].to(out["sem1"].device)),
        "ce2": semantic_ce(out["sem2"], batch["label2"].to(out["sem2"].device)),
        "bce": bce_loss(out["change"], change),
        "dice": dice_loss(out["change"], change),
        "sim": similarity_loss(out["sem1"], out["sem2"], change),
    }
    loss = CE_WEIGHT * parts["ce1"] + CE_WEIGHT * parts["ce2"] + parts["bce"] + parts["dice"] + parts["sim"]
    parts["total"] = loss
    names = list(parts)
    stacked = torch.stack([parts[n].detach() for n in names])
    if as_float:
        return loss, dict(zip(names, stacked.tolist()))
    return loss, dict(zip(names, stacked))
