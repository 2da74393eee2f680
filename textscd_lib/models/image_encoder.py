"""The Siamese ResNet34 image encoder, eq. (3)-(4) (chapter 03, ``notebooks/03_encoders.ipynb``).

One torchvision ResNet34 encodes both dates with the *same* weights (Siamese): ``F_img^1 = F_v(x1)`` and
``F_img^2 = F_v(x2)``. The classification head is dropped; the four residual stages give a feature pyramid
with channels (64, 128, 256, 512) at strides (4, 8, 16, 32).

Both dates run as one batch of 2B images (one pass, better device utilisation). In training mode the
BatchNorm statistics are therefore computed over both dates together; with shared weights this is the
usual Siamese choice and it keeps the two dates' features on the same scale.

Weights: ImageNet (torchvision ``IMAGENET1K_V1``) when a local copy exists, never downloaded here. Where
they are missing, ``weights="auto"`` starts from a random init and says so in ``.substitute``; whoever builds
the encoder for a run (a notebook, the trainer) records that line with :func:`textscd_lib.common.runs.record_substitute`,
which is what the reader sees. This module only logs at INFO which weights it loaded, like it does for ImageNet.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn

from textscd_lib.common.paths import resolve

log = logging.getLogger(__name__)

CHANNELS: tuple[int, ...] = (64, 128, 256, 512)
STRIDES: tuple[int, ...] = (4, 8, 16, 32)
IMAGENET_FILE = "resnet34-b627a593.pth"  # torchvision ResNet34_Weights.IMAGENET1K_V1
WEIGHTS_ENV = "TEXTSCD_RESNET34_WEIGHTS"


def imagenet_weights_path() -> Path | None:
    """The local ImageNet ResNet34 weights file, or None (chapter 03). Looks only at local files:
    ``$TEXTSCD_RESNET34_WEIGHTS``, then the torch hub cache (``$TORCH_HOME/hub/checkpoints``), then
    ``data/weights/``. Never downloads."""
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        p = Path(env).expanduser()
        if p.is_file():
            return p
        log.warning("%s=%s does not name a file; ignoring it", WEIGHTS_ENV, env)
    candidates = [Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_FILE]
    try:

        candidates.append(resolve("data/weights") / IMAGENET_FILE)
    except Exception:  # pragma: no cover - runs is part of the package
        pass
    for p in candidates:
        if p.is_file():
            return p
    return None


def _load_resnet34(weights: str | Path | None) -> tuple[nn.Module, str | None, str]:
    """Build torchvision's ResNet34; returns (net, substitute line or None, description of the weights)."""
    from torchvision.models import resnet34

    net = resnet34(weights=None)
    if weights == "auto" or weights == "imagenet":
        path = imagenet_weights_path()
        if path is None:
            if weights == "imagenet":
                raise FileNotFoundError(
                    f"ImageNet ResNet34 weights not found offline: set {WEIGHTS_ENV} to a local "
                    f"{IMAGENET_FILE} or put it in {Path(torch.hub.get_dir()) / 'checkpoints'}")
            sub = "ResNet34 random init instead of ImageNet weights (ImageNet weights not found offline)"
            log.info("ResNet34: random init (no ImageNet weights found offline)")
            return net, sub, "random init"
        weights = path
    if weights is None or weights == "random":
        sub = "ResNet34 random init instead of ImageNet weights (asked for weights=None)"
        log.info("ResNet34: random init (asked for weights=None)")
        return net, sub, "random init"
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ResNet34 weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
        missing, unexpected = net.load_state_dict(state, strict=False)
    except Exception as e:
        raise ValueError(f"{path}: not a ResNet34 state dict ({e})") from e
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing:
        raise ValueError(f"{path}: not a ResNet34 state dict (missing {missing[:5]} ...)")
    log.info("ResNet34: ImageNet weights from %s", path)
    return net, None, f"ImageNet ({path.name})"


class SiameseResNet34(nn.Module):
    """Shared-weight ResNet34 for both dates, eq. (3)-(4) (chapter 03).

    ``forward(x1, x2) -> (feats1, feats2)``, each a list of 4 maps with channels :data:`CHANNELS` at
    strides :data:`STRIDES`. ``weights``: ``"auto"`` (ImageNet if a local file exists, else random init,
    recorded in ``.substitute``), ``"imagenet"`` (required), ``None``/``"random"``, or a file path.
    """

    channels = CHANNELS
    strides = STRIDES

    def __init__(self, weights: str | Path | None = "auto") -> None:
        super().__init__()
        net, self.substitute, self.weights_description = _load_resnet34(weights)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature pyramid of one batch of images, eq. (3)."""
        x = self.stem(x)
        f1 = self.layer1(x)
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return [f1, f2, f3, f4]

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Both dates through the same weights in one pass, eq. (3)-(4)."""
        if x1.shape != x2.shape:
            raise ValueError(f"the two dates differ in shape: {tuple(x1.shape)} vs {tuple(x2.shape)}")
        b = x1.shape[0]
        feats = self.encode(torch.cat([x1, x2], dim=0))
        return [f[:b] for f in feats], [f[b:] for f in feats]
