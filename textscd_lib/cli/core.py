"""``textscd env`` and ``textscd run``."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("env", help="versions, device, offline weights, Gemini key (never its value)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_env)

    p = sub.add_parser("run", help="execute the notebook series with papermill into results/<run>/")
    p.add_argument("--params", metavar="FILE.yaml", help="parameters for the notebooks (NAME: value)")
    p.add_argument("--fast", action="store_true", help="TEXTSCD_FAST=1: shrink every size (tests)")
    p.add_argument("--run-name", default=None, help="results/<run-name>/ (default: demo, or fast with --fast)")
    p.add_argument("--only", default=None, help="comma-separated notebook numbers, e.g. 03,04")
    p.add_argument("--kernel", default="python3", help="Jupyter kernel name (default python3)")
    p.set_defaults(func=cmd_run)


def cmd_env(args) -> int:
    from textscd_lib.course import env

    rep = env.report()
    print(json.dumps(rep, indent=2) if args.json else env.format_report(rep))
    return 0


def cmd_run(args) -> int:
    """Run the series. A refused input (runner.RunInputError, a ValueError) exits 2 and a failed chapter
    (RunError) exits 1, each as one line on stderr (cli/main.py); the chapters' table goes to stdout."""
    from textscd_lib.course import runner

    params = runner.load_params_file(args.params) if args.params else {}
    name = args.run_name or ("fast" if args.fast else "demo")
    only = args.only.split(",") if args.only is not None else None
    rep = runner.run_series(params, run_name=name, fast=args.fast, only=only, kernel_name=args.kernel)
    for nb in rep.notebooks:
        print(f"  {nb['notebook']:<40} {nb['status']:<6} {nb.get('seconds', 0):8.1f} s")
    print(f"run '{name}' finished: {rep.path / 'run.json'}")
    return 0
