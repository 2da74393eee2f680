"""The GPU fast path (chapter 05, appendix 08) changes no number on the CPU: the batched augmentation, the
device-side index lookup and TGI's mask prepared once give exactly what the plain path gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from textscd_lib.data.dataset import augment
from textscd_lib.engine.augmentation import augment_batch
from textscd_lib.engine.batches import BatchSource, Normalizer
from textscd_lib.engine.inference import forward_batch


def _batch(n=6, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    im1 = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    im2 = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    l1 = torch.randint(0, 7, (n, size, size), generator=g, dtype=torch.uint8)
    return im1, im2, l1, torch.where(l1 > 0, 7 - l1, 0)


def test_augment_batch_draws_the_same_flips_and_gives_the_reference_augmentation_bit_for_bit():
    for seed in range(5):
        ref = augment(*_batch(seed=seed), torch.Generator().manual_seed(seed))
        gen = torch.Generator().manual_seed(seed)
        fast = augment_batch(*_batch(seed=seed), gen)
        assert all(torch.equal(a, b) for a, b in zip(ref, fast))
        assert not torch.equal(fast[0], _batch(seed=seed)[0])  # something was rotated or flipped
        # the generator moved on by exactly the same draws
        g2 = torch.Generator().manual_seed(seed)
        augment(*_batch(seed=seed), g2)
        assert torch.equal(gen.get_state(), g2.get_state())


def test_batches_carry_their_indices_on_the_device_and_the_text_lookup_uses_them():
    n, size = 5, 32
    images = np.random.default_rng(0).integers(0, 256, (n, 2, size, size, 3), dtype=np.uint8)
    labels = np.random.default_rng(1).integers(0, 7, (n, 2, size, size), dtype=np.uint8)
    src = BatchSource(images, labels, torch.device("cpu"), Normalizer.create([[0] * 3, [1] * 3] * 2, "cpu"))
    batches = [np.array([4, 0]), np.array([2, 1, 3])]
    got = list(src.batches(batches))
    assert [b["idx_t"].tolist() for b in got] == [[4, 0], [2, 1, 3]]
    feats = (torch.arange(n, dtype=torch.float32).view(n, 1, 1).expand(n, 2, 3).contiguous(),
             torch.ones(n, 2, dtype=torch.bool))
    seen = {}

    def model(x1, x2, F_text, mask):
        seen["rows"] = F_text[:, 0, 0].tolist()
        return {"change": x1[:, :1]}

    forward_batch(model, got[1], feats, torch.autocast("cpu", enabled=False))
    assert seen["rows"] == [2.0, 1.0, 3.0]


def test_streamed_and_resident_batches_are_equal_with_the_same_flips():
    n, size = 6, 32
    images = np.random.default_rng(2).integers(0, 256, (n, 2, size, size, 3), dtype=np.uint8)
    labels = np.random.default_rng(3).integers(0, 7, (n, 2, size, size), dtype=np.uint8)
    norm = Normalizer.create([[100] * 3, [50] * 3] * 2, "cpu")
    batches = [np.array([5, 1, 2]), np.array([0, 4, 3])]
    res = list(BatchSource(images, labels, torch.device("cpu"), norm, resident=True)
               .batches(batches, torch.Generator().manual_seed(7)))
    streamed = list(BatchSource(images, labels, torch.device("cpu"), norm, resident=False, workers=0)
                    .batches(batches, torch.Generator().manual_seed(7)))
    for a, b in zip(res, streamed):
        assert torch.equal(a["idx_t"], b["idx_t"])
        assert all(torch.equal(a[k], b[k]) for k in ("x1", "x2", "label1", "label2", "change"))


def test_the_benchmarks_mask_once_variant_gives_the_same_output_as_the_models_per_level_masks():
    from textscd_lib.models.textscd import build_model
    from textscd_lib.perf.variants import MaskOnceTextSCD

    torch.manual_seed(0)
    model = build_model("textscd", text_dim=8, weights=None, width=16, heads=4).eval()
    x1, x2 = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    F_text, mask = torch.randn(2, 6, 8), torch.tensor([[1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0]], dtype=torch.bool)
    with torch.no_grad():
        per_level = model(x1, x2, F_text, mask)
        variant = MaskOnceTextSCD("textscd", text_dim=8, weights=None, width=16, heads=4).eval()
        variant.load_state_dict(model.state_dict())
        once = variant(x1, x2, F_text, mask)
    assert all(torch.equal(once[k], per_level[k]) for k in once)


def test_the_global_batch_is_shared_by_the_ranks_and_an_unshareable_one_is_refused():
    from textscd_lib.engine.sharding import epoch_batches, rank_batch_size

    assert rank_batch_size(8, 1) == 8 and rank_batch_size(8, 2) == 4 and rank_batch_size(8, 4) == 2
    with pytest.raises(ValueError, match="--batch-size 6 is the global batch and 4 ranks cannot share it"):
        rank_batch_size(6, 4)
    one = epoch_batches(30, 8, 0, 0)
    ranks = [epoch_batches(30, rank_batch_size(8, 2), 0, 0, rank=r, world=2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(one)
    for k, batch in enumerate(one):  # step k of the two ranks together = step k of one process
        assert sorted(np.concatenate([ranks[0][k], ranks[1][k]]).tolist()) == sorted(batch.tolist())


def test_under_ddp_each_rank_flips_its_pairs_as_one_process_with_the_whole_batch_would():
    im1, im2, l1, l2 = _batch(n=8, seed=3)
    whole = augment_batch(im1, im2, l1, l2, torch.Generator().manual_seed(5))
    for rank in range(2):
        mine = augment_batch(im1[rank::2], im2[rank::2], l1[rank::2], l2[rank::2], torch.Generator().manual_seed(5),
                             rank=rank, world=2)
        assert all(torch.equal(a[rank::2], b) for a, b in zip(whole, mine))


def test_the_trainer_builds_the_asked_tail_saves_it_and_refuses_compile_on_the_cpu(tmp_path):
    from textscd_lib.data.synthetic import ensure_mini_second
    from textscd_lib.engine.checkpoints import load_model
    from textscd_lib.engine.trainer import TrainConfig, train

    cfg = TrainConfig(run="tail", results_root=str(tmp_path), model="baseline", epochs=1, batch_size=2, width=16,
                      max_steps_per_epoch=1, image_weights=None, device="cpu", tail="narrow",
                      data_root=str(ensure_mini_second(fast=True)))
    res = train(cfg)
    model = load_model(res["paths"]["last"])
    assert model.tail == "narrow" and hasattr(model.sem_decoder, "narrow")
    with pytest.raises(ValueError, match="torch.compile is used on CUDA only"):
        train(TrainConfig(**{**cfg.__dict__, "run": "compiled", "compile": True}))
    with pytest.raises(ValueError, match="decoder tail 'wide'"):
        TrainConfig(tail="wide").check()


def test_training_checkpoints_land_in_the_run_folder_that_textscd_results_names(tmp_path, monkeypatch):
    from textscd_lib.common.runs import run_dir
    from textscd_lib.engine.config import TrainConfig

    monkeypatch.setenv("TEXTSCD_RESULTS", str(tmp_path / "elsewhere"))
    cfg = TrainConfig(run="gpu-x", model="baseline")
    assert cfg.checkpoint_dir() == run_dir("gpu-x") / "checkpoints" / "baseline"
    assert cfg.checkpoint_dir().is_relative_to(tmp_path / "elsewhere")
    assert TrainConfig(run="r", results_root=str(tmp_path / "given")).checkpoint_dir().parent.parent.parent == (
        tmp_path / "given")
