"""``textscd train`` (chapter 05) and ``textscd evaluate`` (chapter 06).

``train`` exposes the fields of :class:`textscd_lib.engine.config.TrainConfig` as options, built from each
field's metadata (help, type, default; the paper's recipe), and calls :func:`textscd_lib.engine.trainer.train`.
Its inputs are given, not made: ``--data-root`` (``textscd data synth`` / ``prepare-second``) and, for TextSCD,
``--text-features`` (``textscd features``); a missing one is refused naming the command that makes it. Without
``--run-name`` it writes into a new run folder ``train-<date>-<time>`` and says where. Multi-GPU:
``torchrun --nproc_per_node=N -m textscd_lib train --run-name NAME ...`` (``--run-name``, not ``--run``: torchrun
would take ``--run`` for its own ``--run-path``).
``evaluate`` scores predictions stored in the SECOND layout with :func:`textscd_lib.metrics.score_folders`.
``convert-checkpoint`` rewrites a checkpoint of the previous format (pickled objects, which ``train --resume``
and ``predict`` never unpickle) as the portable one; it unpickles the file, so only for a file the user trusts.

Offline substitutes (mini-SECOND, oracle captions, MiniLM, random ResNet34) are announced once each on stderr:
``train`` records them with :func:`textscd_lib.common.runs.record_substitute`, which logs the line at INFO, and the
``textscd`` command logs at INFO (``textscd_lib.cli.main``). Nothing here prints them again.
"""

from __future__ import annotations

import json
import math
import os
import sys

from textscd_lib.cli.options import TYPES
from textscd_lib.engine.config import TrainConfig, option_fields


def add_config_options(p, cls=TrainConfig, defaults: dict | None = None, shown: dict | None = None) -> None:
    """One option per CLI field of ``cls``, from the field's metadata (help, type, choices, flags, and ``shown``:
    how the help states the default); ``defaults``/``shown`` override them for this command."""
    base = cls()
    for f in option_fields(cls):
        meta = f.metadata
        default = (defaults or {}).get(f.name, getattr(base, f.name))
        flags = list(meta.get("flags", ["--" + f.name.replace("_", "-")]))
        if meta["type"] == "flag":
            p.add_argument(*flags, dest=f.name, action="store_true", help=meta["help"])
            continue
        said = (shown or {}).get(f.name, meta.get("shown", "native" if meta["type"] == "size" else default))
        p.add_argument(*flags, dest=f.name, type=TYPES[meta["type"]], default=default,
                       choices=meta.get("choices"), help=f"{meta['help']} (default {said})")


CONVERT_WARNING = ("This UNPICKLES OLD, which runs any code the file carries: only run it on a file you trust "
                   "(one your own training wrote), never on a checkpoint from elsewhere.")


def register(sub) -> None:
    p = sub.add_parser("train", help="train Baseline or TextSCD on a prepared data folder (paper recipe by default)",
                       description="Train Baseline or TextSCD; every TrainConfig option is a flag. Inputs: "
                       "--data-root (textscd data synth | prepare-second) and, for TextSCD, --text-features "
                       "(textscd features). Writes results/<run>/checkpoints/<model>/{best,last}.pt and logs.")
    add_config_options(p, defaults={"run": None}, shown={"run": "a new run, train-<date>-<time>"})
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("convert-checkpoint", help="rewrite an old-format checkpoint as the portable format "
                       "(UNPICKLES it: only a file you trust)",
                       description=CONVERT_WARNING + " It writes NEW in the portable format (plain tensors and "
                       "Python values), which textscd train --resume and textscd predict load without running code.")
    p.add_argument("old", metavar="OLD", help="checkpoint of the previous format (a last.pt or best.pt you trust)")
    p.add_argument("--out", required=True, metavar="NEW", help="the portable checkpoint to write (a new file)")
    p.set_defaults(func=cmd_convert_checkpoint)

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
    from textscd_lib.cli.stages import given_path
    from textscd_lib.common.device import pick_device
    from textscd_lib.engine.stages import (
        check_data_folder,
        default_run_name,
        features_origin,
        load_features_input,
    )
    from textscd_lib.engine.trainer import train

    opts = {f.name: getattr(args, f.name) for f in option_fields(TrainConfig)}
    opts["data_root"], opts["text_features"] = given_path(opts["data_root"]) or "", given_path(opts["text_features"])
    if opts["run"] is None and opts["resume"]:
        raise ValueError("--resume continues a run: name it with --run-name NAME (results/NAME/)")
    if opts["run"] is None:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ValueError("under torchrun give the run a name (--run-name NAME): every rank must write the "
                             "same run folder")
        opts["run"] = default_run_name()
    cfg = TrainConfig(**opts).check()
    pick_device(cfg.device)  # a bogus device, or cuda without a GPU: one line before anything is written
    check_data_folder(cfg.data_root)  # the inputs first: a missing one is refused before anything is written
    if cfg.model != "baseline" and cfg.text_features:  # what the features were made from, as the run records it
        cfg.captions, cfg.text_encoder = features_origin(cfg.text_features)
    load_features_input(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"textscd train: run {cfg.run!r}, writing checkpoints and logs to {cfg.checkpoint_dir()}",
              file=sys.stderr)
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
    print(f"  predictions: textscd predict --checkpoint {res['paths']['best']} --data {cfg.data_root}"
          + (f" --features {cfg.text_features}" if cfg.text_features and cfg.model != "baseline" else "")
          + " --out DIR")
    return 0


def cmd_convert_checkpoint(args) -> int:
    from textscd_lib.cli.stages import given_path
    from textscd_lib.engine.checkpoints import convert_checkpoint

    print(f"textscd convert-checkpoint: {CONVERT_WARNING}", file=sys.stderr)
    new = convert_checkpoint(given_path(args.old), given_path(args.out))
    print(f"wrote {new} (portable: loads with weights_only=True, no code runs)")
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
