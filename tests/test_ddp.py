"""Data-parallel training on CPU: two processes, gloo backend, one tiny epoch; rank 0 alone writes."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, root: str, queue, data: str, batch_size: int = 4,
            steps: int = 2, run: str = "ddp") -> None:
    torch.set_num_threads(1)
    import textscd_lib.engine.trainer as T
    from textscd_lib.engine.checkpoints import load_model

    writes: list[str] = []
    real_save = T.save_checkpoint

    def counting_save(path, obj):  # record which rank writes checkpoints
        writes.append(str(path))
        return real_save(path, obj)

    validated: dict = {}
    real_evaluate = T.evaluate_source

    def recording_evaluate(model, *args, **kwargs):  # the weights and statistics this rank validates with
        validated.update({k: v.detach().clone().numpy() for k, v in model.state_dict().items()})
        return real_evaluate(model, *args, **kwargs)

    T.save_checkpoint = counting_save
    T.evaluate_source = recording_evaluate
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        cfg = T.TrainConfig(run=run, results_root=root, model="baseline", epochs=1, batch_size=batch_size,
                            width=16, max_steps_per_epoch=steps, image_weights=None, device="cpu", data_root=data)
        res = T.train(cfg)
        params = load_model(res["paths"]["last"]).state_dict() if rank == 0 else None
        queue.put({"rank": rank, "world": res["world"], "shard": res["shard"], "writes": writes,
                   "params": None if params is None else {k: v.numpy() for k, v in params.items()},  # no shared memory
                   "history": res["history"], "steps": res["steps"], "validated": validated,
                   "param_sum": None if params is None else float(sum(p.double().sum() for p in params.values()))})
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_training_shards_data_and_only_rank0_writes(tmp_path):
    from textscd_lib.data.synthetic import ensure_mini_second

    data = str(ensure_mini_second(fast=True))  # the trainer's given input, made before the ranks start
    # --batch-size is the global batch: 4 over 2 ranks = 2 pairs per rank and step
    results = _two_ranks(tmp_path, data)
    r0, r1 = results[0], results[1]
    assert r0["world"] == r1["world"] == 2
    assert set(r0["shard"]).isdisjoint(r1["shard"]) and len(r0["shard"]) == len(r1["shard"]) == 4
    assert r1["writes"] == [] and any(w.endswith("last.pt") for w in r0["writes"])
    assert (tmp_path / "ddp" / "checkpoints" / "baseline" / "log.csv").is_file()
    # validation is summed over both ranks' shards: every rank reports the same scores and losses
    assert r0["history"][0]["train_total"] == r1["history"][0]["train_total"]
    assert r0["history"][0]["val_OA"] == r1["history"][0]["val_OA"]
    assert r0["steps"] == r1["steps"] == 2


def _two_ranks(tmp_path, data: str, **kw) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, str(tmp_path), queue, data), kwargs=kw) for r in range(2)]
    for p in procs:
        p.start()
    results = {}
    for _ in procs:
        r = queue.get(timeout=120)
        results[r["rank"]] = r
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return results


def test_two_ranks_of_4_take_the_same_first_step_as_one_process_of_8(tmp_path):
    """--batch-size 8 under two ranks: each rank takes 4 pairs, together the 8 pairs of the one-process step;
    every pair gets the same flip; the weights after that step are close, not equal: each rank's BatchNorm
    normalises over its own 4 pairs (SyncBatchNorm needs a GPU), and the loss is averaged over the ranks rather
    than taken over the 8 pairs (dice and the class-weighted BCE are ratios over the batch)."""
    import textscd_lib.engine.trainer as T
    from textscd_lib.data.synthetic import ensure_mini_second
    from textscd_lib.engine.checkpoints import load_model
    from textscd_lib.models.textscd import build_model

    data = str(ensure_mini_second(fast=True))
    ranks = _two_ranks(tmp_path, data, batch_size=8, steps=1, run="ddp8")
    one = T.train(T.TrainConfig(run="one8", results_root=str(tmp_path), model="baseline", epochs=1, batch_size=8,
                                width=16, max_steps_per_epoch=1, image_weights=None, device="cpu", data_root=data))
    assert len(ranks[0]["shard"]) == len(ranks[1]["shard"]) == 4
    assert sorted(ranks[0]["shard"] + ranks[1]["shard"]) == sorted(one["shard"])
    assert ranks[0]["steps"] == one["steps"] == 1
    assert ranks[0]["history"][0]["lr"] == one["history"][0]["lr"]
    torch.manual_seed(0)
    init = build_model("baseline", weights=None, width=16).state_dict()
    single = load_model(one["paths"]["last"]).state_dict()
    ddp = {k: torch.from_numpy(v) for k, v in ranks[0]["params"].items()}
    names = [n for n, v in init.items() if v.is_floating_point() and "running" not in n]
    d_one = torch.cat([(single[n] - init[n]).flatten() for n in names])
    d_ddp = torch.cat([(ddp[n] - init[n]).flatten() for n in names])
    cos = float(torch.nn.functional.cosine_similarity(d_one, d_ddp, dim=0))
    ratio = float(d_ddp.norm() / d_one.norm())
    print(f"first step: cosine of the weight updates {cos:.4f}, norm ratio {ratio:.3f}")
    assert cos > 0.8 and 0.8 < ratio < 1.25  # measured on the 2-core CPU: 0.874 and 0.989


def test_a_global_batch_the_ranks_cannot_share_is_refused(tmp_path):
    import textscd_lib.engine.trainer as T
    from textscd_lib.data.synthetic import ensure_mini_second

    cfg = T.TrainConfig(run="odd", results_root=str(tmp_path), model="baseline", epochs=1, batch_size=3, width=16,
                        image_weights=None, device="cpu", data_root=str(ensure_mini_second(fast=True)))
    with pytest.raises(ValueError, match="--batch-size 3 is the global batch and 2 ranks cannot share it"):
        T._train(cfg, rank=0, world=2)


def _eval_worker(rank: int, world: int, port: int, data: str, queue) -> None:
    """One rank of a DDP validation: its share of the val split, both confusions summed over the ranks."""
    torch.set_num_threads(1)
    from textscd_lib.data.dataset import SCDDataset
    from textscd_lib.engine.evaluation import evaluate_source
    from textscd_lib.engine.inference import dataset_source
    from textscd_lib.models.textscd import build_model

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = build_model("baseline", weights=None, width=16)
        _, source, feats = dataset_source(SCDDataset(data, "val"), None, torch.device("cpu"))
        res = evaluate_source(model, source, feats, 2, "fp32", rank, world, transitions=True)
        queue.put({"rank": rank, "confusion": res["confusion"], "transitions": res["transition_confusion"]})
    finally:
        dist.destroy_process_group()


def test_ddp_validation_sums_the_transition_confusion_over_the_ranks_like_the_7x7_one(tmp_path):
    from textscd_lib.data.dataset import SCDDataset
    from textscd_lib.data.synthetic import ensure_mini_second
    from textscd_lib.engine.evaluation import evaluate_source
    from textscd_lib.engine.inference import dataset_source
    from textscd_lib.models.textscd import build_model

    data = str(ensure_mini_second(fast=True))
    ctx = mp.get_context("spawn")
    queue, port = ctx.Queue(), _free_port()
    procs = [ctx.Process(target=_eval_worker, args=(r, 2, port, data, queue)) for r in range(2)]
    for p in procs:
        p.start()
    ranks = {r["rank"]: r for r in (queue.get(timeout=120) for _ in procs)}
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    torch.manual_seed(0)
    model = build_model("baseline", weights=None, width=16)
    _, source, feats = dataset_source(SCDDataset(data, "val"), None, torch.device("cpu"))
    one = evaluate_source(model, source, feats, 2, "fp32", transitions=True)
    for r in (0, 1):
        assert ranks[r]["confusion"] == one["confusion"]
        assert ranks[r]["transitions"] == one["transition_confusion"]  # the whole split on every rank


def test_ddp_validation_scores_the_weights_saved_in_best_pt(tmp_path):
    """Each rank's BatchNorm keeps running statistics of its own shard; the checkpoint holds rank 0's. The scores
    the trainer reports (history and best) must be those of the saved best.pt, as ``textscd predict`` and
    ``textscd evaluate`` score it, not a mix of both ranks' statistics."""
    from textscd_lib.data.synthetic import ensure_mini_second
    from textscd_lib.engine.checkpoints import load_checkpoint
    from textscd_lib.engine.stages import predict_to_folder
    from textscd_lib.metrics import score_folders

    data = str(ensure_mini_second(fast=True))
    ranks = _two_ranks(tmp_path, data, batch_size=4, steps=3, run="bn")
    best = tmp_path / "bn" / "checkpoints" / "baseline" / "best.pt"
    saved = load_checkpoint(best)["model"]
    for r in (0, 1):  # every rank validates its shard with exactly the saved weights and BatchNorm statistics
        held = ranks[r]["validated"]
        differ = [k for k in saved if not torch.equal(saved[k], torch.from_numpy(held[k]))]
        assert not differ, (r, differ[:3])
    reported = ranks[0]["history"][0]
    assert ranks[1]["history"][0]["val_OA"] == reported["val_OA"]
    pred = predict_to_folder(best, data, tmp_path / "pred", device="cpu", precision="fp32")
    scored = score_folders(pred, data, split="val")
    for m in ("OA", "mIoU", "SeK"):
        assert scored[m] == reported[f"val_{m}"], m
