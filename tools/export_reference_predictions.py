"""Export a trained run's val predictions as committed reference predictions (chapters 06 and 07 without a model).

    .venv/bin/python tools/export_reference_predictions.py --run cpu-30ep

reads ``results/<run>/checkpoints/{baseline,textscd}/best.pt`` and writes, for the val pairs of the data the
models were trained on, index PNGs (0..6 per pixel)::

    results/<run>/reference-predictions/<model>/label1|label2/NAME.png
    results/<run>/reference-predictions/captions.json    the caption of every val pair, per caption set
    results/<run>/reference-predictions/manifest.json    git commit, seed, epochs, each checkpoint's val scores,
                                                          the data's parameters and scene-log digest, how each
                                                          caption set was made, the scores of every set of maps

``<model>`` is ``baseline`` and ``textscd-<captions>`` for each caption set of chapter 07's test-time swap
(its own source, noisy-0.3/0.6/1.0, shuffled, empty; `textscd_lib.analysis.ablation.caption_sets`). The maps come
from the library's one prediction function (`textscd_lib.engine.predictions.predict_maps`). The folder is written
beside and swapped in whole, so a failed export leaves the previous one as it was.
Exit status: 0 written, 2 bad input (no such run, checkpoint or data), 1 failure, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from textscd_lib.analysis.ablation import (  # noqa: E402
    MANIFEST,
    REFERENCE_FOLDER,
    caption_sets,
    file_digest,
    test_time_sources,
)
from textscd_lib.analysis.instrument import export_maps  # noqa: E402
from textscd_lib.common.io import atomic_write_json  # noqa: E402
from textscd_lib.common.paths import results_root  # noqa: E402
from textscd_lib.course.runner import git_commit  # noqa: E402
from textscd_lib.data.dataset import SCDDataset  # noqa: E402
from textscd_lib.engine.checkpoints import load_model  # noqa: E402
from textscd_lib.engine.predictions import lazy_text_encoder, map_scores, predict_maps, text_features_for  # noqa: E402
from textscd_lib.engine.stages import check_data_folder  # noqa: E402


class BadInput(Exception):
    """Input a user can fix (exit status 2)."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="run folder under the results root, e.g. cpu-30ep")
    p.add_argument("--data-root", default="", help="the data the models were trained on (default: the checkpoint's)")
    p.add_argument("--noise-levels", type=float, nargs="+", default=[0.3, 0.6, 1.0])
    p.add_argument("--seed", type=int, default=None, help="caption seed (default: the checkpoint's training seed)")
    p.add_argument("--device", default="cpu")
    return p.parse_args(argv)


def load_models(run_path: Path, device: str) -> dict:
    """Baseline and TextSCD of the run (``best.pt``), or BadInput naming the missing file."""
    models = {}
    for kind in ("baseline", "textscd"):
        ck = run_path / "checkpoints" / kind / "best.pt"
        if not ck.is_file():
            raise BadInput(f"{ck}: no checkpoint (train it with chapter 05, e.g. .venv/bin/textscd run --only 05)")
        models[kind] = load_model(ck, device)
    return models


def model_entry(model, run_path: Path, captions: str | None, scores: dict) -> dict:
    """One model's manifest entry: its checkpoint, epoch, recorded val scores and the scores of the exported maps."""
    ck = model.checkpoint
    recorded = {k: v for k, v in (ck.get("scores") or {}).items() if isinstance(v, (int, float))}
    return {"checkpoint": str(Path(ck["path"]).relative_to(run_path)), "epoch": ck.get("epoch"),
            "checkpoint_val_scores": _finite(recorded), "captions": captions, "scores": _finite(scores)}


def _finite(scores: dict) -> dict:
    """NaN (an undefined score, e.g. F_scd of a model that predicts no change) as null: JSON has no NaN."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in scores.items()}


def export(args: argparse.Namespace) -> Path:
    run_path = results_root() / args.run
    if not run_path.is_dir():
        raise BadInput(f"{run_path}: no such run folder")
    models = load_models(run_path, args.device)
    cfg = models["textscd"].checkpoint["config"]
    try:
        root = check_data_folder(args.data_root or models["textscd"].checkpoint.get("data_root") or cfg["data_root"])
    except (FileNotFoundError, ValueError) as e:
        raise BadInput(str(e).splitlines()[0]) from e
    seed = cfg.get("seed", 0) if args.seed is None else args.seed
    val = SCDDataset(root, "val", normalization=cfg.get("normalization", "second"))
    names = list(val.names)
    has_log = (root / "scene_log.jsonl").is_file()
    sources = test_time_sources(cfg["captions"], args.noise_levels, has_log)
    caps, how = caption_sets(root, run_path, names, sources, seed=seed, scene_log=has_log)
    encoder_name = models["textscd"].checkpoint["text_features"]
    encoder = lazy_text_encoder(cfg["text_encoder"])
    labels = {n: val.raw(i)[2:] for i, n in enumerate(names)}
    final = run_path / REFERENCE_FOLDER
    tmp = Path(tempfile.mkdtemp(prefix=f".{REFERENCE_FOLDER}-", dir=run_path))
    try:
        entries = {}
        for s in sources:
            tf = text_features_for(run_path, encoder_name, s, caps[s], encoder)
            preds = predict_maps(models["textscd"], val, tf, args.device)
            export_maps(preds, tmp / f"textscd-{s}")
            entries[f"textscd-{s}"] = model_entry(models["textscd"], run_path, s, map_scores(preds, labels))
            print(f"textscd-{s}: SeK {100 * entries[f'textscd-{s}']['scores']['SeK']:.2f}", flush=True)
        preds = predict_maps(models["baseline"], val, None, args.device)
        export_maps(preds, tmp / "baseline")
        entries = {"baseline": model_entry(models["baseline"], run_path, None, map_scores(preds, labels)), **entries}
        print(f"baseline: SeK {100 * entries['baseline']['scores']['SeK']:.2f}", flush=True)
        atomic_write_json(tmp / "captions.json", caps)
        atomic_write_json(tmp / MANIFEST, manifest(args.run, cfg, seed, root, names, entries, how, encoder_name))
        old = run_path / f".{REFERENCE_FOLDER}-old"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def manifest(run: str, cfg: dict, seed: int, root: Path, names: list, entries: dict, how: dict, encoder: str) -> dict:
    """What the committed maps are: the code, the training, the data and the captions they come from."""
    meta = root / "mini_second.json"
    params = json.loads(meta.read_text())["params"] if meta.is_file() else None
    log = root / "scene_log.jsonl"
    return {"run": run, "git": git_commit(ROOT), "seed": seed, "epochs": cfg.get("epochs"),
            "trained_with_captions": cfg.get("captions"), "text_encoder": encoder,
            "data": {"folder": root.name, "params": params,
                     "scene_log_sha256": file_digest(log) if log.is_file() else None},
            "val_pairs": names, "maps": "index PNG, 0..6 per pixel (data.second.CLASSES), label1 = date 1",
            "models": entries, "caption_sets": how}


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        out = export(args)
    except BadInput as e:
        print(f"export_reference_predictions: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("export_reference_predictions: interrupted; the previous export is unchanged", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - one line in words, not a traceback
        print(f"export_reference_predictions: failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{out}: {sum(1 for _ in out.rglob('*.png'))} maps, {size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
