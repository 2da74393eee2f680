"""Data loading from PNG vs the decoded cache (``textscd bench --data``; chapter 01: why the cache exists)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from textscd_lib.data.dataset import DecodedCache, SCDDataset
from textscd_lib.data.second import find_pairs, read_image, read_label


def loading_benchmark(root: str | Path, split: str = "train", n: int = 64) -> dict:
    """Pairs/s decoding the four PNGs vs reading the decoded cache, and the Dataset's ``__getitem__`` from the
    cache (chapter 05: why the cache exists). Builds the cache first if needed (its time is reported)."""
    pairs = find_pairs(root, split)[:n]

    def rate(fn, repeats: int = 3) -> float:  # best of 3: the machine may be shared
        fn(0)  # warm-up (imports, first page faults)
        best = 0.0
        for _ in range(repeats):
            t0 = time.perf_counter()
            for i in range(len(pairs)):
                fn(i)
            best = max(best, len(pairs) / (time.perf_counter() - t0))
        return best

    png = rate(lambda i: (read_image(pairs[i].im1), read_image(pairs[i].im2),
                          read_label(pairs[i].label1), read_label(pairs[i].label2)))
    t0 = time.perf_counter()
    cache = DecodedCache(root, split)
    build_s = time.perf_counter() - t0
    cached = rate(lambda i: (np.array(cache.images[i]), np.array(cache.labels[i])))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker; also steadier on a shared machine
    try:
        ds_png = SCDDataset(root, split, augment=True, use_cache=False)
        ds = SCDDataset(root, split, augment=True)
        item_png, item = rate(ds_png.__getitem__), rate(ds.__getitem__)
    finally:
        torch.set_num_threads(threads)
    h, w = cache.images.shape[2:4]
    return {"benchmark": "loading", "root": str(root), "split": split, "n": len(pairs), "size": f"{h}x{w}",
            "png_decode_pairs_per_s": round(png, 1), "cache_pairs_per_s": round(cached, 1),
            "dataset_png_pairs_per_s": round(item_png, 1), "dataset_cache_pairs_per_s": round(item, 1),
            "speedup_raw": round(cached / png, 1), "speedup_dataset": round(item / item_png, 1),
            "torch_threads_getitem": 1, "cache_build_s": round(build_s, 3), "cache_built_now": cache.built,
            "cache_bytes": int(cache.images.nbytes + cache.labels.nbytes)}
