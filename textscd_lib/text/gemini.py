"""Gemini change captions with google-genai: rate limit, retries, resume (chapter 02, paper §4.1).

For every pair the client sends the paper's prompt and both images (PNG bytes) to ``generateContent`` with
temperature 0, and appends the answer to a :class:`textscd_lib.text.captions.CaptionStore`. The loop is built to
survive the real service:

* a requests-per-minute limiter shared by the worker threads (:class:`RateLimiter`);
* retries with exponential backoff (and the server's ``RetryInfo`` delay when it sends one) on 429, 408,
  5xx, timeouts, dropped connections and malformed answers; the SDK's own retries stay off so that every
  request is counted here;
* a pair that still fails is stored as ``status: failed`` with the error, never as a caption; a rejected key
  or an unknown model stops the run at once (every request would fail the same way);
* resumable: each answer is fsync'ed before the next request of that worker, and a rerun requests only the
  pairs without an ``ok`` record. Only a request in flight at the moment of a kill is sent again.

The API key comes from ``GEMINI_API_KEY`` (or ``GOOGLE_API_KEY``) and never reaches a file or a log: error
messages are scrubbed of it before they are stored.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from textscd_lib.text.store import OFFLINE_BACKENDS, PAPER_PROMPT, CaptionStore

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gemini-3.8-flash"  # stable Gemini Flash as of 2026-11; model names retire often
KEY_VARS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")


@dataclass
class GeminiConfig:
    """Settings of a Gemini captioning run (``textscd caption --backend gemini``, chapter 02)."""

    model: str = DEFAULT_MODEL
    prompt: str = PAPER_PROMPT
    workers: int = 4
    rpm: float = 10.0             # requests per minute, retries included
    base_url: str | None = None   # another endpoint: a proxy, or the fake server of the tests
    limit: int | None = None      # caption at most this many pairs in this run
    attempts: int = 5             # per pair, the first request included
    initial_delay: float = 2.0    # seconds before the first retry; doubles each time
    max_delay: float = 60.0
    timeout_s: float = 60.0       # per request
    temperature: float = 0.0
    dry_run: bool = False
    progress: bool = True
    api_key: str | None = field(default=None, repr=False)  # default: from the environment; never stored

    def __post_init__(self) -> None:
        """Refuse settings that would hang (timeout 0), never request (attempts 0) or not start (workers,
        rpm): one ValueError naming the option. ``rpm=0`` is accepted here as "no limit" (tests, proxies);
        the command line asks for rpm > 0."""
        checks = (("timeout_s", self.timeout_s > 0, "> 0 seconds"), ("attempts", self.attempts >= 1, ">= 1"),
                  ("workers", self.workers >= 1, ">= 1"), ("rpm", self.rpm >= 0, ">= 0"),
                  ("limit", self.limit is None or self.limit >= 0, ">= 0"))
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"gemini: {name} must be {rule}, got {getattr(self, name)}")


class FatalGeminiError(RuntimeError):
    """An error that every further request would repeat (bad key, unknown model): the run stops."""


class MissingApiKey(ValueError, RuntimeError):
    """No key in the environment: a setting the user can fix (the CLI exits 2 with the message, no traceback)."""


class _Retryable(Exception):
    pass


def find_api_key() -> str | None:
    """The Gemini API key from ``GEMINI_API_KEY`` or ``GOOGLE_API_KEY``, or None (chapter 02)."""
    for var in KEY_VARS:
        if os.environ.get(var, "").strip():
            return os.environ[var].strip()
    return None


def missing_key_message() -> str:
    """What to do when no key is set: how to set one, and the offline caption sources."""
    return ("no Gemini API key: set one with `export GEMINI_API_KEY=...` (create it at "
            "https://aistudio.google.com/apikey; GOOGLE_API_KEY works too), or caption offline with "
            f"--backend {' | '.join(OFFLINE_BACKENDS)} (oracle/noisy/shuffled need the mini-SECOND scene log; "
            "second-cc needs the SECOND-CC caption file). --dry-run needs no key.")


class RateLimiter:
    """Spaces request starts at least ``60 / rpm`` seconds apart, across threads (chapter 02)."""

    def __init__(self, rpm: float):
        self.interval = 60.0 / rpm if rpm and rpm > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


def make_client(api_key: str, base_url: str | None = None, timeout_s: float = 60.0):
    """A ``google.genai.Client`` for the Gemini Developer API (or ``base_url``), SDK retries off."""
    from google import genai
    from google.genai import types

    opts = types.HttpOptions(base_url=base_url, timeout=max(1, round(timeout_s * 1000)))  # in ms; 0 = none
    return genai.Client(api_key=api_key, http_options=opts)


def _retry_delay(err: Exception) -> float | None:
    """The delay a 429 asks for (google.rpc.RetryInfo ``retryDelay`` or a Retry-After header), if any."""
    details = getattr(err, "details", None)
    try:
        for d in (details or {}).get("error", {}).get("details", []):
            if str(d.get("@type", "")).endswith("RetryInfo") and "retryDelay" in d:
                return float(str(d["retryDelay"]).rstrip("s"))
    except (AttributeError, TypeError, ValueError):
        pass
    headers = getattr(getattr(err, "response", None), "headers", None) or {}
    try:
        return float(headers.get("retry-after")) if headers.get("retry-after") else None
    except (TypeError, ValueError):
        return None


def _is_transport_error(err: Exception) -> bool:
    """Timeouts and connection errors of httpx or httpx2 (google-genai 3 uses either)."""
    return any(c.__name__ in ("TransportError", "TimeoutException") and c.__module__.split(".")[0]
               in ("httpx", "httpx2") for c in type(err).__mro__)


def _is_bad_key(err: Exception) -> bool:
    """A 400 that rejects the key (Google answers ``INVALID_ARGUMENT`` with reason ``API_KEY_INVALID``): every
    further request would fail the same way."""
    text = f"{err} {getattr(err, 'details', '')}"
    return "API_KEY_INVALID" in text or "API key not valid" in text


def _classify(err: Exception) -> str:
    """``retry`` (transient), ``fail`` (this pair only) or ``fatal`` (stop the run)."""
    from google.genai import errors
    from pydantic import ValidationError

    if isinstance(err, _Retryable):
        return "retry"
    if isinstance(err, errors.APIError):
        code = err.code or 0
        if code in (408, 429) or code >= 500:
            return "retry"
        if code in (401, 403, 404) or (code == 400 and _is_bad_key(err)):
            return "fatal"
        return "fail"
    if _is_transport_error(err) or isinstance(err, (errors.UnknownApiResponseError, ValidationError, ValueError)):
        return "retry"  # timeouts, dropped connections, malformed answers
    return "fail"


def request_caption(client, cfg: GeminiConfig, png1: bytes, png2: bytes) -> tuple[str, dict[str, Any]]:
    """One ``generateContent`` call: prompt + both images, temperature 0 (paper §4.1). Returns the caption
    and metadata (finish reason, token counts). Raises on errors and on answers without text."""
    from google.genai import types

    resp = client.models.generate_content(
        model=cfg.model,
        contents=[cfg.prompt, types.Part.from_bytes(data=png1, mime_type="image/png"),
                  types.Part.from_bytes(data=png2, mime_type="image/png")],
        config=types.GenerateContentConfig(
            temperature=cfg.temperature,
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True)))  # no tools here
    text = (resp.text or "").strip() if resp.candidates else ""
    cand = resp.candidates[0] if resp.candidates else None
    finish = str(cand.finish_reason.value if cand and cand.finish_reason else None)
    usage = resp.usage_metadata
    meta = {"finish_reason": finish,
            "usage": {"prompt_tokens": getattr(usage, "prompt_token_count", None),
                      "output_tokens": getattr(usage, "candidates_token_count", None),
                      "thinking_tokens": getattr(usage, "thoughts_token_count", None)}}  # billed as output
    if not text:
        blocked = resp.prompt_feedback.block_reason if resp.prompt_feedback else None
        if blocked or finish in ("SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST"):
            raise RuntimeError(f"no caption: blocked ({blocked or finish})")
        raise _Retryable(f"answer without text (finish reason {finish})")
    return " ".join(text.split()), meta


def _scrub(text: str, key: str | None) -> str:
    return text.replace(key, "***") if key else text


def caption_pair(client, cfg: GeminiConfig, pair, limiter: RateLimiter, key: str | None,
                 stop: threading.Event | None = None) -> dict[str, Any] | None:
    """Caption one pair with retries and backoff; returns its store record (ok or failed), or None when the
    run was stopped before an answer (chapter 02)."""
    png1, png2 = Path(pair.im1).read_bytes(), Path(pair.im2).read_bytes()
    base = {"pair": pair.name, "split": pair.split, "source": "gemini", "backend": "gemini",
            "model": cfg.model, "prompt": cfg.prompt}
    error = ""
    for attempt in range(1, cfg.attempts + 1):
        if stop is not None and stop.is_set():
            return None
        limiter.wait()
        t0 = time.monotonic()
        try:
            caption, meta = request_caption(client, cfg, png1, png2)
        except Exception as e:  # noqa: BLE001 - every error is classified, stored or re-raised
            kind = _classify(e)
            error = _scrub(f"{type(e).__name__}: {e}", key)[:500]
            if kind == "fatal":
                raise FatalGeminiError(error) from None
            if kind == "fail" or attempt == cfg.attempts:
                break
            delay = min(cfg.max_delay, cfg.initial_delay * 2 ** (attempt - 1)) * random.uniform(0.75, 1.0)
            delay = max(delay, min(cfg.max_delay, _retry_delay(e) or 0.0))
            log.debug("%s: attempt %d failed (%s); retrying in %.2f s", pair.name, attempt, error, delay)
            time.sleep(delay)
            continue
        return {**base, "caption": caption, "status": "ok", "error": None, "attempts": attempt,
                "latency_s": round(time.monotonic() - t0, 3), **meta}
    return {**base, "caption": None, "status": "failed", "error": error, "attempts": attempt}


def plan(pairs: list, store: CaptionStore, limit: int | None = None) -> tuple[list, dict[str, int]]:
    """The pairs still to caption (no ``ok`` record: missing or failed), and the counts behind it."""
    latest = store.latest()
    ok = {k for k, r in latest.items() if r.get("status") == "ok"}
    todo = [p for p in pairs if p.name not in ok]
    counts = {"pairs": len(pairs), "already_ok": len(pairs) - len(todo),
              "retry_failed": sum(1 for p in todo if p.name in latest), "missing": len(todo)}
    if limit is not None:
        todo = todo[:max(0, limit)]
    counts["to_request"] = len(todo)
    return todo, counts


def caption_with_gemini(pairs: list, store: CaptionStore, cfg: GeminiConfig) -> dict[str, Any]:
    """Caption the pairs that lack an ``ok`` caption in ``store`` (``textscd caption --backend gemini``,
    chapter 02). Returns a summary: counts, requests made, seconds. ``cfg.dry_run`` only plans.
    The store is locked for the run: a second run on the same store stops at once."""
    if cfg.dry_run:
        return _run(pairs, store, cfg)
    if not (cfg.api_key or find_api_key()):
        raise MissingApiKey(missing_key_message())
    with store.exclusive():
        return _run(pairs, store, cfg)


def _work_all(work, todo: list, workers: int, stop: threading.Event) -> None:
    """``work(pair)`` for every pair on ``workers`` threads; the first FatalGeminiError stops the others (they
    check ``stop`` before each request) and is raised once all have returned."""
    fatal: FatalGeminiError | None = None
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="gemini") as pool:
        futures = [pool.submit(work, p) for p in todo]
        try:
            for f in futures:
                try:
                    f.result()
                except FatalGeminiError as e:
                    stop.set()
                    fatal = fatal or e
        except KeyboardInterrupt:
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    if fatal is not None:
        raise fatal


def _run(pairs: list, store: CaptionStore, cfg: GeminiConfig) -> dict[str, Any]:
    store.repair()
    todo, counts = plan(pairs, store, cfg.limit)
    summary: dict[str, Any] = {"backend": "gemini", "model": cfg.model, "store": str(store.path), **counts}
    if cfg.dry_run:
        minutes = counts["to_request"] / cfg.rpm if cfg.rpm else 0.0
        summary.update(dry_run=True, requests_planned=counts["to_request"],
                       requests_max=counts["to_request"] * cfg.attempts, minutes_at_rpm=round(minutes, 1))
        return summary
    key = cfg.api_key or find_api_key()
    if not key:
        raise MissingApiKey(missing_key_message())
    client = make_client(key, cfg.base_url, cfg.timeout_s)
    limiter, stop, lock = RateLimiter(cfg.rpm), threading.Event(), threading.Lock()
    stats = {"ok": 0, "failed": 0, "requests": 0}
    t0 = time.monotonic()

    quiet = not cfg.progress or os.environ.get("TQDM_DISABLE", "") not in ("", "0")
    bar = tqdm(total=len(todo), unit="pair", desc=f"gemini {cfg.model}", disable=quiet)

    def work(pair) -> None:
        rec = caption_pair(client, cfg, pair, limiter, key, stop)
        if rec is None:
            return
        store.append(rec)
        with lock:
            stats["requests"] += rec["attempts"]
            stats[rec["status"]] += 1
            bar.set_postfix({"ok": stats["ok"], "failed": stats["failed"]}, refresh=False)
            bar.update(1)

    fatal: BaseException | None = None
    try:  # the first pair alone: a rejected key or model stops the run after one request, not one per worker
        if todo:
            work(todo[0])
        _work_all(work, todo[1:], cfg.workers, stop)
    except FatalGeminiError as e:
        fatal = e
    bar.close()
    seconds = time.monotonic() - t0
    summary.update(stats, seconds=round(seconds, 2), pairs_per_min=round(60 * len(todo) / max(seconds, 1e-9), 1))
    if fatal is not None:
        raise FatalGeminiError(f"Gemini stopped the run: {fatal} (stored so far: {stats['ok']} ok). "
                               "Check the key, the model name (--model) and the endpoint (--base-url).")
    return summary
