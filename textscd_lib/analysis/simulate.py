"""Predictions of a simulated method, written to disk as other methods write theirs: chapter 06's exercises, the
tests and the benchmark of ``textscd errors`` (``python -m textscd_lib.analysis.simulate``, see :func:`benchmark`).

:func:`simulate_maps` damages the truth in the ways a change detector errs, each controlled and seeded: true
change regions dropped (misses), grown by a rim (boundary false alarms), a few invented blobs away from any
change (isolated false alarms), and date-2 classes swapped (right change, wrong class). :func:`write_predictions`
saves them in one of the layouts of `textscd_lib.metrics.PRED_LAYOUTS`. Nothing here is a model: it is a
known answer to check the instrument against.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from textscd_lib.analysis.records import STRUCTURE
from textscd_lib.common.paths import resolve
from textscd_lib.data.second import CLASSES, COLORS, image_files, read_label
from textscd_lib.metrics import BINARY_LAYOUT, PRED_LAYOUTS

RECORD = "results/benchmarks/errors.jsonl"   # the committed record (`--record`), under the working folder


def simulate_maps(rng: np.random.Generator, label1: np.ndarray, label2: np.ndarray, drop: float = 0.15,
                  rim: int = 2, blobs: int = 2, swap: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """``(pred1, pred2)`` from the truth: each true change region is missed with probability ``drop``, grown
    by ``rim`` px, its date-2 class swapped with probability ``swap``; ``blobs`` (Poisson mean) squares of a
    random transition are invented where nothing changed."""
    l1, l2 = np.asarray(label1, np.uint8), np.asarray(label2, np.uint8)
    lab, n = ndimage.label(l1 > 0, STRUCTURE)
    keep = np.concatenate([[False], rng.random(n) >= drop])
    p1, p2 = np.where(keep[lab], l1, 0).astype(np.uint8), np.where(keep[lab], l2, 0).astype(np.uint8)
    if rim > 0 and p1.any():
        size = 2 * rim + 1
        grown1, grown2 = ndimage.grey_dilation(p1, size=size), ndimage.grey_dilation(p2, size=size)
        band = (p1 == 0) & (grown1 > 0) & (grown2 > 0) & (rng.random() < 0.7)
        p1, p2 = np.where(band, grown1, p1), np.where(band, grown2, p2)
    swapped = np.concatenate([[False], rng.random(n) < swap])[lab] & (p2 > 0)
    p2 = np.where(swapped, (p2 % (len(CLASSES) - 1)) + 1, p2).astype(np.uint8)
    h, w = l1.shape
    for _ in range(rng.poisson(blobs)):
        side = int(rng.integers(max(2, h // 32), max(3, h // 8)))
        r, c = int(rng.integers(0, h - side)), int(rng.integers(0, w - side))
        if (l1[r:r + side, c:c + side] == 0).all():
            a, b = rng.choice(np.arange(1, len(CLASSES)), 2, replace=False)
            p1[r:r + side, c:c + side], p2[r:r + side, c:c + side] = a, b
    return p1, p2


def write_predictions(gt_dir: str | Path, out: str | Path, layout: str = "im1", seed: int = 0, **damage) -> Path:
    """Simulated predictions for every pair of ``gt_dir`` (holding label1/ label2/) written to ``out`` in the
    layout whose date-1 folder is ``layout`` ("label1", "im1" = index maps, "im1_rgb" = colour maps), or with
    ``layout="binary"`` as one 0/255 change mask per pair directly in ``out``."""
    lay = {x[0]: x for x in PRED_LAYOUTS}
    if layout not in lay and layout != BINARY_LAYOUT:
        raise ValueError(f"layout {layout!r}: choose one of {', '.join(lay)}, {BINARY_LAYOUT}")
    gt_dir, out = Path(gt_dir), Path(out)
    f1, f2, _ = lay.get(layout, (".", ".", ""))
    (out / f1).mkdir(parents=True, exist_ok=True)
    (out / f2).mkdir(parents=True, exist_ok=True)
    second = image_files(gt_dir / "label2")
    for i, (name, path) in enumerate(sorted(image_files(gt_dir / "label1").items())):
        p1, p2 = simulate_maps(np.random.default_rng([seed, i]), read_label(path), read_label(second[name]), **damage)
        if layout == BINARY_LAYOUT:
            Image.fromarray(((p1 > 0) * 255).astype(np.uint8)).save(out / f"{name}.png", compress_level=1)
            continue
        for folder, p in ((f1, p1), (f2, p2)):
            Image.fromarray(COLORS[p] if layout == "im1_rgb" else p).save(out / folder / f"{name}.png",
                                                                       compress_level=1)
    return out


def _replicate(root: Path, gt: Path, pairs: int) -> None:
    """Copy the generated pairs (and their scene-log lines) under new names until there are ``pairs``."""
    import shutil

    lines = [json.loads(x) for x in (root / "scene_log.jsonl").read_text().splitlines() if x.strip()]
    names = sorted(p.stem for p in (gt / "label1").iterdir())
    for i in range(len(names), pairs):
        src, dst = names[i % len(names)], f"r{i:05d}"
        for f in ("im1", "im2", "label1", "label2"):
            shutil.copyfile(gt / f / f"{src}.png", gt / f / f"{dst}.png")
        lines.append({**next(x for x in lines if x["pair"] == src), "pair": dst})
    (root / "scene_log.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def run_command(argv: list[str], logs: Path) -> dict:
    """Run ``textscd ARGV`` in a child process and measure it: wall seconds, CPU seconds (user + system, the
    child and the worker processes it waited for) and peak resident memory in MB (the largest single process
    of them, Linux ``ru_maxrss``). Its output goes to ``logs``.out / .err; a failure is one RuntimeError line
    with its last error line."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "TQDM_DISABLE": "1"}
    out, err = logs.with_suffix(".out"), logs.with_suffix(".err")
    with open(out, "w") as fo, open(err, "w") as fe:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "textscd_lib", *argv], stdout=fo, stderr=fe, env=env)
        _, status, usage = os.wait4(proc.pid, 0)          # the child's own usage, its waited-for workers included
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        last = (err.read_text().strip().splitlines() or ["(no error output)"])[-1]
        raise RuntimeError(f"textscd {argv[0]} exited {proc.returncode}: {last}")
    kb = usage.ru_maxrss / (1024 if sys.platform == "darwin" else 1)   # bytes on macOS, KiB on Linux
    return {"seconds": round(wall, 1), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_rss_mb": round(kb / 1024, 1)}


def benchmark(pairs: int = 600, size: int = 512, workers: int = 2, keep: str | None = None,
              unique: int = 60, binary: bool = False) -> dict:
    """Time the ``textscd errors`` command on ``pairs`` mini-SECOND tiles at ``size``² with two simulated methods
    (A: im1/ im2/ index maps; B: im1_rgb/ im2_rgb/ colour maps, or with ``binary`` a binary change folder), in a
    temporary folder (``keep``: in that folder instead, left there). ``unique`` pairs are generated and copied
    under new names up to ``pairs`` (the simulated predictions differ per copy). The command runs in a child
    process (:func:`run_command`): its wall time, CPU time and peak memory cover start-up, reading, records,
    ranking, gallery, report and writing; generating the data is timed apart (``prepare_seconds``)."""
    import os
    import platform

    from textscd_lib.data.synthetic import synthesize

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(keep) if keep else Path(tmp)
        t0 = time.perf_counter()
        root = synthesize(tmp / "data", min(pairs, unique), size, seed=0, ambiguity=0.3, val_fraction=1.0,
                          workers=workers)
        gt = next(d for d in root.iterdir() if (d / "label1").is_dir())
        _replicate(root, gt, pairs)
        write_predictions(gt, tmp / "A", "im1", seed=1)
        write_predictions(gt, tmp / "B", BINARY_LAYOUT if binary else "im1_rgb", seed=2, blobs=1.0, drop=0.1)
        prep = time.perf_counter() - t0
        load = os.getloadavg()[0]
        measured = run_command(["errors", "--pred", str(tmp / "A"), "--compare", str(tmp / "B"), "--gt", str(root),
                                "--split", gt.name, "--out", str(tmp / "out"), "--workers", str(workers),
                                "--names", "A,B", "--force"], tmp / "errors-command")
        report = tmp / "out" / "report.html"
        components = sum(1 for _ in open(tmp / "out" / "errors" / "components.csv")) - 1
        return {"what": "textscd errors command (start-up, records, wrong-class components, attribution, tolerance, "
                        "slices, ranking, gallery, component browser, report.html) on simulated predictions"
                        + ("; B a binary change folder" if binary else ""),
                "pairs": pairs, "unique_scenes": min(pairs, unique), "size": size, "methods": 2,
                "workers": workers, **measured, "load_average_1min": round(load, 1), "prepare_seconds": round(prep, 1),
                "report_mb": round(report.stat().st_size / 2**20, 2), "components": components,
                "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
                "time": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def main(argv: list[str] | None = None) -> int:
    """``python -m textscd_lib.analysis.simulate``: the benchmark, printed; appended to the committed record
    (:data:`RECORD`) only with ``--record``, or to any file with ``--append``."""
    ap = argparse.ArgumentParser(description="benchmark of the textscd errors command on simulated predictions; "
                                 "prints wall, CPU seconds and peak memory, records them only with --record")
    ap.add_argument("--pairs", type=int, default=600)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--unique", type=int, default=60, help="scenes generated, copied under new names up to --pairs")
    ap.add_argument("--binary", action="store_true", help="method B as a binary change folder (change-only)")
    ap.add_argument("--keep", default=None, metavar="DIR", help="build the data and outputs in DIR and keep them")
    ap.add_argument("--note", default="")
    ap.add_argument("--record", action="store_true", help=f"append the result as one JSON line to {RECORD}")
    ap.add_argument("--append", default=None, metavar="FILE", help="append the result as one JSON line to FILE")
    args = ap.parse_args(argv)
    res = {**benchmark(args.pairs, args.size, args.workers, args.keep, args.unique, args.binary), "note": args.note}
    print(f"textscd errors, {res['pairs']} tiles of {res['size']}², 2 methods, {res['workers']} workers: wall "
          f"{res['seconds']} s, CPU {res['cpu_seconds']} s, peak memory {res['peak_rss_mb']} MB (largest process); "
          f"load average {res['load_average_1min']} at start")
    print(json.dumps(res))
    for target in ([resolve(RECORD)] if args.record else []) + ([Path(args.append)] if args.append else []):
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "a", encoding="utf-8") as fh:      # a record only grows; one whole line per run
            fh.write(json.dumps(res) + "\n")
        print(f"appended to {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
