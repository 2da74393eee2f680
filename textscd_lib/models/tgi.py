"""The text-guided interaction module TGI, eq. (6)-(7) (chapter 04, ``notebooks/04_text_guided_interaction.ipynb``).

eq. (6): ``F_diff = MLP([x1; x2; x_diff])`` with ``x_diff = |x1 - x2|`` (the paper does not define x_diff;
the absolute difference is symmetric in the dates and the common choice). The MLP is two 1x1 convolutions
(a per-pixel MLP) mapping the 3C concatenated channels to the decoder width.

eq. (7): ``F_o = F_diff + CrossAttn(LN(F_diff), LN(F_text))``. Every pixel of ``F_diff`` is a query; the
L text tokens, linearly projected to the visual width, are keys and values. The padding mask (True = a
real token) keeps padded tokens out of the softmax, so changing them changes nothing. Multi-head attention
runs through ``torch.nn.functional.scaled_dot_product_attention`` (nn.MultiheadAttention cost +30-78% step
time on an H100, SDPA +13%, docs/facts.md#speed-anchors). With ``return_attention=True`` the softmax weights are
computed explicitly (for visualisation only; same result).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class BitemporalMLP(nn.Module):
    """eq. (6): ``F_diff = MLP([x1; x2; |x1 - x2|])`` as two 1x1 conv layers, 3C -> width -> width (chapter 04)."""

    def __init__(self, in_dim: int, width: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Conv2d(3 * in_dim, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
        )

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        x_diff = (x1 - x2).abs()
        return self.mlp(torch.cat([x1, x2, x_diff], dim=1))  # eq. (6)


def attention_mask(mask: torch.Tensor | None, batch: int, length: int, device) -> torch.Tensor | None:
    """Padding mask (B, L), True = real token -> boolean SDPA mask (B, 1, 1, L), True = attend.

    A row with no real token would give NaN; such rows attend to every token instead (no device sync)."""
    if mask is None:
        return None
    if mask.shape != (batch, length):
        raise ValueError(f"text mask has shape {tuple(mask.shape)}, expected {(batch, length)}")
    mask = mask.to(device=device, dtype=torch.bool)
    mask = mask | ~mask.any(dim=-1, keepdim=True)
    return mask[:, None, None, :]


class TGI(nn.Module):
    """Text-guided interaction, eq. (7) (chapter 04).

    ``forward(F_diff (B,C,H,W), F_text (B,L,D_t), mask (B,L) | None, return_attention=False)`` returns
    ``F_o`` (B,C,H,W), and also the attention weights (B, heads, H*W, L) when ``return_attention``.
    ``zero_init=True`` zeroes the output projection so that ``F_o == F_diff`` at the start.
    """

    def __init__(self, vis_dim: int, text_dim: int, heads: int = 8, zero_init: bool = False) -> None:
        super().__init__()
        if vis_dim % heads:
            raise ValueError(f"vis_dim {vis_dim} is not divisible by heads {heads}")
        self.vis_dim, self.text_dim, self.heads = vis_dim, text_dim, heads
        self.text_proj = nn.Linear(text_dim, vis_dim)  # text -> visual width
        self.norm_vis = nn.LayerNorm(vis_dim)
        self.norm_text = nn.LayerNorm(vis_dim)
        self.q = nn.Linear(vis_dim, vis_dim)
        self.k = nn.Linear(vis_dim, vis_dim)
        self.v = nn.Linear(vis_dim, vis_dim)
        self.out = nn.Linear(vis_dim, vis_dim)
        if zero_init:
            self.zero_init_()

    def zero_init_(self) -> TGI:
        """Zero the output projection: the cross-attention adds nothing and ``F_o == F_diff``."""
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        return self

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.vis_dim // self.heads).transpose(1, 2)  # (B, h, N, d)

    def _check(self, F_diff: torch.Tensor, F_text: torch.Tensor) -> None:
        b, c = F_diff.shape[:2]
        if c != self.vis_dim:
            raise ValueError(f"F_diff has {c} channels, TGI expects {self.vis_dim}")
        if F_text.ndim != 3 or F_text.shape[0] != b or F_text.shape[-1] != self.text_dim:
            raise ValueError(f"F_text has shape {tuple(F_text.shape)}, expected ({b}, L, {self.text_dim})")

    def forward(self, F_diff: torch.Tensor, F_text: torch.Tensor, mask: torch.Tensor | None = None,
                return_attention: bool = False):
        self._check(F_diff, F_text)
        return self._attend(F_diff, F_text, attention_mask(mask, F_diff.shape[0], F_text.shape[1], F_diff.device),
                            return_attention)

    def _attend(self, F_diff: torch.Tensor, F_text: torch.Tensor, sdpa_mask: torch.Tensor | None,
                return_attention: bool = False):
        """eq. (7) given the SDPA mask (B,1,1,L) of :func:`attention_mask` (None: every token is real)."""
        b, c, h, w = F_diff.shape
        tokens = F_diff.flatten(2).transpose(1, 2)  # (B, HW, C); a view for channels_last input
        text = self.text_proj(F_text.to(tokens.dtype))  # (B, L, C)
        q = self._heads(self.q(self.norm_vis(tokens)))  # query  = LN(F_diff)
        t = self.norm_text(text)
        k, v = self._heads(self.k(t)), self._heads(self.v(t))  # key/value = LN(F_text)
        if return_attention:
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
            if sdpa_mask is not None:
                scores = scores.masked_fill(~sdpa_mask, float("-inf"))
            attn = scores.softmax(dim=-1)
            ctx = attn @ v
        else:
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=sdpa_mask)
        ctx = self.out(ctx.transpose(1, 2).reshape(b, h * w, c))
        F_o = F_diff + ctx.transpose(1, 2).reshape(b, c, h, w)  # eq. (7), residual
        return (F_o, attn) if return_attention else F_o
