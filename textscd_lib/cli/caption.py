"""``textscd caption DATA_ROOT --backend B --out STORE.jsonl`` (chapter 02): calls
:func:`textscd_lib.text.captions.caption_dataset`, the function notebook 02 and the tests call."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from textscd_lib.cli.options import int_at_least


def _positive_float(text: str) -> float:
    """A number > 0 (``--timeout``, ``--rpm``): 0 would wait forever or never start a request."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return v


def register(sub) -> None:
    from textscd_lib.text.gemini import DEFAULT_MODEL
    from textscd_lib.text.store import BACKENDS  # torch-free: `textscd --help` must not import torch

    p = sub.add_parser("caption", help="write change captions for every pair (Gemini or an offline source)",
                       description="Caption every pair of a SECOND-layout folder into a JSONL caption store. "
                       "Gemini runs resume: only pairs without an ok caption are requested.")
    p.add_argument("data_root", metavar="DATA_ROOT", help="SECOND-layout folder (mini-SECOND or prepared SECOND)")
    p.add_argument("--backend", choices=BACKENDS, default="gemini", help="caption source (default gemini)")
    p.add_argument("--out", required=True, help="caption store to write/resume, e.g. captions.jsonl (a new file "
                   "or a caption store; any other file is refused, never replaced)")
    p.add_argument("--split", default=None, help="only this split (default: every split)")
    g = p.add_argument_group("gemini")
    g.add_argument("--model", default=DEFAULT_MODEL, help=f"Gemini model (default {DEFAULT_MODEL})")
    g.add_argument("--prompt-file", default=None, help="a text file with another prompt (default: the paper's)")
    g.add_argument("--workers", type=int_at_least(1), default=4, help="concurrent requests (default 4)")
    g.add_argument("--rpm", type=_positive_float, default=10.0,
                   help="requests per minute, retries included (default 10)")
    g.add_argument("--base-url", default=None, help="another endpoint (a proxy, a local fake server)")
    g.add_argument("--limit", type=int_at_least(0), default=None, help="caption at most K pairs in this run")
    g.add_argument("--attempts", type=int_at_least(1), default=5, help="tries per pair before it is stored as failed")
    g.add_argument("--timeout", type=_positive_float, default=60.0, help="seconds per request (default 60)")
    g.add_argument("--dry-run", action="store_true", help="say how many requests it would make; no key, no cost")
    o = p.add_argument_group("offline sources")
    o.add_argument("--noise", type=float, default=0.3, help="noisy: corruption probability P (default 0.3)")
    o.add_argument("--seed", type=int, default=0, help="oracle/noisy/shuffled seed (default 0)")
    o.add_argument("--cc-file", default=None, help="second-cc: the SECOND-CC caption file (JSON/JSONL/CSV)")
    o.add_argument("--cc-sentence", type=int, default=0, help="second-cc: which of the 5 captions (default 0)")
    p.set_defaults(func=cmd_caption)


def cmd_caption(args) -> int:
    from pathlib import Path

    from textscd_lib.text.captions import PAPER_PROMPT, caption_dataset

    for name in ("httpx", "httpx2"):  # one log line per request otherwise
        logging.getLogger(name).setLevel(logging.WARNING)
    if args.backend == "gemini":
        prompt = Path(args.prompt_file).read_text(encoding="utf-8").strip() if args.prompt_file else PAPER_PROMPT
        opts = dict(model=args.model, prompt=prompt, workers=args.workers, rpm=args.rpm, base_url=args.base_url,
                    limit=args.limit, attempts=args.attempts, timeout_s=args.timeout, dry_run=args.dry_run)
    elif args.backend == "noisy":
        opts = dict(noise=args.noise, seed=args.seed)
    elif args.backend == "second-cc":
        opts = dict(file=args.cc_file, sentence=args.cc_sentence)
    elif args.backend in ("oracle", "shuffled"):
        opts = dict(seed=args.seed)
    else:
        opts = {}
    if args.dry_run and args.backend != "gemini":
        print(f"dry run: backend {args.backend} is offline and free (0 requests)")
        return 0
    summary = caption_dataset(args.data_root, args.backend, args.out, split=args.split, **opts)
    if summary.get("dry_run"):
        print(f"dry run: {summary['pairs']} pairs, {summary['already_ok']} already captioned, "
              f"{summary['retry_failed']} failed before; would make {summary['requests_planned']} requests "
              f"to {summary['model']} (up to {summary['requests_max']} with retries), "
              f"about {summary['minutes_at_rpm']} min at {args.rpm:g} requests/min")
        return 0
    print(json.dumps(summary, indent=2))
    return _verdict(summary, args.out)


def _verdict(summary: dict, out: str) -> int:
    """Exit code of a captioning run: 1 with one line on stderr when pairs failed or none has a caption."""
    from textscd_lib.text.store import CaptionStore

    if not CaptionStore(out).captions():
        print(f"textscd caption: error: {out} holds no caption at all ({summary.get('failed', 0)} of "
              f"{summary.get('pairs', 0)} pairs failed in this run); nothing to train on", file=sys.stderr)
        return 1
    if summary.get("failed"):
        print(f"{summary['failed']} pair(s) failed after every retry (stored with their errors, not as captions); "
              "run the same command again to retry only those.", file=sys.stderr)
        return 1
    return 0
