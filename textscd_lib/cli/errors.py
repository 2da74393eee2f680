"""``textscd errors``: false detections explained, for anyone's predictions (chapter 06, issue 14).

Reads predictions in the SECOND layout (label1/ label2/) or as the SECOND reference protocol's prediction
scripts write them (im1/ im2/ index maps, im1_rgb/ im2_rgb/ colour maps), checks them against the truth (one
line per missing, extra or mis-sized file; nothing is written then) and writes ``OUT/errors/{tiles,components,
ranking}.csv``, ``OUT/errors/summary.json``, ``OUT/errors/gallery.png`` and ``OUT/report.html`` with
:func:`textscd_lib.analysis.instrument.analyse_folders`, the function chapter 06 calls.
"""

from __future__ import annotations

import os
import sys
import time

RANKS = ("false-alarm-area", "isolated-false-alarms", "miss-area", "sek", "difference")


def register(sub) -> None:
    p = sub.add_parser("errors", help="error records, gallery and report.html for any method's predictions",
                       description="False detections explained (chapter 06): error records per pixel and per "
                       "connected component, rankings, a gallery and a self-contained report.html for any method's "
                       "predictions (label1/ label2/, im1/ im2/ or im1_rgb/ im2_rgb/). See docs/error-analysis.md.")
    p.add_argument("--pred", required=True, metavar="DIR", help="predictions of method A")
    p.add_argument("--compare", metavar="DIR", help="predictions of method B, shown beside A")
    p.add_argument("--gt", required=True, metavar="DATA", help="ground truth (SECOND layout, label1/ label2/)")
    p.add_argument("--captions", metavar="JSONL", help="caption store of the tiles (textscd caption)")
    p.add_argument("--out", default="errors-report", metavar="DIR", help="output folder (default errors-report)")
    p.add_argument("--split", default=None, help="split folder when the roots have split levels (default val)")
    p.add_argument("--names", default="A,B", help="names of the two methods, e.g. TextSCD,Baseline")
    p.add_argument("--rank-by", default="false-alarm-area", choices=RANKS, help="ranking of the tiles")
    p.add_argument("--top", type=int, default=8, help="tiles in the gallery (default 8)")
    p.add_argument("--boundary-px", type=int, default=3, help="boundary width in pixels (default 3)")
    p.add_argument("--allow-extra", action="store_true", help="ignore prediction files without ground truth")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes (default 2)")
    p.set_defaults(func=cmd_errors)


def cmd_errors(args) -> int:
    from textscd_lib.analysis.instrument import analyse_folders, write_outputs

    names = tuple(x.strip() for x in args.names.split(","))
    if len(names) != 2 or not all(names):
        raise ValueError(f"--names takes two names separated by a comma, got {args.names!r}")
    t0 = time.perf_counter()
    a = analyse_folders(args.pred, args.gt, args.compare, args.captions, names, args.split, args.rank_by,
                        args.top, args.boundary_px, strict=not args.allow_extra, workers=args.workers,
                        progress=sys.stderr.isatty() or os.environ.get("TQDM_DISABLE") != "1",
                        log=lambda s: print(s, file=sys.stderr))
    paths = write_outputs(a, args.out)
    for meth in a.methods:
        s, t = a.scores[meth], a.tiles[meth]
        print(f"{meth}: SeK {100 * s['SeK']:.2f}  F_scd {100 * s['F_scd']:.2f}  false alarm {int(t['false alarm'].sum())} px"
              f" in {int(t['fa_components'].sum())} components ({int(t['fa_isolated'].sum())} isolated)  miss "
              f"{int(t['miss'].sum())} px")
    print(f"top tiles by {a.rank_by}: {', '.join(a.ranking.index[:args.top])}")
    for k, v in paths.items():
        print(f"  {k:<10} {v}")
    print(f"{len(a.ranking)} tiles in {time.perf_counter() - t0:.1f} s")
    return 0
