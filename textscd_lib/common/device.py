"""Choosing the device (chapter 00; every chapter that runs a model)."""

from __future__ import annotations

import torch

KNOWN = "auto, cpu, cuda, cuda:N or mps"


def pick_device(pref: str | torch.device = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU. A device torch does not know, or ``cuda`` without a GPU, is a
    ValueError in one line (a setting the user can fix), not a traceback or a silent CPU run."""
    if str(pref) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(pref)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device {str(pref)!r}: not a device; use {KNOWN}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(pref)!r}: torch sees no CUDA GPU on this machine; use 'auto' or 'cpu'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {str(pref)!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s) "
                         f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {str(pref)!r}: not supported here; use {KNOWN}")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {str(pref)!r}: torch sees no MPS device on this machine; use 'auto' or 'cpu'")
    return dev
