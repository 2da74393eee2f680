"""The paths the model and the loss no longer take, rebuilt here so that ``textscd bench`` can still time them
against the library's one path (docs/performance.md, appendix 08). Nothing outside the benchmark uses them.

- :class:`MaskOnceTextSCD`: TextSCD making the SDPA text mask once per forward instead of at each of its three
  TGI levels (the same numbers; ``textscd bench --mask-once on``).
- :func:`fast_cosine_similarity_loss` / :func:`fast_cosine_total_loss`: L_sim (eq. 11) with the cosine written
  out instead of ``F.cosine_similarity`` over the class dimension: the same value up to float rounding, several
  times faster on a CPU, so it would change a run's numbers (``textscd bench --fast-cosine``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from textscd_lib.models.losses import CE_WEIGHT, bce_loss, dice_loss, semantic_ce
from textscd_lib.models.textscd import TextSCD
from textscd_lib.models.tgi import TGI, attention_mask


class PreparedMaskTGI(TGI):
    """TGI called with the SDPA mask already made (B,1,1,L) instead of the padding mask (B,L)."""

    def forward(self, F_diff, F_text, sdpa_mask, return_attention: bool = False):
        self._check(F_diff, F_text)
        return self._attend(F_diff, F_text, sdpa_mask, return_attention)


class MaskOnceTextSCD(TextSCD):
    """TextSCD making the SDPA text mask once per forward for its three TGI levels (the library's model makes it
    at each level). Same constructor, same weights, same outputs."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for level in self.tgi.values() if self.tgi is not None else ():
            level.__class__ = PreparedMaskTGI  # same parameters, prepared-mask call

    def interact(self, x1, x2, F_text, mask, return_attention: bool = False):
        if self.tgi is not None and F_text is not None:
            mask = attention_mask(mask, x1[0].shape[0], F_text.shape[1], x1[0].device)  # once, for every level
        return super().interact(x1, x2, F_text, mask, return_attention)


def fast_cosine_similarity_loss(sem1_logits: torch.Tensor, sem2_logits: torch.Tensor,
                                change: torch.Tensor) -> torch.Tensor:
    """:func:`textscd_lib.models.losses.similarity_loss` with ``cos = sum(p1 p2) / max(|p1| |p2|, eps)``
    written out (rounding differs from ``F.cosine_similarity``)."""
    p1 = F.softmax(sem1_logits[:, 1:].float(), dim=1)
    p2 = F.softmax(sem2_logits[:, 1:].float(), dim=1)
    norms = (p1 * p1).sum(1).sqrt() * (p2 * p2).sum(1).sqrt()
    cos = (p1 * p2).sum(1) / norms.clamp_min(1e-8)
    changed = change.reshape(cos.shape).float()
    return (changed * cos + (1 - changed) * (1 - cos)).mean()  # eq. (11)


def fast_cosine_total_loss(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], as_float: bool = True):
    """:func:`textscd_lib.models.losses.total_loss` with L_sim from :func:`fast_cosine_similarity_loss`."""
    change = batch["change"].to(out["change"].device)
    parts = {
        "ce1": semantic_ce(out["sem1"], batch["label1"].to(out["sem1"].device)),
        "ce2": semantic_ce(out["sem2"], batch["label2"].to(out["sem2"].device)),
        "bce": bce_loss(out["change"], change),
        "dice": dice_loss(out["change"], change),
        "sim": fast_cosine_similarity_loss(out["sem1"], out["sem2"], change),
    }
    loss = CE_WEIGHT * parts["ce1"] + CE_WEIGHT * parts["ce2"] + parts["bce"] + parts["dice"] + parts["sim"]
    parts["total"] = loss
    stacked = torch.stack([parts[n].detach() for n in parts])
    return loss, dict(zip(parts, stacked.tolist() if as_float else stacked))
