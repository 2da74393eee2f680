"""Choosing the device (chapter 00; every chapter that runs a model)."""

from __future__ import annotations

import torch


def pick_device(pref: str | torch.device = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU. ``cuda`` without a GPU is an error, not a silent CPU run."""
    if str(pref) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(pref)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("DEVICE='cuda' was asked for but torch sees no CUDA GPU; use DEVICE='auto' or 'cpu'")
    return dev
