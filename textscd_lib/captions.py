"""Change captions: the paper's prompt, the caption store, and the caption dispatcher (chapter 02).

The paper (§4.1, "Text rephrasing") asks Gemini for one sentence per bi-temporal pair with
:data:`PAPER_PROMPT`; the captions become ``F_text`` for the TGI module (eq. 6–7). This module holds:

* :class:`CaptionStore` — one JSONL file per caption set, appended one record per line (atomic, durable,
  a half-written last line from a killed process is detected and repaired), merged deterministically.
* :func:`caption_dataset` (the ``textscd caption`` command) and :func:`ensure_captions` (the notebooks), which
  dispatch to a caption source.

The offline sources that stand in for Gemini when no key is available (``oracle``, ``noisy``, ``shuffled``,
``empty``) and the importer for the human captions of SECOND-CC (``second-cc``) live in
:mod:`textscd_lib.caption_sources`; the Gemini backend itself lives in :mod:`textscd_lib.gemini`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from textscd_lib.io_utils import atomic_write_text

log = logging.getLogger(__name__)

# Paper §4.1: the instruction given to Gemini together with both images of a pair.
PAPER_PROMPT = ("Change detection task: Use a sentence to summarize the differences in buildings, roads, "
                "vegetation, etc.")

OFFLINE_BACKENDS = ("oracle", "noisy", "shuffled", "empty", "second-cc")
BACKENDS = ("gemini", *OFFLINE_BACKENDS)


# ----------------------------------------------------------------------------------------------- store
class CaptionStore:
    """A JSONL caption set: one record per line (chapter 02).

    A record holds ``pair``, ``split``, ``caption``, ``status`` ("ok" or "failed"), ``error``, ``source``,
    ``backend``, ``model``, ``prompt``, ``time`` (unix seconds) and backend extras. Appending writes the
    whole line with a single ``write`` on an ``O_APPEND`` descriptor and ``fsync``\\ s it, so a killed process
    leaves at most one half-written last line; the next :meth:`append` truncates it away and readers skip it.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._checked = False

    def __repr__(self) -> str:
        return f"CaptionStore({str(self.path)!r})"

    def exists(self) -> bool:
        return self.path.is_file()

    def repair(self) -> int:
        """Cut a half-written last line (no trailing newline) off the file; returns the bytes removed."""
        if not self.path.is_file():
            return 0
        data = self.path.read_bytes()
        if not data or data.endswith(b"\n"):
            return 0
        keep = data.rfind(b"\n") + 1
        with open(self.path, "r+b") as fh:
            fh.truncate(keep)
            os.fsync(fh.fileno())
        log.warning("%s: removed a half-written last line (%d bytes) left by an interrupted run",
                    self.path, len(data) - keep)
        return len(data) - keep

    def append(self, record: dict[str, Any]) -> None:
        """Append one record, atomically and durably (thread-safe)."""
        record = {"time": round(time.time(), 3), **record}
        if "pair" not in record or record.get("status") not in ("ok", "failed"):
            raise ValueError(f"{self.path}: a caption record needs 'pair' and status ok|failed: {record}")
        line = (json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
        with self._lock:
            if not self._checked:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.repair()
                self._checked = True
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)

    @contextlib.contextmanager
    def exclusive(self):
        """Hold an exclusive lock on the store for a whole captioning run, so that two runs never request the
        same pairs; the kernel releases it when the process dies. Raises if another run holds it."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RuntimeError(f"{self.path}: another captioning run is writing this store; wait for it "
                                   "or stop it first") from None
            try:
                yield self
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def write_all(self, records: list[dict[str, Any]]) -> None:
        """Replace the whole store at once (offline sources), atomically."""
        now = round(time.time(), 3)
        text = "".join(json.dumps({"time": now, **r}, ensure_ascii=False, sort_keys=True) + "\n"
                       for r in records)
        atomic_write_text(self.path, text)
        self._checked = True

    def records(self) -> list[dict[str, Any]]:
        """Every readable record in file order; unreadable lines (a killed writer's last line) are skipped."""
        if not self.path.is_file():
            return []
        out, bad = [], 0
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            if isinstance(rec, dict) and "pair" in rec:
                out.append(rec)
            else:
                bad += 1
        if bad:
            log.warning("%s: skipped %d unreadable line(s)", self.path, bad)
        return out

    def latest(self) -> dict[str, dict[str, Any]]:
        """One record per pair, merged deterministically: an ``ok`` record beats a ``failed`` one; among
        records of the same status the one appended last wins. Sorted by pair name."""
        best: dict[str, dict[str, Any]] = {}
        for rec in self.records():
            old = best.get(rec["pair"])
            if old is None or not (old.get("status") == "ok" and rec.get("status") != "ok"):
                best[rec["pair"]] = rec
        return dict(sorted(best.items()))

    def captions(self) -> dict[str, str]:
        """``{pair: caption}`` for the pairs captioned successfully (status ok)."""
        return {k: r.get("caption") or "" for k, r in self.latest().items() if r.get("status") == "ok"}

    def failed(self) -> dict[str, str]:
        """``{pair: error}`` for the pairs whose latest attempt failed."""
        return {k: r.get("error") or "" for k, r in self.latest().items() if r.get("status") != "ok"}


def load_captions(path: str | Path) -> dict[str, str]:
    """``{pair: caption}`` of a caption store (chapter 03 reads it to build ``F_text``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no caption store here; make one with `textscd caption`")
    return CaptionStore(path).captions()


# -------------------------------------------------------------------------------------------- dispatch
def _pairs(data_root: Path, split: str | None = None) -> list:
    from textscd_lib.second import find_pairs

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
    import hashlib

    from textscd_lib.caption_sources import DESCRIBER_VERSION

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
    :class:`textscd_lib.gemini.GeminiConfig` fields for ``gemini`` (``model``, ``prompt``, ``workers``,
    ``rpm``, ``base_url``, ``limit``, ``dry_run``, …)."""
    data_root = Path(data_root)
    split = opts.pop("split", None)
    pairs = _pairs(data_root, split)
    store = CaptionStore(out)
    if backend == "gemini":
        from dataclasses import fields

        from textscd_lib.gemini import GeminiConfig, caption_with_gemini

        opts.pop("seed", None)  # the offline sources' option: Gemini is asked at temperature 0, unseeded
        unknown = sorted(set(opts) - {f.name for f in fields(GeminiConfig)})
        if unknown:
            raise ValueError(f"caption backend gemini takes no option {unknown}; it takes "
                             f"{sorted(f.name for f in fields(GeminiConfig))}")
        return caption_with_gemini(pairs, store, GeminiConfig(**opts))
    from textscd_lib import caption_sources as sources

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
    from textscd_lib.runs import clear_substitute, record_substitute

    backend, parsed = parse_source(source)
    opts = {**parsed, **opts}
    run_path = Path(run_path)
    path = run_path / "captions" / f"{source}.jsonl"
    store = CaptionStore(path)
    names = {p.name for p in _pairs(Path(data_root), opts.get("split"))}
    have = set(store.latest()) if store.exists() else set()
    if backend == "gemini":
        from textscd_lib.gemini import find_api_key, missing_key_message

        have_ok = set(store.captions())
        if have_ok and (names <= have_ok or find_api_key() is None):
            if not names <= have_ok:
                log.warning("%s: %d of %d pairs have no Gemini caption (no key to fill them in); they get the "
                            "empty caption", path, len(names - have_ok), len(names))
        else:
            if find_api_key() is None:
                raise RuntimeError(missing_key_message())
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
    text = _SUBSTITUTE_TEXT[backend].format(**opts)
    why = "the human captions of SECOND-CC" if backend == "second-cc" else "no Gemini API key / offline"
    record_substitute(run_path, "captions", text, "Gemini captions (paper §4.1)", why)
    return path
