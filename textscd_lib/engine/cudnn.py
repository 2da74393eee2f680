"""cuDNN's autotuner for the length of a job, then put back as it was (chapter 05, appendix 08)."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def cudnn_benchmark(enabled: bool):
    """Set ``torch.backends.cudnn.benchmark`` to ``enabled`` inside the block and restore the previous value on
    exit. With static shapes (training, the bench) cuDNN times its algorithms once and keeps the fastest; the
    setting is process-wide, so a job that turns it on must not leave it on for whatever runs next."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before
