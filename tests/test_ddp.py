"""Data-parallel training on CPU: two processes, gloo backend, one tiny epoch; rank 0 alone writes."""

from __future__ import annotations

import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, root: str, queue, data: str) -> None:
    torch.set_num_threads(1)
    import textscd_lib.engine.trainer as T
    from textscd_lib.engine.checkpoints import load_model

    writes: list[str] = []
    real_save = T.atomic_torch_save

    def counting_save(path, obj):  # record which rank writes checkpoints
        writes.append(str(path))
        return real_save(path, obj)

    T.atomic_torch_save = counting_save
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        cfg = T.TrainConfig(run="ddp", results_root=root, model="baseline", epochs=1, batch_size=2, width=16,
                            max_steps_per_epoch=2, image_weights=None, device="cpu", data_root=data)
        res = T.train(cfg)
        params = load_model(res["paths"]["last"]).state_dict() if rank == 0 else None
        queue.put({"rank": rank, "world": res["world"], "shard": res["shard"], "writes": writes,
                   "history": res["history"], "steps": res["steps"],
                   "param_sum": None if params is None else float(sum(p.double().sum() for p in params.values()))})
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_training_shards_data_and_only_rank0_writes(tmp_path):
    from textscd_lib.data.synthetic import ensure_mini_second

    data = str(ensure_mini_second(fast=True))  # the trainer's given input, made before the ranks start
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, str(tmp_path), queue, data)) for r in range(2)]
    for p in procs:
        p.start()
    results = {}
    for _ in procs:
        r = queue.get(timeout=120)
        results[r["rank"]] = r
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    r0, r1 = results[0], results[1]
    assert r0["world"] == r1["world"] == 2
    assert set(r0["shard"]).isdisjoint(r1["shard"]) and len(r0["shard"]) == len(r1["shard"]) == 4
    assert r1["writes"] == [] and any(w.endswith("last.pt") for w in r0["writes"])
    assert (tmp_path / "ddp" / "checkpoints" / "baseline" / "log.csv").is_file()
    # validation is summed over both ranks' shards: every rank reports the same scores and losses
    assert r0["history"][0]["train_total"] == r1["history"][0]["train_total"]
    assert r0["history"][0]["val_OA"] == r1["history"][0]["val_OA"]
    assert r0["steps"] == r1["steps"] == 2
