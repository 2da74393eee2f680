"""The text-dynamics study's two trainer options (ours, not the paper's): ``tgi_lr_scale`` (the TGI parameters
in their own SGD group, their lr multiplied at every step) and ``zero_init_tgi``; checkpoints written before
the options existed resume as trained at scale 1 without zero init."""

from __future__ import annotations

import pytest
import torch

from textscd_lib.course.pipeline import prepare_inputs
from textscd_lib.engine.checkpoints import check_resume, load_model
from textscd_lib.engine.trainer import TrainConfig, param_groups, train
from textscd_lib.models.textscd import build_model

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def one_step(tmp_path, run: str, **kw) -> dict[str, torch.Tensor]:
    """TextSCD's parameters after one SGD step on the FAST mini-SECOND (lr=0 gives the initial weights)."""
    cfg = TrainConfig(run=run, results_root=str(tmp_path), model="textscd", epochs=1, batch_size=2, width=16,
                      max_steps_per_epoch=1, image_weights=None, device="cpu", seed=5, **kw)
    result = train(prepare_inputs(cfg, fast=True))
    return {k: v.detach().clone() for k, v in load_model(result["paths"]["last"]).named_parameters()}


def test_param_groups_split_the_tgi_from_the_rest_once_each():
    model = build_model("textscd", text_dim=8, weights=None, width=16)
    one = param_groups(model)
    assert len(one) == 1 and one[0]["lr_scale"] == 1.0
    rest, tgi = param_groups(model, 10.0)
    assert tgi["lr_scale"] == 10.0 and rest["lr_scale"] == 1.0
    assert {id(p) for p in tgi["params"]} == {id(p) for p in model.tgi.parameters()}
    every = [id(p) for g in (rest, tgi) for p in g["params"]]
    assert sorted(every) == sorted(id(p) for p in model.parameters())
    with pytest.raises(ValueError, match="no TGI"):
        param_groups(build_model("baseline", weights=None, width=16), 10.0)
    with pytest.raises(ValueError, match="> 0"):
        param_groups(model, 0.0)


def test_the_tgi_moves_scale_times_further_and_the_rest_the_same(tmp_path):
    start = one_step(tmp_path, "start", lr=0.0)
    base = one_step(tmp_path, "base")
    fast = one_step(tmp_path, "fast", tgi_lr_scale=10.0)
    tgi = [k for k in start if k.startswith("tgi.")]
    assert tgi and any((base[k] - start[k]).abs().max() > 0 for k in tgi)
    for k in start:
        d1, d10 = base[k] - start[k], fast[k] - start[k]
        if k in tgi:  # first SGD step: the momentum buffer is the gradient, so the step is lr·scale·grad
            torch.testing.assert_close(d10, 10 * d1, rtol=1e-4, atol=1e-6)  # p - step - p rounds at ~eps·|p|
        else:
            assert torch.equal(d10, d1), k


def test_zero_init_tgi_starts_with_f_o_equal_to_f_diff(tmp_path):
    start = one_step(tmp_path, "zero", lr=0.0, zero_init_tgi=True)
    outs = [k for k in start if k.startswith("tgi.") and ".out." in k]
    assert outs and all(torch.count_nonzero(start[k]) == 0 for k in outs)
    plain = one_step(tmp_path, "plain", lr=0.0)
    assert any(torch.count_nonzero(plain[k]) for k in outs)


def test_a_checkpoint_from_before_the_options_resumes_as_scale_one_without_zero_init(tmp_path):
    cfg = TrainConfig(run="old", model="textscd", data_root="", seed=0)
    record = {k: getattr(cfg, k) for k in ("model", "epochs", "batch_size", "lr", "momentum", "nesterov",
                                          "weight_decay", "poly_power", "size", "seed", "captions",
                                          "text_encoder", "width", "max_steps_per_epoch", "normalization")}
    ck = {"optimizer": {}, "rng": {}, "config": record}
    check_resume(ck, cfg, tmp_path / "last.pt")  # no tail, tgi_lr_scale or zero_init_tgi recorded: accepted
    with pytest.raises(ValueError, match="tgi_lr_scale=1.0 \\(now 3.0\\)"):
        check_resume(ck, TrainConfig(run="old", model="textscd", data_root="", seed=0, tgi_lr_scale=3.0),
                     tmp_path / "last.pt")
    with pytest.raises(ValueError, match="zero_init_tgi=False"):
        check_resume(ck, TrainConfig(run="old", model="textscd", data_root="", seed=0, zero_init_tgi=True),
                     tmp_path / "last.pt")
