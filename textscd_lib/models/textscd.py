"""TextSCD and its Baseline: encoder -> eq. (6) -> TGI eq. (7) -> decoder eq. (8) -> three heads
(chapters 04 and 05).

Architecture decisions (the paper leaves them open; each is one line to change):

* Every pyramid level i = 0..3 (strides 4, 8, 16, 32) is reduced to one decoder width (default 128) by the
  eq. (6) MLP: ``F_diff^i = MLP([x1^i; x2^i; |x1^i - x2^i|])``.
* TGI (eq. 7) runs at levels 1, 2, 3 (strides 8, 16, 32), the paper's ``i in (1, 2, 3)``; level 0 keeps
  ``F_o^0 = F_diff^0`` (4096 queries per 256^2 tile would cost the most and add little).
* Text reaches all three heads: the change branch decodes ``F_o^i``; the semantic branch of date k decodes
  ``Conv1x1([x_k^i; F_o^i])``, so the semantic maps also see the text. Both dates share the semantic
  decoder and classifier weights; the change branch has its own.
* Decoder, eq. (8): ``p_i <- Deconv4x4(Conv1x1(p_{i+1})) + p_i`` from stride 32 to stride 4, then two more
  ``Deconv4x4(Conv1x1(.))`` steps (halving the width, no skip) to full resolution, then a 3x3 classifier.
  Conv1x1 here is conv + BatchNorm + ReLU. This is ``tail="paper"``, the default.
* The decoder tail (everything after stride 4) is a build option, ``tail`` (:data:`TAILS`):
  ``"paper"`` as above (two deconvolution stages 128->64->32 at 256^2 and 512^2, BatchNorm + ReLU at full
  size, 3x3 classifier); ``"narrow"``: Conv1x1 to ``tail_width`` (16) channels at stride 4, bilinear x4 to
  full size, 3x3 classifier there (still the paper's words: "after upsampling to the original resolution,
  a 3x3 convolution"); ``"stride4"``: the 3x3 classifier on the stride-4 map, logits upsampled bilinearly
  (the reference protocol's habit; labelled a variant, it is not the paper's wording).
* Baseline (the paper's "Baseline" row) is the same module built by the same function with the
  cross-attention removed (``F_o = F_diff``); it takes the same call and ignores the text.

Inference rule: ``pred_k = argmax(sem_k) x (sigmoid(change) > 0.5)`` (:func:`predict`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from textscd_lib.models.image_encoder import CHANNELS, SiameseResNet34
from textscd_lib.models.kinds import KINDS, TAILS
from textscd_lib.models.tgi import TGI, BitemporalMLP

NUM_CLASSES = 7  # len(data.second.CLASSES): models may not import data (import-linter); a test checks they agree
TGI_LEVELS = (1, 2, 3)
TAIL_WIDTH = 16


def conv1x1(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Decoder(nn.Module):
    """The simple decoder of eq. (8) (chapter 04): top-down ``p_i <- Deconv4x4(Conv1x1(p_{i+1})) + p_i``
    over ``levels`` maps of equal width, then the tail to full resolution (module docstring, :data:`TAILS`):
    ``"paper"``: ``final_steps`` upsamplings x2 (width halved each time) + BatchNorm + ReLU; ``"narrow"``:
    Conv1x1 to ``tail_width`` then bilinear to full size; ``"stride4"``: the stride-4 map itself (the model
    then upsamples the classifier's logits, :meth:`TextSCD._classify`)."""

    def __init__(self, width: int, levels: int = 4, final_steps: int = 2, tail: str = "paper",
                 tail_width: int = TAIL_WIDTH) -> None:
        super().__init__()
        if tail not in TAILS:
            raise ValueError(f"unknown decoder tail {tail!r}; expected one of {TAILS}")
        self.tail = tail
        self.lateral_up = nn.ModuleList(
            nn.Sequential(conv1x1(width, width), nn.ConvTranspose2d(width, width, 4, stride=2, padding=1))
            for _ in range(levels - 1))
        if tail == "paper":  # built in this order so that the default's initial weights never change
            widths = [width // 2 ** s for s in range(final_steps + 1)]
            self.final_up = nn.ModuleList(
                nn.Sequential(conv1x1(widths[s], widths[s + 1]),
                              nn.ConvTranspose2d(widths[s + 1], widths[s + 1], 4, stride=2, padding=1))
                for s in range(final_steps))
            self.out_norm = nn.Sequential(nn.BatchNorm2d(widths[-1]), nn.ReLU(inplace=True))
            self.out_dim = widths[-1]
        elif tail == "narrow":
            self.narrow = conv1x1(width, tail_width)
            self.out_dim = tail_width
        else:
            self.out_dim = width

    def forward(self, feats: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        p = feats[-1]
        for i in range(len(feats) - 2, -1, -1):
            up = self.lateral_up[i](p)
            if up.shape[-2:] != feats[i].shape[-2:]:  # sizes that are not multiples of 32
                up = F.interpolate(up, size=feats[i].shape[-2:], mode="bilinear", align_corners=False)
            p = up + feats[i]  # eq. (8)
        if self.tail == "stride4":
            return p
        if self.tail == "narrow":
            return F.interpolate(self.narrow(p), size=tuple(size), mode="bilinear", align_corners=False)
        for step in self.final_up:
            p = step(p)
        if p.shape[-2:] != tuple(size):
            p = F.interpolate(p, size=size, mode="bilinear", align_corners=False)
        return self.out_norm(p)


class TextSCD(nn.Module):
    """TextSCD (``kind="textscd"``) or the Baseline (``kind="baseline"``), eq. (2)-(8) (chapters 04, 05).

    ``forward(x1, x2, F_text=None, mask=None) -> {"sem1", "sem2": (B,7,H,W), "change": (B,1,H,W)}`` logits.
    """

    def __init__(self, kind: str = "textscd", text_dim: int = 512, weights="auto", width: int = 128,
                 heads: int = 8, zero_init_tgi: bool = False, tail: str = "paper") -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown model kind {kind!r}; expected one of {KINDS}")
        if tail not in TAILS:
            raise ValueError(f"unknown decoder tail {tail!r}; expected one of {TAILS}")
        self.kind, self.text_dim, self.width, self.tail = kind, text_dim, width, tail
        self.encoder = SiameseResNet34(weights)
        self.substitute = self.encoder.substitute
        self.substitutes = [s for s in [self.encoder.substitute] if s]
        self.fuse = nn.ModuleList(BitemporalMLP(c, width) for c in CHANNELS)  # eq. (6)
        self.tgi = (nn.ModuleDict({str(i): TGI(width, text_dim, heads, zero_init=zero_init_tgi)
                                   for i in TGI_LEVELS}) if kind == "textscd" else None)  # eq. (7)
        self.sem_in = nn.ModuleList(conv1x1(c + width, width) for c in CHANNELS)
        self.sem_decoder = Decoder(width, tail=tail)
        self.change_decoder = Decoder(width, tail=tail)
        self.sem_head = nn.Conv2d(self.sem_decoder.out_dim, NUM_CLASSES, 3, padding=1)
        self.change_head = nn.Conv2d(self.change_decoder.out_dim, 1, 3, padding=1)

    @property
    def uses_text(self) -> bool:
        return self.tgi is not None

    def interact(self, x1: list[torch.Tensor], x2: list[torch.Tensor], F_text: torch.Tensor | None,
                 mask: torch.Tensor | None, return_attention: bool = False):
        """eq. (6)-(7) at every level: returns ``F_o`` per level (and TGI attention per level if asked)."""
        F_o, attention = [], {}
        for i, (a, b) in enumerate(zip(x1, x2)):
            f = self.fuse[i](a, b)  # eq. (6)
            if self.tgi is not None and str(i) in self.tgi:
                if return_attention:
                    f, attention[i] = self.tgi[str(i)](f, F_text, mask, return_attention=True)
                else:
                    f = self.tgi[str(i)](f, F_text, mask)  # eq. (7)
            F_o.append(f)
        return (F_o, attention) if return_attention else F_o

    def _classify(self, head: nn.Module, p: torch.Tensor, size) -> torch.Tensor:
        """The 3x3 classifier; with ``tail="stride4"`` its logits are upsampled bilinearly to ``size``."""
        logits = head(p)
        if logits.shape[-2:] != tuple(size):
            logits = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
        return logits

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, F_text: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, return_attention: bool = False) -> dict[str, torch.Tensor]:
        if self.uses_text:
            if F_text is None:
                raise ValueError("TextSCD needs F_text (B, L, D_t); use build_model('baseline') for no text")
            if F_text.shape[-1] != self.text_dim:
                raise ValueError(f"F_text has dim {F_text.shape[-1]}, the model was built for {self.text_dim} "
                                 f"(build_model(text_dim=...) must match the text encoder)")
        size = x1.shape[-2:]
        feats1, feats2 = self.encoder(x1, x2)  # eq. (3)-(4)
        res = self.interact(feats1, feats2, F_text, mask, return_attention)
        F_o, attention = res if return_attention else (res, None)
        b = x1.shape[0]
        sem_feats = [self.sem_in[i](torch.cat([torch.cat([f1, f2], 0), torch.cat([fo, fo], 0)], 1))
                     for i, (f1, f2, fo) in enumerate(zip(feats1, feats2, F_o))]
        sem = self._classify(self.sem_head, self.sem_decoder(sem_feats, size), size)  # both dates, shared weights
        change = self._classify(self.change_head, self.change_decoder(F_o, size), size)
        out = {"sem1": sem[:b], "sem2": sem[b:], "change": change}
        if return_attention:
            out["attention"] = attention
        return out


def build_model(kind: str = "textscd", text_dim: int = 512, weights="auto", width: int = 128,
                heads: int = 8, zero_init_tgi: bool = False, tail: str = "paper") -> TextSCD:
    """TextSCD or Baseline, built the same way (chapters 04, 05). ``weights`` is the ResNet34's
    (``"auto"``, ``"imagenet"``, ``None`` or a file); ``model.substitutes`` lists the offline stand-ins.
    ``tail`` picks the decoders' tail after stride 4 (:data:`TAILS`, module docstring)."""
    return TextSCD(kind=kind, text_dim=text_dim, weights=weights, width=width, heads=heads,
                   zero_init_tgi=zero_init_tgi, tail=tail)


@torch.no_grad()
def predict(out: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``pred_k = argmax(sem_k) x (sigmoid(change) > 0.5)``, int64 (B,H,W) each (chapter 05)."""
    changed = (out["change"][:, 0] > 0).long()  # sigmoid(z) > 0.5  <=>  z > 0
    return out["sem1"].argmax(1) * changed, out["sem2"].argmax(1) * changed


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts (chapter 04)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable
