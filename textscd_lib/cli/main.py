"""The ``textscd`` command (also ``python -m textscd_lib``).

Subcommands, one per stage: ``data synth|validate|prepare-second``, ``caption``, ``features``, ``train``,
``predict``, ``evaluate``; and ``env``, ``run`` (the notebook series), ``bench``. Each group lives in
``textscd_lib/cli/<group>.py`` as ``register(subparsers)`` and calls the same library function the notebooks and
tests call; the library is imported inside the handlers, so ``textscd --help`` does not import torch.

Exit codes, the same for every subcommand: 0 ok; 1 the command ran and failed (a dataset with problems, captions
that failed, a diverged training, a run folder held by another process); 2 usage: a bad option (argparse) or an
input the user can fix (a missing file, a refused setting, a read-only or not writable results folder), printed
as one line without a traceback; 130 interrupted. A full disk (or quota) is a failure in words, exit 1, with the
folder named; the writers are atomic (``textscd_lib.common.io``), so nothing is left half-written. Anything else is unexpected and keeps its traceback (``-v`` shows tracebacks for all).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys
from pathlib import Path

from textscd_lib import __version__

GROUPS = ("core", "data", "caption", "train", "stages", "bench", "errors")

# failures the library reports in words (exit 1, one line): (module, class), matched only once imported
FAILURES = (("textscd_lib.engine.trainer", "TrainingDiverged"), ("textscd_lib.text.gemini", "FatalGeminiError"),
            ("textscd_lib.course.runner", "RunError"), ("textscd_lib.common.lock", "LockHeld"))


class CLIError(Exception):
    """An error the user can fix; printed without a traceback, exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse without abbreviations (``--resum`` is refused, not taken for ``--resume``), for every subparser."""

    def __init__(self, *args, **kwargs):
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="textscd", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"textscd {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging; tracebacks for every error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in GROUPS:
        importlib.import_module(f"textscd_lib.cli.{group}").register(sub)
    return parser


# a folder that cannot be written: the user picks another (2); a full disk or quota: a failure in words (1)
WRITE_ERRORS = {errno.EROFS: 2, errno.EACCES: 2, errno.EPERM: 2, errno.ENOSPC: 1, errno.EDQUOT: 1}


def write_error(e: BaseException) -> str | None:
    """One line naming the folder that could not be written, for the OSErrors of :data:`WRITE_ERRORS`."""
    if not isinstance(e, OSError) or e.errno not in WRITE_ERRORS:
        return None
    name = Path(e.filename) if e.filename else None
    folder = name if name is None or name.is_dir() else name.parent
    what = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
            errno.EROFS: "the file system is read-only"}.get(e.errno, "permission denied")
    where = f"cannot write into {folder}" if folder else "cannot write the results"
    return (f"{where}: {what} ({e.strerror or e}); nothing was left half-written. Free space or choose "
            "another folder (--results-root, --out-dir, --out)")


def exit_code(e: BaseException) -> int | None:
    """2 for an input the user can fix, 1 for a failure the library reported in words, None: unexpected."""
    if isinstance(e, OSError) and e.errno in WRITE_ERRORS:
        return WRITE_ERRORS[e.errno]
    if isinstance(e, (CLIError, ValueError, FileNotFoundError, NotADirectoryError)):
        return 2
    for module, name in FAILURES:
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None and isinstance(e, cls):
            return 1
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # usage errors exit 2 here (argparse)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Call the subcommand's handler under the exit-code rule (module docstring)."""
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - errors in words get one line; the unexpected keep their traceback
        code = exit_code(e)
        if code is None or args.verbose:
            raise
        print(f"textscd {args.command}: error: {write_error(e) or e}", file=sys.stderr)
        return code


if __name__ == "__main__":
    raise SystemExit(main())
