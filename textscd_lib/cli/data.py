"""``textscd data synth|validate|prepare-second`` (chapter 01): the CLI face of ``textscd_lib.data.second`` and
``textscd_lib.data.synthetic``; each subcommand calls the same library function the notebook and tests call."""

from __future__ import annotations

import json
import time

from textscd_lib.cli.options import int_at_least


def register(sub) -> None:
    p = sub.add_parser("data", help="mini-SECOND generation, SECOND validation and preparation")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    s = dsub.add_parser("synth", help="write a mini-SECOND dataset (seeded, SECOND layout, scene_log.jsonl)")
    s.add_argument("--out", required=True, help="output folder: new or empty; a mini-SECOND is replaced (atomically) "
                   "only with --force; any other folder or file is refused")
    s.add_argument("--force", action="store_true", help="replace an existing mini-SECOND at --out")
    s.add_argument("--pairs", type=int_at_least(1), default=300, help="number of pairs (default 300, the demo size)")
    s.add_argument("--size", type=int_at_least(8), default=128, help="tile size in pixels (default 128)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--ambiguity", type=float, default=0.3,
                   help="fraction of scenes where a class pair shares one texture in changed regions (default 0.3)")
    s.add_argument("--val-fraction", type=float, default=0.2, help="share of pairs in val/ (default 0.2)")
    s.add_argument("--workers", type=int_at_least(0), default=1, help="parallel processes (0 = all cores); same output")
    s.set_defaults(func=cmd_synth)

    v = dsub.add_parser("validate", help="check a SECOND-layout folder; exit 1 with one line per problem")
    v.add_argument("root", help="dataset folder: ROOT/{im1,im2,label1,label2} or ROOT/<split>/...")
    v.add_argument("--split", default=None, help="check only this split (train, val, test)")
    v.add_argument("--json", action="store_true", help="print the summary as JSON")
    v.set_defaults(func=cmd_validate)

    r = dsub.add_parser("prepare-second", help="official SECOND download → train/val working layout (SRC untouched)")
    r.add_argument("src", help="the official download (ROOT/{im1,im2,label1,label2}, optionally train/ test/)")
    r.add_argument("--out", required=True, help="working layout to write: OUT/{train,val}/... (new, empty or an "
                   "earlier OUT of this command; never inside or around SRC)")
    r.add_argument("--split-file", default=None,
                   help="names for val (one per line) or 'NAME SPLIT' lines; default: seeded 4:1 split")
    r.add_argument("--val-fraction", type=float, default=0.2)
    r.add_argument("--seed", type=int, default=0)
    r.set_defaults(func=cmd_prepare)


def val_fraction(v: float) -> float:
    """``--val-fraction``: a share strictly between 0 and 1 (0 or 1 and beyond leave a split empty)."""
    if not 0 < v < 1:
        raise ValueError(f"--val-fraction {v}: must lie strictly between 0 and 1 (the share of pairs in val/)")
    return v


def cmd_synth(args) -> int:
    from textscd_lib.data.synthetic import synthesize

    t0 = time.perf_counter()
    out = synthesize(args.out, args.pairs, args.size, args.seed, args.ambiguity, val_fraction(args.val_fraction),
                     workers=args.workers, force=args.force)
    meta = json.loads((out / "mini_second.json").read_text())
    print(f"wrote {args.pairs} pairs at {args.size}x{args.size} to {out} in {time.perf_counter() - t0:.1f} s "
          f"(mean change ratio {meta['mean_change_ratio']:.3f}; scene log: {out / 'scene_log.jsonl'})")
    return 0


def cmd_validate(args) -> int:
    from textscd_lib.data.validate import validate

    rep = validate(args.root, args.split)
    if args.json and rep.ok:
        print(json.dumps(rep.summary, indent=2))
    else:
        print(rep.format())
    return 0 if rep.ok else 1


def cmd_prepare(args) -> int:
    from textscd_lib.data.prepare import prepare_second

    # a bad source raises SecondFormatError (a ValueError naming every file): exit 2, as any input error
    summary = prepare_second(args.src, args.out, args.split_file, val_fraction(args.val_fraction), args.seed)
    print(f"prepared {summary['dst']}: {summary['counts']} ({summary['files_copied']} files copied, "
          f"{summary['files_removed']} stale files removed)")
    return 0
