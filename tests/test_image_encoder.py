"""Siamese ResNet34 (chapter 03): strides, channels, shared weights, recorded substitute."""

import pytest
import torch

from textscd_lib.models.image_encoder import CHANNELS, STRIDES, SiameseResNet34, imagenet_weights_path


@pytest.fixture(scope="module")
def encoder():
    return SiameseResNet34(weights=None).eval()


def test_feature_pyramid_has_strides_4_8_16_32_and_resnet34_channels(encoder):
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        f1, f2 = encoder(x, x)
    assert [tuple(f.shape[1:]) for f in f1] == [(c, 64 // s, 96 // s) for c, s in zip(CHANNELS, STRIDES)]
    assert all(torch.equal(a, b) for a, b in zip(f1, f2))


def test_both_dates_go_through_the_same_weights(encoder):
    x1, x2 = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        f1, f2 = encoder(x1, x2)
        g1, g2 = encoder(x2, x1)
        single = encoder.encode(x2)
    assert torch.allclose(f2[-1], g1[-1], atol=1e-5)
    assert torch.allclose(f2[2], single[2], atol=1e-5)


def test_random_init_is_recorded_never_silent(monkeypatch, tmp_path):
    monkeypatch.setenv("TEXTSCD_RESNET34_WEIGHTS", str(tmp_path / "missing.pth"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert imagenet_weights_path() is None
    enc = SiameseResNet34(weights="auto")
    assert enc.substitute and "random init" in enc.substitute
    with pytest.raises(FileNotFoundError, match="ImageNet ResNet34 weights not found"):
        SiameseResNet34(weights="imagenet")


def test_local_weights_file_is_loaded_and_not_a_substitute(tmp_path, monkeypatch, encoder):
    from torchvision.models import resnet34

    net = resnet34(weights=None)
    f = tmp_path / "resnet34-b627a593.pth"
    torch.save(net.state_dict(), f)
    monkeypatch.setenv("TEXTSCD_RESNET34_WEIGHTS", str(f))
    assert imagenet_weights_path() == f
    enc = SiameseResNet34(weights="auto")
    assert enc.substitute is None
    assert torch.equal(enc.stem[0].weight, net.conv1.weight)
    bad = tmp_path / "bad.pth"
    torch.save({"foo": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="bad.pth"):
        SiameseResNet34(weights=bad)
