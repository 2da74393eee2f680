"""The text-feature cache: ``F_text`` computed once per unique caption and stored per encoder (chapter 03,
``notebooks/03_encoders.ipynb``; training reads it in chapter 05).

The text encoder of eq. (5) is frozen (:mod:`textscd_lib.text.encoder`), so its output for a caption never
changes: :func:`build_text_features` encodes each unique caption once (plus the empty caption, used for pairs
without one) and writes ``(B, 50, D_t)`` fp16 features and masks to one file, keyed by the encoder and a hash
of the captions (:func:`captions_hash`). :class:`TextFeatures` looks the features up by pair name.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch

from textscd_lib.common.io import atomic_torch_save
from textscd_lib.text.encoder import TextEncoder

log = logging.getLogger(__name__)


class TextFeatures:
    """Cached per-caption ``F_text`` (fp16 on disk) with lookup by pair name (chapters 03, 05)."""

    def __init__(self, encoder_name: str, key: str, captions_hash: str, texts: list[str],
                 features: torch.Tensor, mask: torch.Tensor, index: dict[str, int]) -> None:
        self.encoder_name, self.key, self.captions_hash = encoder_name, key, captions_hash
        self.texts, self.features, self.mask, self.index = texts, features, mask, index
        self.empty_index = texts.index("")
        self.dim = features.shape[-1]
        self.context_length = features.shape[1]

    def state(self) -> dict:
        return {"encoder_name": self.encoder_name, "key": self.key, "captions_hash": self.captions_hash,
                "texts": self.texts, "features": self.features.cpu().half(), "mask": self.mask.cpu(),
                "index": self.index}

    def save(self, path: str | Path) -> Path:
        return atomic_torch_save(path, self.state())

    @classmethod
    def load(cls, path: str | Path) -> TextFeatures:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no text-feature cache (build it with build_text_features)")
        try:
            s = torch.load(path, map_location="cpu", weights_only=True)
            return cls(s["encoder_name"], s["key"], s["captions_hash"], s["texts"], s["features"],
                       s["mask"], s["index"])
        except Exception as e:
            raise ValueError(f"{path}: not a text-feature cache ({e}); delete it to rebuild") from e

    def to(self, device) -> TextFeatures:
        """Move the tables to ``device`` once, so that :meth:`lookup` is a gather there."""
        self.features, self.mask = self.features.to(device), self.mask.to(device)
        return self

    def missing(self, names) -> list[str]:
        return [n for n in names if n not in self.index]

    def lookup(self, names) -> tuple[torch.Tensor, torch.Tensor]:
        """``F_text`` float32 (B, 50, D) and mask (B, 50) for pair names; no caption -> the empty caption."""
        idx = torch.tensor([self.index.get(n, self.empty_index) for n in names], dtype=torch.long,
                           device=self.features.device)
        return self.features[idx].float(), self.mask[idx]


def features_path(run_path: str | Path, encoder_name: str, source: str) -> Path:
    """Where a run caches the features of one caption source: ``results/<run>/cache/text_features/
    <encoder>__<source>.pt`` (chapter 03 writes it, chapters 05-07 read it)."""
    return Path(run_path) / "cache" / "text_features" / f"{encoder_name}__{source}.pt"


def captions_hash(encoder_key: str, captions: dict[str, str]) -> str:
    """16 hex digits identifying an encoder and a caption set {pair: caption} (chapter 03): the cache key."""
    blob = json.dumps([encoder_key, sorted(captions.items())], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def build_text_features(encoder: TextEncoder, captions: dict[str, str], path: str | Path,
                        batch_size: int = 64) -> TextFeatures:
    """Encode each unique caption once and cache the result at ``path`` (chapter 03). Reuses ``path`` when
    it holds the same encoder and captions (key = encoder + hash of the captions)."""
    path = Path(path)
    h = captions_hash(encoder.key, captions)
    if path.is_file():
        try:
            cached = TextFeatures.load(path)
            if cached.captions_hash == h and cached.key == encoder.key:
                log.info("text features: reusing %s", path)
                return cached
        except ValueError as e:
            log.warning("%s", e)
    texts = sorted(set(captions.values()) | {""})
    feats, masks = [], []
    for i in range(0, len(texts), batch_size):
        f, m = encoder.encode(texts[i: i + batch_size])
        feats.append(f.cpu().half())
        masks.append(m.cpu())
    pos = {t: i for i, t in enumerate(texts)}
    tf = TextFeatures(encoder.name, encoder.key, h, texts, torch.cat(feats), torch.cat(masks),
                      {n: pos[c] for n, c in captions.items()})
    tf.save(path)
    log.info("text features: %d captions (%d unique) -> %s", len(captions), len(texts), path)
    return tf
