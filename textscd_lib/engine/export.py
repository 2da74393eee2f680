"""Predicted maps as files in the SECOND layout (chapter 05; read back by ``textscd evaluate``): the maps of
:func:`textscd_lib.engine.inference.predictions`, the same maps validation scores."""

from __future__ import annotations

from pathlib import Path

import torch

from textscd_lib.common.device import pick_device
from textscd_lib.common.io import atomic_save_png
from textscd_lib.common.paths import resolve
from textscd_lib.data.second import index_to_rgb
from textscd_lib.engine.inference import dataset_source, predictions


def export_predictions(model, dataset, text_features=None, out_root: str | Path = "predictions",
                       device: str | torch.device = "auto", batch_size: int = 8, precision: str = "auto") -> Path:
    """Write predicted maps in the SECOND layout, RGB colours: ``out_root/{label1,label2}/NAME.png``, each
    written atomically."""
    device = pick_device(device) if isinstance(device, str) else device
    out_root = resolve(out_root)
    names, source, feats = dataset_source(dataset, text_features, device)
    for batch, p1, p2 in predictions(model.to(device), source, feats, batch_size, precision):
        p1, p2 = p1.to(torch.uint8).cpu().numpy(), p2.to(torch.uint8).cpu().numpy()
        for k, i in enumerate(batch["idx"]):
            atomic_save_png(out_root / "label1" / f"{names[i]}.png", index_to_rgb(p1[k]))
            atomic_save_png(out_root / "label2" / f"{names[i]}.png", index_to_rgb(p2[k]))
    return out_root
