"""The ``textscd`` command (also ``python -m textscd_lib``).

Subcommands: ``env``, ``run``, ``data synth|validate|prepare-second``, ``caption``, ``train``, ``evaluate``,
``bench``. Each group lives in ``textscd_lib/cli/<group>.py`` as ``register(subparsers)`` and calls the
same library function the notebooks and tests call.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

GROUPS = ("core", "data", "caption", "train", "bench")


class CLIError(Exception):
    """An error the user can fix; printed without a traceback, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="textscd", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in GROUPS:
        importlib.import_module(f"textscd_lib.cli.{group}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - user-facing errors are printed without a traceback
        if args.verbose or not _is_user_error(e):
            raise
        print(f"textscd {args.command}: error: {e}", file=sys.stderr)
        return 2


def _is_user_error(e: Exception) -> bool:
    return isinstance(e, (CLIError, ValueError, FileNotFoundError, RuntimeError, OSError))


if __name__ == "__main__":
    raise SystemExit(main())
