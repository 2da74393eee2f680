"""The caption dispatcher: which source writes a run's captions (chapter 02; ``textscd caption``).

:func:`caption_dataset` (the ``textscd caption`` command) and :func:`ensure_captions` (the notebooks) dispatch
to a caption source: Gemini (:mod:`textscd_lib.text.gemini`, the paper's §4.1), or an offline stand-in
(:mod:`textscd_lib.text.sources`: ``oracle``, ``noisy``, ``shuffled``, ``empty``, and the importer for the
human captions of SECOND-CC, ``second-cc``). Every source writes the same :class:`~textscd_lib.text.store.CaptionStore`.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

from textscd_lib.common.lock import run_lock
from textscd_lib.common.outputs import guard_output_file
from textscd_lib.common.runs import clear_substitute, record_substitute
from textscd_lib.data.second import find_pairs
from textscd_lib.text import sources
from textscd_lib.text.gemini import (
    GeminiConfig,
    MissingApiKey,
    caption_with_gemini,
    find_api_key,
    missing_key_message,
)
from textscd_lib.text.sources import DESCRIBER_VERSION
from textscd_lib.text.store import (
    BACKENDS,
    OFFLINE_BACKENDS,
    PAPER_PROMPT,
    CaptionStore,
    load_captions,
    looks_like_caption_store,
)

log = logging.getLogger(__name__)

__all__ = ["BACKENDS", "OFFLINE_BACKENDS", "PAPER_PROMPT", "CaptionStore", "caption_dataset", "caption_substitute",
           "ensure_captions", "load_captions", "offline_params", "parse_source"]

# -------------------------------------------------------------------------------------------- dispatch
def _pairs(data_root: Path, split: str | None = None) -> list:
    pairs = find_pairs(data_root, split)
    if not pairs:
        raise FileNotFoundError(f"{data_root}: no image pairs found (expected {{train,val}}/im1/NAME.png …)")
    return pairs


def parse_source(source: str) -> tuple[str, dict[str, Any]]:
    """``"noisy-0.3"`` → ``("noisy", {"noise": 0.3})``; other names map to themselves (chapter 02)."""
    m = re.fullmatch(r"noisy-([0-9.]+)", source)
    if m:
        return "noisy", {"noise": float(m.group(1))}
    if source in BACKENDS:
        return source, {}
    raise ValueError(f"unknown caption source {source!r}: use one of gemini, oracle, noisy-P (e.g. noisy-0.3), "
                     "shuffled, empty, second-cc")


def offline_params(data_root: Path, backend: str, seed: int = 0, noise: float | None = None,
                   file: str | Path | None = None, sentence: int = 0, **_: Any) -> dict[str, Any]:
    """What an offline store depends on (seed, noise, describer version, a hash of the scene log or of the
    SECOND-CC file); :func:`ensure_captions` rewrites a store whose ``params`` differ."""
    def digest(f: Path) -> str | None:
        return hashlib.sha256(f.read_bytes()).hexdigest()[:16] if f.is_file() else None

    if backend == "empty":
        return {"backend": "empty"}
    if backend == "second-cc":
        return {"backend": backend, "file": digest(Path(file)) if file else None, "sentence": int(sentence)}
    params = {"backend": backend, "seed": int(seed), "describer": DESCRIBER_VERSION,
              "scene_log": digest(Path(data_root) / "scene_log.jsonl")}
    if backend == "noisy":
        params["noise"] = float(0.3 if noise is None else noise)
    return params


def caption_dataset(data_root: str | Path, backend: str, out: str | Path, **opts: Any) -> dict[str, Any]:
    """Caption every pair of ``data_root`` with ``backend`` into the store ``out``; returns a summary
    (``textscd caption``, chapter 02). Offline backends rewrite the store; ``gemini`` resumes it.

    Options: ``split``, ``seed`` (offline), ``noise`` (noisy), ``file``/``sentence`` (second-cc), and the
    :class:`textscd_lib.text.gemini.GeminiConfig` fields for ``gemini`` (``model``, ``prompt``, ``workers``,
    ``rpm``, ``base_url``, ``limit``, ``dry_run``, …).

    Holds the lock of the folder it writes (common/lock.py): the run folder for a store in
    ``results/<run>/captions/``, else the store's folder; a second writer there is refused.

    ``out`` must be new, empty or a caption store (its first line one of our records): a file of any other
    kind is refused before anything is read, repaired or replaced, as is ``out`` inside the data or equal to
    the SECOND-CC file (:mod:`textscd_lib.common.outputs`; resuming or rewriting a store needs no --force)."""
    out = guard_output_file(out, "caption store", inputs=[data_root, opts.get("file")], force=True,
                            recognise=looks_like_caption_store)
    if opts.get("dry_run"):
        return _caption_dataset(data_root, backend, out, **opts)
    folder = out.parent.parent if out.parent.name == "captions" else out.parent
    with run_lock(folder, f"caption {backend} into {out}"):
        return _caption_dataset(data_root, backend, out, **opts)


def _caption_dataset(data_root: str | Path, backend: str, out: Path, **opts: Any) -> dict[str, Any]:
    data_root = Path(data_root)
    split = opts.pop("split", None)
    pairs = _pairs(data_root, split)
    store = CaptionStore(out)
    if backend == "gemini":
        opts.pop("seed", None)  # the offline sources' option: Gemini is asked at temperature 0, unseeded
        unknown = sorted(set(opts) - {f.name for f in fields(GeminiConfig)})
        if unknown:
            raise ValueError(f"caption backend gemini takes no option {unknown}; it takes "
                             f"{sorted(f.name for f in fields(GeminiConfig))}")
        return caption_with_gemini(pairs, store, GeminiConfig(**opts))
    params = offline_params(data_root, backend, **opts)
    seed = int(opts.pop("seed", 0))
    if backend == "oracle":
        records = sources.oracle_records(data_root, pairs, seed)
    elif backend == "noisy":
        records = sources.noisy_records(data_root, pairs, float(opts.pop("noise", 0.3)), seed)
    elif backend == "shuffled":
        records = sources.shuffled_records(data_root, pairs, seed)
    elif backend == "empty":
        records = sources.empty_records(pairs)
    elif backend == "second-cc":
        if not opts.get("file"):
            raise ValueError("backend second-cc needs the SECOND-CC caption file (--cc-file FILE)")
        records = sources.second_cc_records(Path(opts.pop("file")), pairs, int(opts.pop("sentence", 0)))
    else:
        raise ValueError(f"unknown caption backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if opts:
        log.warning("caption backend %s ignores options %s", backend, sorted(opts))
    store.write_all([{**r, "params": params} for r in records])
    n_ok = sum(r["status"] == "ok" for r in records)
    return {"backend": backend, "store": str(store.path), "pairs": len(pairs), "ok": n_ok,
            "failed": len(records) - n_ok, "missing": len(pairs) - len(records), "requests": 0}


_SUBSTITUTE_TEXT = {
    "oracle": "oracle captions written from the synthetic scene log (an upper bound on caption quality)",
    "noisy": "oracle captions corrupted with probability {noise} (omitted/swapped/invented changes)",
    "shuffled": "captions shuffled across pairs (control: text that does not belong to the image)",
    "empty": "empty captions (no text)",
    "second-cc": "human SECOND-CC captions",
}


def ensure_captions(data_root: str | Path, source: str, run_path: str | Path, record: bool = True,
                    **opts: Any) -> Path:
    """The caption store ``results/<run>/captions/<source>.jsonl``, made if missing (chapters 02, 05, 07).

    Offline sources are generated when missing or incomplete and, with ``record=True`` (the run's caption
    source), recorded as the run's substitute for Gemini; ablation controls pass ``record=False``.
    ``gemini`` uses an existing store, or captions the missing pairs when a key is set."""
    backend, parsed = parse_source(source)
    opts = {**parsed, **opts}
    run_path = Path(run_path)
    path = run_path / "captions" / f"{source}.jsonl"
    store = CaptionStore(path)
    names = {p.name for p in _pairs(Path(data_root), opts.get("split"))}
    have = set(store.latest()) if store.exists() else set()
    if backend == "gemini":
        have_ok = set(store.captions())
        if have_ok and (names <= have_ok or find_api_key() is None):
            if not names <= have_ok:
                log.warning("%s: %d of %d pairs have no Gemini caption (no key to fill them in); they get the "
                            "empty caption", path, len(names - have_ok), len(names))
        else:
            if find_api_key() is None:
                raise MissingApiKey(missing_key_message())
            caption_dataset(data_root, "gemini", path, **opts)
        if record:
            clear_substitute(run_path, "captions")  # the paper's source
        return path
    current = next(iter(store.latest().values()), {}).get("params") if have else None
    complete = names <= have or (backend == "second-cc" and bool(have))  # SECOND-CC covers what it covers
    if not complete or current != offline_params(Path(data_root), backend, **opts):
        caption_dataset(data_root, backend, path, **opts)
    if not record:
        return path
    record_substitute(run_path, "captions", **caption_substitute(backend, **opts))
    return path


def caption_substitute(backend: str, **opts: Any) -> dict[str, str] | None:
    """What an offline caption source stands in for, as a run records it (``used``, ``instead_of``, ``why``;
    chapters 02, 05); None for ``gemini``, the paper's source. ``opts``: the source's options (``noise``)."""
    if backend == "gemini":
        return None
    text = _SUBSTITUTE_TEXT[backend].format(**{"noise": 0.3, **opts})
    why = "the human captions of SECOND-CC" if backend == "second-cc" else "no Gemini API key / offline"
    return {"used": text, "instead_of": "Gemini captions (paper §4.1)", "why": why}
