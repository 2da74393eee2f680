"""``textscd features`` (chapter 03) and ``textscd predict`` (chapter 05): the stages on either side of
``textscd train``, each with explicit inputs and outputs (:mod:`textscd_lib.engine.stages`).

    textscd data synth --out DATA --pairs 24 --size 64
    textscd caption DATA --backend oracle --out CAPTIONS.jsonl
    textscd features CAPTIONS.jsonl --encoder auto --out FEATURES.pt
    textscd train --data-root DATA --text-features FEATURES.pt --run-name NAME
    textscd predict --checkpoint results/NAME/checkpoints/textscd/best.pt --data DATA --features FEATURES.pt --out PRED
    textscd evaluate --pred PRED --gt DATA --split val
"""

from __future__ import annotations

import os
import sys

from textscd_lib.cli.options import int_at_least


def given_path(text: str | None) -> str | None:
    """A path typed on the command line, relative to the shell's current folder (not ``$TEXTSCD_HOME``)."""
    return None if text in (None, "") else os.path.abspath(os.path.expanduser(text))


def register(sub) -> None:
    p = sub.add_parser("features", help="encode a caption store once per caption into a text-feature file",
                       description="Encode every caption of a caption store (textscd caption) with the frozen "
                       "text encoder of eq. (5) into one text-feature file that textscd train and textscd predict "
                       "read. The file records the caption source and what stood in for Gemini and CLIP.")
    p.add_argument("captions", metavar="CAPTIONS.jsonl", help="caption store written by textscd caption")
    p.add_argument("--encoder", default="auto", choices=("auto", "clip", "minilm", "clip-random"),
                   help="text encoder: auto = CLIP when its weights are on disk, else MiniLM (default auto)")
    p.add_argument("--out", required=True, help="text-feature file to write, e.g. features.pt (not the store; "
                   "an existing feature file is replaced only with --force, any other file never)")
    p.add_argument("--force", action="store_true", help="replace an existing text-feature file at --out")
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("predict", help="a checkpoint's predicted maps for a data split (SECOND layout, RGB)",
                       description="Run a checkpoint on one split of a prepared data folder and write "
                       "OUT/label1/NAME.png and OUT/label2/NAME.png (RGB colours), what textscd evaluate reads.")
    p.add_argument("--checkpoint", required=True, metavar="CK", help="best.pt or last.pt of textscd train")
    p.add_argument("--data", required=True, metavar="DATA", help="prepared data folder (train/ val/ ...)")
    p.add_argument("--features", default=None, metavar="FILE", help="text features of DATA's captions (TextSCD)")
    p.add_argument("--split", default="val", help="split to predict (default val)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for label1/ and label2/: new or empty, "
                   "outside DATA; earlier predictions are replaced only with --force")
    p.add_argument("--force", action="store_true", help="replace earlier predictions at --out")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (default auto)")
    p.add_argument("--batch-size", type=int_at_least(1), default=8, help="pairs per batch (default 8)")
    p.add_argument("--precision", default=None, choices=("auto", "bf16", "fp32"),
                   help="inference precision: auto = bf16 on CUDA, fp32 elsewhere (default: the run's, as the "
                   "checkpoint records it, which is what its validation used on the same kind of device)")
    p.set_defaults(func=cmd_predict)


def cmd_features(args) -> int:
    from textscd_lib.engine.stages import make_text_features

    tf = make_text_features(given_path(args.captions), given_path(args.out), args.encoder, force=args.force)
    prov = tf.provenance
    print(f"wrote {args.out}: {len(tf.index)} pairs, {len(tf.texts)} unique captions, encoder {tf.encoder_name} "
          f"(D_t {tf.dim}), captions {prov['source']}")
    for what in ("captions", "text_encoder"):
        if prov.get(what):  # what the training run will record; said here once for whoever made the file
            rec = prov[what]
            print(f"  stands in: {rec if isinstance(rec, str) else rec['used'] + ' instead of ' + rec['instead_of']}",
                  file=sys.stderr)
    return 0


def cmd_predict(args) -> int:
    from textscd_lib.engine.stages import predict_to_folder

    out = predict_to_folder(given_path(args.checkpoint), given_path(args.data), given_path(args.out),
                            given_path(args.features), split=args.split,
                            device=args.device, batch_size=args.batch_size, force=args.force,
                            precision=args.precision)
    print(f"wrote predictions to {out} (label1/, label2/; score them with textscd evaluate --pred {out} "
          f"--gt {args.data} --split {args.split})")
    return 0
