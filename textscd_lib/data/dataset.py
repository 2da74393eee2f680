"""Decoded cache, torch Dataset, reference augmentation and normalisation (chapters 01 and 05).

Decoding PNGs is the throughput wall on real SECOND (4 PNGs per 512² pair, ~85 decodes/s per core), so every
pair is decoded **once** into a uint8 cache under ``ROOT/.cache/`` (two memory-mapped ``.npy`` files; nothing
is loaded into RAM as a whole). The cache key hashes the file names, sizes and mtimes: change a file and the
cache is rebuilt, and the rebuild runs the same per-pair checks as ``textscd data validate``
(:func:`textscd_lib.data.validate.check_pair`), so training never starts on bad data.

Augmentation follows the SECOND reference protocol (docs/facts.md#the-second-dataset): rot90 with p = 0.5, then one of
{none, v-flip, h-flip, both} with p = 0.25 each, identical on both images and both labels; no colour jitter.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from textscd_lib.common.io import atomic_write_json
from textscd_lib.common.paths import resolve
from textscd_lib.data.second import SecondFormatError, find_pairs, read_image, read_label
from textscd_lib.data.validate import check_pair

log = logging.getLogger(__name__)

# Per-date (mean, std) on the 0–255 scale: (mean1, std1, mean2, std2).
NORMALIZATION: dict[str, tuple[tuple[float, float, float], ...]] = {
    "second": ((113.40, 114.08, 116.45), (48.30, 46.27, 48.14), (111.07, 114.04, 118.18), (49.41, 47.01, 47.94)),
    "imagenet": ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375), (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),
}
CACHE_VERSION = 1


def cache_key(pairs) -> str:
    """SHA-1 over (relative name, size, mtime) of every file of every pair (chapter 05: cache invalidation)."""
    h = hashlib.sha1(f"v{CACHE_VERSION}".encode())
    for p in pairs:
        for f in p.files:
            st = f.stat()
            h.update(f"{f.parent.name}/{f.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


class DecodedCache:
    """Every pair of ``root``/``split`` decoded once into uint8 memmaps (chapters 01, 05).

    ``.names``; ``.images`` (N,2,H,W,3) and ``.labels`` (N,2,H,W) uint8, memory-mapped read-only. Built with a
    tqdm bar on first use (checking every pair), written atomically, rebuilt when any file changes. On every
    open it verifies itself (key, names, shapes) and rebuilds, saying so, when truncated or stale."""

    def __init__(self, root: str | Path, split: str | None = "train", cache_dir: str | Path | None = None):
        self.root = Path(root)
        self.split = split
        self.pairs = find_pairs(self.root, split)
        self.names = [p.name for p in self.pairs]
        self.key = cache_key(self.pairs)
        if cache_dir is None and not os.access(self.root, os.W_OK):  # read-only dataset: cache under data/

            cache_dir = resolve("data/.cache") / hashlib.sha1(str(self.root.resolve()).encode()).hexdigest()[:12]
        self.dir = Path(cache_dir) if cache_dir else self.root / ".cache"
        tag = split if split else "all"
        self.stem = self.dir / f"decoded-{tag}-{self.key}"
        self.built = False
        problem = self._verify() if self._file("json").exists() else "missing"
        if problem:
            if problem != "missing":
                log.warning("%s: the decoded cache is unusable (%s); rebuilding it", self.stem, problem)
            self._build(tag)
            problem = self._verify()
            if problem:
                raise OSError(f"{self.stem}: the decoded cache cannot be read right after building it "
                              f"({problem}); delete {self.dir} and check the disk")

    def _verify(self) -> str | None:
        """Open the memmaps and check them against the sidecar JSON and this dataset: the key (a hash of the
        inputs' names, sizes and mtimes), the pair names, and each array's shape. Returns the problem, if any."""
        try:
            meta = json.loads(self._file("json").read_text())
            self.images = np.load(self._file("images"), mmap_mode="r")
            self.labels = np.load(self._file("labels"), mmap_mode="r")
        except (OSError, ValueError) as e:  # a truncated .npy: "mmap length is greater than file size"
            return f"{type(e).__name__}: {e}"
        h, w = meta.get("shape", (None, None))
        n = len(self.names)
        if meta.get("key") != self.key or meta.get("names") != self.names:
            return "it was built from other files"
        if self.images.shape != (n, 2, h, w, 3) or self.labels.shape != (n, 2, h, w) or \
                self.images.dtype != np.uint8 or self.labels.dtype != np.uint8:
            return (f"shapes {self.images.shape}/{self.labels.shape}, expected {(n, 2, h, w, 3)}/"
                    f"{(n, 2, h, w)} uint8")
        return None

    def _file(self, what: str) -> Path:
        return self.stem.with_name(self.stem.name + (".json" if what == "json" else f".{what}.npy"))

    def __len__(self) -> int:
        return len(self.names)

    def _build(self, tag: str) -> None:

        self.dir.mkdir(parents=True, exist_ok=True)
        for old in self.dir.glob(f"decoded-{tag}-*"):
            if self.key not in old.name:  # stale caches of this split (never one a parallel process just built)
                old.unlink(missing_ok=True)
        t0 = time.perf_counter()
        first, problems = check_pair(self.pairs[0])
        if first is None:
            raise SecondFormatError(f"{self.root}: invalid pair, no cache built", problems)
        h, w = first[0].shape[:2]
        tmp = {k: self._file(k).with_name(f".{self._file(k).name}.{os.getpid()}.tmp.npy") for k in ("images", "labels")}
        images = np.lib.format.open_memmap(tmp["images"], "w+", np.uint8, (len(self.pairs), 2, h, w, 3))
        labels = np.lib.format.open_memmap(tmp["labels"], "w+", np.uint8, (len(self.pairs), 2, h, w))
        try:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as ex:
                results = ex.map(check_pair, self.pairs)
                for i, (pair, (arrays, probs)) in enumerate(tqdm(zip(self.pairs, results), total=len(self.pairs),
                                                                 desc=f"decoding {self.root.name}/{tag} once",
                                                                 unit="pair")):
                    if arrays is not None and arrays[0].shape[:2] != (h, w):
                        probs = [f"{pair.im1}: size {arrays[0].shape[1]}x{arrays[0].shape[0]} differs from "
                                 f"{self.pairs[0].im1} ({w}x{h}); one split must have one tile size"]
                    if probs:
                        problems += probs
                        continue
                    images[i, 0], images[i, 1], labels[i, 0], labels[i, 1] = arrays
            if problems:
                raise SecondFormatError(f"{self.root}: {len(problems)} problems, no cache built", problems)
            images.flush()
            labels.flush()
            del images, labels
            for k, f in tmp.items():
                os.replace(f, self._file(k))
        except BaseException:
            for f in tmp.values():
                f.unlink(missing_ok=True)
            raise
        atomic_write_json(self._file("json"), {"root": str(self.root), "split": self.split, "key": self.key,
                                              "names": self.names, "shape": [h, w],
                                              "seconds": round(time.perf_counter() - t0, 2)})
        self.built = True
        log.info("decoded %d pairs of %s into %s in %.1f s", len(self.pairs), self.root, self.dir,
                 time.perf_counter() - t0)


def orient(x: torch.Tensor, rot: bool, flip: int) -> torch.Tensor:
    """One draw of the reference augmentation applied to ``x`` (…, H, W): rot90 when ``rot``, then ``flip``
    0 none, 1 vertical, 2 horizontal, 3 both."""
    if rot:
        x = torch.rot90(x, 1, (-2, -1))
    if flip in (1, 3):
        x = torch.flip(x, (-2,))  # vertical flip
    if flip in (2, 3):
        x = torch.flip(x, (-1,))  # horizontal flip
    return x


def augment(im1, im2, label1, label2, generator=None):
    """Reference SECOND augmentation on torch tensors, single (C,H,W)/(H,W) or batched (B,C,H,W)/(B,H,W), any
    device (chapter 05): rot90 with p = 0.5, then one of {none, v-flip, h-flip, both} with p = 0.25, drawn per
    sample and applied identically to all four. Non-square batches skip the rotation (shapes must agree)."""
    n, (h, w) = (label1.shape[0] if label1.dim() == 3 else 1), label1.shape[-2:]
    rot = (torch.rand(n, generator=generator) < 0.5) & (h == w)
    flip = torch.randint(0, 4, (n,), generator=generator)
    if label1.dim() == 2:  # one sample: apply directly
        return tuple(orient(x, bool(rot[0]), int(flip[0])) for x in (im1, im2, label1, label2))
    outs = [im1.clone(), im2.clone(), label1.clone(), label2.clone()]
    for r in (False, True):
        for f in range(4):
            idx = torch.nonzero((rot == r) & (flip == f)).flatten()
            if len(idx) == 0 or (not r and f == 0):
                continue
            idx = idx.to(label1.device)
            for k, t in enumerate((im1, im2, label1, label2)):
                outs[k][idx] = orient(t[idx], r, f)
    return tuple(outs)


class SCDDataset(Dataset):
    """torch Dataset of SECOND-layout pairs served from the :class:`DecodedCache` (chapters 01, 05).

    ``ds[i]`` → dict ``name``, ``im1``/``im2`` float32 (3,H,W) normalised per date, ``label1``/``label2``
    int64 (H,W) 0..6, ``change`` float32 (H,W) {0, 1}. ``use_cache=False`` decodes the PNGs every time
    (for the loading benchmark). ``.normalization`` records the statistics used."""

    def __init__(self, root: str | Path, split: str = "train", augment: bool = False,
                 normalization: str = "second", seed: int = 0, use_cache: bool = True):
        if normalization not in NORMALIZATION:
            raise ValueError(f"normalization must be one of {sorted(NORMALIZATION)}, got {normalization!r}")
        self.root, self.split, self.augment, self.normalization = Path(root), split, augment, normalization
        self.cache = DecodedCache(root, split) if use_cache else None
        self.pairs = self.cache.pairs if self.cache else find_pairs(root, split)
        self.names = [p.name for p in self.pairs]
        m1, s1, m2, s2 = (torch.tensor(v, dtype=torch.float32).view(3, 1, 1) for v in NORMALIZATION[normalization])
        self._stats = (m1, s1, m2, s2)
        self.seed = seed
        self._gen = torch.Generator().manual_seed(seed)
        self._worker_gen: tuple[int, object] | None = None

    def __len__(self) -> int:
        return len(self.names)

    def raw(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """uint8 (im1, im2, label1, label2) of pair ``i``, un-augmented (for plots; chapter 01)."""
        if self.cache is not None:
            ims, labs = self.cache.images[i], self.cache.labels[i]
            return np.array(ims[0]), np.array(ims[1]), np.array(labs[0]), np.array(labs[1])
        p = self.pairs[i]
        return read_image(p.im1), read_image(p.im2), read_label(p.label1), read_label(p.label2)

    def _generator(self):
        info = torch.utils.data.get_worker_info()
        if info is None:
            return self._gen
        if self._worker_gen is None or self._worker_gen[0] != info.id:  # one stream per DataLoader worker
            self._worker_gen = (info.id, torch.Generator().manual_seed(info.seed % 2**63))
        return self._worker_gen[1]

    def __getitem__(self, i: int) -> dict:
        a1, a2, l1, l2 = (np.ascontiguousarray(a) if a.flags.writeable else a.copy() for a in self.raw(i))
        im1 = torch.from_numpy(a1).permute(2, 0, 1).float()
        im2 = torch.from_numpy(a2).permute(2, 0, 1).float()
        lab1, lab2 = torch.from_numpy(l1).long(), torch.from_numpy(l2).long()
        if self.augment:
            im1, im2, lab1, lab2 = augment(im1, im2, lab1, lab2, self._generator())
        m1, s1, m2, s2 = self._stats
        return {"name": self.names[i], "im1": ((im1 - m1) / s1).contiguous(), "im2": ((im2 - m2) / s2).contiguous(),
                "label1": lab1.contiguous(), "label2": lab2.contiguous(), "change": (lab1 > 0).float().contiguous()}
