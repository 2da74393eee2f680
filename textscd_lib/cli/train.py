"""``textscd train`` (chapter 05) and ``textscd evaluate`` (chapter 06).

``train`` exposes every field of :class:`textscd_lib.engine.trainer.TrainConfig` as an option (``--batch-size``,
``--lr``, ...; defaults = the paper's recipe) and calls :func:`textscd_lib.engine.trainer.train`, the function
notebook 05 calls. Multi-GPU: ``torchrun --nproc_per_node=N -m textscd_lib train --run-name NAME ...``
(``--run-name``, not ``--run``: torchrun would take ``--run`` for its own ``--run-path``).
``evaluate`` scores predictions stored in the SECOND layout with :func:`textscd_lib.metrics.score_folders`.

Offline substitutes (mini-SECOND, oracle captions, MiniLM, random ResNet34) are announced once each on stderr:
``train`` records them with :func:`textscd_lib.common.runs.record_substitute`, which logs the line at INFO, and the
``textscd`` command logs at INFO (``textscd_lib.cli.main``). Nothing here prints them again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math

HELP = {
    "data_root": "prepared SECOND folder ('' = the embedded mini-SECOND)",
    "run": "results/<run>/ to write into",
    "model": "textscd or baseline",
    "captions": "caption source (gemini, oracle, noisy, shuffled, empty, second-cc)",
    "text_encoder": "auto, clip or minilm",
    "text_features": "a prebuilt text-feature file (skips captions and the text encoder)",
    "image_weights": "ResNet34 weights: auto, imagenet, random or a file",
    "size": "train at SIZE×SIZE (default: native)",
    "device": "auto, cpu, cuda, cuda:1",
    "precision": "auto (bf16 on CUDA), bf16, fp32",
    "channels_last": "auto (on CUDA), true, false",
    "device_resident": "keep the uint8 dataset on the device: auto, true, false",
    "max_steps_per_epoch": "cap the steps per epoch (quick runs)",
    "sync_every": "host syncs every N steps (default: 1 on CPU, 50 on CUDA)",
    "stop_after": "stop after N epochs in this call (continue later with --resume)",
    "resume": "continue from results/<run>/checkpoints/<model>/last.pt",
    "export": "write the best model's val predictions (SECOND layout)",
    "out_dir": "checkpoint folder (default results/<run>/checkpoints/<model>)",
    "fast": "TEXTSCD_FAST sizes (the tiny mini-SECOND)",
}


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _auto_bool(text: str):
    return "auto" if text == "auto" else _bool(text)


def _opt_int(text: str):
    return None if text.lower() in ("none", "") else int(text)


def _opt_str(text: str):
    return None if text.lower() in ("none", "random") else text


def register(sub) -> None:
    from textscd_lib.engine.trainer import TrainConfig

    p = sub.add_parser("train", help="train Baseline or TextSCD (paper recipe by default)",
                       description="Train Baseline or TextSCD; every TrainConfig field is an option.")
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        default = getattr(defaults, f.name)
        flag = "--" + f.name.replace("_", "-")
        flags = ["--run-name", "--run"] if f.name == "run" else [flag]  # torchrun mistakes --run for --run-path
        if f.name in ("resume", "compile", "nesterov"):
            p.add_argument(*flags, action="store_true", help=HELP.get(f.name, f.name))
            continue
        if f.name in ("channels_last", "device_resident"):
            kind = _auto_bool
        elif isinstance(default, bool):
            kind = _bool
        elif f.name in ("size", "max_steps_per_epoch", "sync_every", "stop_after"):
            kind = _opt_int
        elif f.name in ("image_weights", "out_dir", "text_features"):
            kind = _opt_str
        elif isinstance(default, int):
            kind = int
        elif isinstance(default, float):
            kind = float
        else:
            kind = str
        p.add_argument(*flags, dest=f.name, type=kind, default=default,
                       help=f"{HELP.get(f.name, f.name.replace('_', ' '))} (default {default})")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="score predicted maps (SECOND layout) against ground truth",
                       description="OA, mIoU, SeK, F_scd from one 7×7 confusion matrix over both dates "
                       "(docs/facts.md#metrics). PRED_ROOT and GT_ROOT hold label1/ and label2/ (RGB or index "
                       "PNGs), directly or under <split>/.")
    p.add_argument("--pred", required=True, metavar="PRED_ROOT", help="predicted maps")
    p.add_argument("--gt", required=True, metavar="GT_ROOT", help="ground truth (SECOND layout)")
    p.add_argument("--split", default=None, help="split folder when the roots have split levels (default val)")
    p.add_argument("--json", action="store_true", help="one JSON object (fractions) instead of a table")
    p.set_defaults(func=cmd_evaluate)


def cmd_train(args) -> int:
    from textscd_lib.engine.trainer import TrainConfig, train

    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    res = train(cfg)
    if res["rank"] != 0:
        return 0
    if args.json:
        print(json.dumps({k: v for k, v in res.items() if k != "shard"}, indent=2, default=str))
        return 0
    best = res["best"] or {}
    print(f"{cfg.model}: {res['steps']} steps in {res['seconds']:.1f} s on {res['device']} "
          f"({res['precision']}, world {res['world']})")
    if best:
        print(f"best epoch {best['epoch']}: " + "  ".join(f"{m} {100 * best[m]:.2f}"
                                                        for m in ("OA", "mIoU", "SeK", "F_scd")))
    for k, v in res["paths"].items():
        print(f"  {k:<12} {v}")
    return 0


def format_scores(res: dict) -> str:
    """The four metrics ×100 as papers print them, then per-class IoU and any NaN explained."""
    def pct(v: float) -> str:
        return "NaN" if math.isnan(v) else f"{100 * v:6.2f}"

    lines = [f"pairs {res['pairs']}  pixels {res['pixels']}", "metric   value (×100)"]
    lines += [f"{m:<8} {pct(res[m])}" for m in ("OA", "mIoU", "SeK", "F_scd")]
    lines.append("per-class IoU: " + ", ".join(f"{k} {pct(v).strip()}" for k, v in res["per_class_IoU"].items()))
    lines += [f"NaN {k}: {why}" for k, why in res["nan_reasons"].items()]
    return "\n".join(lines)


def cmd_evaluate(args) -> int:
    from textscd_lib.metrics import score_folders

    res = score_folders(args.pred, args.gt, split=args.split)
    if args.json:
        keep = ("OA", "mIoU", "SeK", "F_scd", "IoU_nc", "IoU_c", "kappa", "P_scd", "R_scd", "pixels", "pairs",
                "per_class_IoU", "nan_reasons", "confusion")
        # NaN is not JSON: written as null, with the reason under nan_reasons
        print(json.dumps({k: _nan_to_none(res[k]) for k in keep}, indent=2))
    else:
        print(format_scores(res))
    return 0


def _nan_to_none(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, dict):
        return {k: _nan_to_none(x) for k, x in v.items()}
    return v
