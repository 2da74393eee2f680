"""Option types of the ``textscd`` command, checked at parse time (exit 2 with argparse's message): booleans,
``auto``/booleans, integers with a lower bound, and image sides (``native`` or a multiple of 32). Torch-free."""

from __future__ import annotations

import argparse

from textscd_lib.engine.config import MIN_SIZE


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _auto_bool(text: str):
    return "auto" if text == "auto" else _bool(text)


def int_at_least(low: int, optional: bool = False):
    def parse(text: str):
        if optional and text.lower() in ("none", ""):
            return None
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {v}")
        return v
    return parse


def size_option(text: str) -> int | None:
    """``native`` (None) or a side >= 32 that is a multiple of 32 (the encoder's stride)."""
    if text.lower() in ("native", "none"):
        return None
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'native' or a multiple of {MIN_SIZE}, got {text!r}") from None
    if v < MIN_SIZE or v % MIN_SIZE:
        raise argparse.ArgumentTypeError(f"must be 'native' or a multiple of {MIN_SIZE} that is at least "
                                         f"{MIN_SIZE} (the encoder's stride), got {v}")
    return v


def _opt_str(text: str):
    return None if text.lower() in ("none", "random") else text


TYPES = {"str": str, "int": int, "float": float, "bool": _bool, "auto_bool": _auto_bool, "opt_str": _opt_str,
         "size": size_option, "pos_int": int_at_least(1), "nonneg_int": int_at_least(0),
         "opt_pos_int": int_at_least(1, optional=True)}
