"""``textscd errors``: false detections explained, for anyone's predictions (chapter 06).

Reads predictions in the SECOND layout (label1/ label2/), as the SECOND reference protocol's prediction
scripts write them (im1/ im2/ index maps, im1_rgb/ im2_rgb/ colour maps), as ChangeMamba's writes them
(change_map_T1/ change_map_T2/ colour maps) or a binary change folder (``textscd_lib.metrics.PRED_LAYOUTS``;
``--layout`` forces one), checks them against the truth (one line per missing, extra or mis-sized file;
nothing is written then) and writes ``OUT/errors/{tiles,components,ranking}.csv``, ``OUT/errors/summary.json``,
``OUT/errors/gallery.png`` and ``OUT/report.html`` with :func:`textscd_lib.analysis.instrument.analyse_folders`,
the function chapter 06 calls. A binary change folder (a change-only method) gets its false alarms, misses and
change scores; its semantic scores print as n/a. ``OUT`` may not be or lie inside an input, and an earlier report there is
replaced only with ``--force`` (``textscd_lib.common.outputs``); the layouts read are recorded in its marker.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

RANKS = ("false-alarm-area", "isolated-false-alarms", "miss-area", "sek", "difference")
KIND = "errors report"
# the names of textscd_lib.metrics.LAYOUT_NAMES, spelled out so that `--help` does not import torch
LAYOUT_HELP = "auto, label1, im1, im1_rgb, change_map_T1 or binary"


def register(sub) -> None:
    p = sub.add_parser("errors", help="error records, gallery and report.html for any method's predictions",
                       description="False detections explained (chapter 06): error records per pixel and per "
                       "connected component, rankings, a gallery and a self-contained report.html for any method's "
                       "predictions (label1/ label2/, im1/ im2/, im1_rgb/ im2_rgb/, change_map_T1/ change_map_T2/ "
                       "or a binary change folder). See docs/error-analysis.md.")
    p.add_argument("--pred", required=True, metavar="DIR", help="predictions of method A")
    p.add_argument("--compare", metavar="DIR", help="predictions of method B, shown beside A")
    p.add_argument("--gt", required=True, metavar="DATA", help="ground truth (SECOND layout, label1/ label2/)")
    p.add_argument("--captions", metavar="JSONL", help="caption store of the tiles (textscd caption)")
    p.add_argument("--out", default="errors-report", metavar="DIR", help="output folder (default errors-report; "
                   "not inside an input; an earlier report there is replaced only with --force)")
    p.add_argument("--force", action="store_true", help="replace an earlier errors report at --out")
    p.add_argument("--split", default=None, help="split folder when the roots have split levels (default val)")
    p.add_argument("--layout", default="auto", metavar="NAME",
                   help=f"prediction layout of --pred and --compare: {LAYOUT_HELP} (default auto: the first found)")
    p.add_argument("--names", default="A,B", help="names of the two methods, e.g. TextSCD,Baseline (different)")
    p.add_argument("--rank-by", default="false-alarm-area", choices=RANKS, help="ranking of the tiles")
    p.add_argument("--top", type=int, default=8, help="tiles in the gallery (default 8)")
    p.add_argument("--boundary-px", type=int, default=3, help="boundary width in pixels (default 3)")
    p.add_argument("--allow-extra", action="store_true", help="ignore prediction files without ground truth")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes (default 2)")
    p.set_defaults(func=cmd_errors)


def method_names(given: str) -> tuple[str, str]:
    """The two method names of ``--names``: two, non-empty and different (every result is keyed by name)."""
    names = tuple(x.strip() for x in given.split(","))
    if len(names) != 2 or not all(names):
        raise ValueError(f"--names takes two names separated by a comma, got {given!r}")
    if names[0] == names[1]:
        raise ValueError(f"--names {given!r}: the two methods need different names (results are keyed by name)")
    return names


def read_layouts(args, names: tuple[str, str]) -> dict[str, tuple[str, Path]]:
    """{method: (layout name, folder)} of --pred (and --compare), ``--layout`` forcing one; an unknown layout or
    a folder without it is one line (``SecondFormatError``) before anything is read."""
    from textscd_lib.metrics import find_layout

    found = {}
    for meth, folder in zip(names, (args.pred, args.compare)):
        if folder is not None:
            base, name = find_layout(folder, args.split, args.layout)
            found[meth] = name, base
    return found


def cmd_errors(args) -> int:
    from textscd_lib.analysis.instrument import analyse_folders, write_outputs
    from textscd_lib.common.outputs import guard_output_dir, mark_output_dir

    names = method_names(args.names)
    out = guard_output_dir(args.out, KIND, inputs=[args.pred, args.compare, args.gt, args.captions],
                           force=args.force, recognise=lambda p: (p / "errors" / "summary.json").is_file())
    layouts = read_layouts(args, names)
    t0 = time.perf_counter()
    a = analyse_folders(args.pred, args.gt, args.compare, args.captions, names, args.split, args.rank_by,
                        args.top, args.boundary_px, strict=not args.allow_extra, workers=args.workers,
                        progress=sys.stderr.isatty() or os.environ.get("TQDM_DISABLE") != "1",
                        log=lambda s: print(s, file=sys.stderr), layout=args.layout)
    paths = write_outputs(a, out)
    mark_output_dir(out, KIND, command="textscd errors", layouts={k: v[0] for k, v in layouts.items()},
                    inputs={k: str(Path(v).resolve()) for k, v in (("pred", args.pred), ("compare", args.compare),
                                                                   ("gt", args.gt)) if v})
    _print_summary(a, layouts, args.top, paths, time.perf_counter() - t0)
    return 0


def _print_summary(a, layouts: dict, top: int, paths: dict, seconds: float) -> None:
    from textscd_lib.metrics import layout_description

    for meth, (name, base) in layouts.items():
        print(f"{meth}: layout {name} in {base} ({layout_description(name)})")
    for meth in a.methods:
        s, t = a.scores[meth], a.tiles[meth]
        scores = (f"change F1 {_pct(s['change_F1'])}  IoU_c {_pct(s['IoU_c'])}  SeK n/a  F_scd n/a (binary)"
                  if s.get("binary") else f"SeK {_pct(s['SeK'])}  F_scd {_pct(s['F_scd'])}")
        print(f"{meth}: {scores}  false alarm {int(t['false alarm'].sum())} px"
              f" in {int(t['fa_components'].sum())} components ({int(t['fa_isolated'].sum())} isolated)  miss "
              f"{int(t['miss'].sum())} px")
    print(f"top tiles by {a.rank_by}: {', '.join(a.ranking.index[:top])}")
    for k, v in paths.items():
        print(f"  {k:<10} {v}")
    print(f"{len(a.ranking)} tiles in {seconds:.1f} s")


def _pct(v: float) -> str:
    """A fraction ×100 with two decimals; "NaN" when undefined."""
    return "NaN" if v != v else f"{100 * v:.2f}"
