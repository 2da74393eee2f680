"""The Gemini captioner against a fake generateContent server on 127.0.0.1 (chapter 02).

Retries on 429/5xx/timeouts/malformed answers, failures stored as failures, resume after a SIGKILL with
no caption lost and none requested twice, and the API key absent from everything written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_gemini import FakeGemini, make_tiny_second

from textscd_lib.text.captions import CaptionStore, caption_dataset
from textscd_lib.text.gemini import FatalGeminiError, RateLimiter

KEY = "test-key-not-secret-123"
FAST_RETRY = dict(initial_delay=0.01, max_delay=0.05, rpm=0, progress=False)
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    return root, make_tiny_second(root, n=6)


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    return KEY


def serve(images, scripts=None, **kw) -> FakeGemini:
    fake = FakeGemini(expect_key=KEY, **kw)
    for name, (a, b) in images.items():
        fake.register_pair(name, a, b, (scripts or {}).get(name))
    return fake


def test_retries_after_429_5xx_timeout_and_malformed_answers_then_stores_the_caption(data, key, tmp_path):
    root, images = data
    scripts = {"00000": [429, 500, 503], "00001": ["malformed", "empty"], "00002": [("slow", 3.0)]}
    out = tmp_path / "gemini.jsonl"
    with serve(images, scripts) as fake:
        s = caption_dataset(root, "gemini", out, base_url=fake.url, workers=3, attempts=5, timeout_s=1.0,
                            **FAST_RETRY)
    assert (s["ok"], s["failed"]) == (6, 0)
    assert fake.requests["00000"] == 4 and fake.requests["00001"] == 3 and fake.requests["00002"] == 2
    assert all(fake.requests[n] == 1 for n in ("00003", "00004", "00005"))
    assert s["requests"] == sum(fake.requests.values()) == 6 + 3 + 2 + 1
    caps = CaptionStore(out).captions()
    assert caps["00000"] == "A caption for 00000, request 4."
    assert caps["00002"] == "A caption for 00002, request 2."   # the late answer was never used
    rec = CaptionStore(out).latest()["00000"]
    assert rec["attempts"] == 4 and rec["model"] == "gemini-3.8-flash" and rec["prompt"].startswith("Change")
    assert dict(fake.models) == {"gemini-3.8-flash": 12}
    body = fake.bodies[0]
    assert body["generationConfig"]["temperature"] == 0
    parts = body["contents"][0]["parts"]
    assert parts[0]["text"].startswith("Change detection task") and len(parts) == 3
    assert [p["inlineData"].get("mimeType", p["inlineData"].get("mime_type")) for p in parts[1:]] == \
        ["image/png", "image/png"]


def test_pair_failing_every_attempt_is_stored_as_failed_and_captioned_on_the_next_run(data, key, tmp_path):
    root, images = data
    out = tmp_path / "gemini.jsonl"
    with serve(images, {"00003": [503, 500, 429], "00004": [400]}) as fake:
        s = caption_dataset(root, "gemini", out, base_url=fake.url, attempts=3, **FAST_RETRY)
        assert (s["ok"], s["failed"]) == (4, 2)
        store = CaptionStore(out)
        assert "00003" not in store.captions() and "00004" not in store.captions()
        assert "429" in store.failed()["00003"] and "400" in store.failed()["00004"]
        assert fake.requests["00003"] == 3 and fake.requests["00004"] == 1   # a 400 is not retried
        s2 = caption_dataset(root, "gemini", out, base_url=fake.url, attempts=3, **FAST_RETRY)
    assert s2["to_request"] == 2 and s2["ok"] == 2 and s2["already_ok"] == 4
    assert sorted(store.captions()) == sorted(images)
    assert all(fake.requests[n] == 1 for n in ("00000", "00001", "00002", "00005"))  # none asked twice


def test_rejected_key_stops_the_run_without_storing_anything(data, monkeypatch, tmp_path):
    root, images = data
    monkeypatch.setenv("GEMINI_API_KEY", "a-wrong-key")
    out = tmp_path / "gemini.jsonl"
    with serve(images) as fake, pytest.raises(FatalGeminiError, match="403"):
        caption_dataset(root, "gemini", out, base_url=fake.url, workers=1, **FAST_RETRY)
    assert sum(fake.requests.values()) + len(fake.answers["?"]) <= 2
    assert CaptionStore(out).records() == []


def test_dry_run_counts_missing_and_failed_pairs_without_a_key_or_a_request(data, monkeypatch, tmp_path):
    root, images = data
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    store = CaptionStore(tmp_path / "g.jsonl")
    store.append({"pair": "00000", "caption": "x", "status": "ok"})
    store.append({"pair": "00001", "caption": None, "status": "failed", "error": "500"})
    s = caption_dataset(root, "gemini", store.path, dry_run=True, rpm=10)
    assert (s["pairs"], s["already_ok"], s["retry_failed"], s["requests_planned"]) == (6, 1, 1, 5)
    assert s["minutes_at_rpm"] == 0.5
    with pytest.raises(RuntimeError, match="GEMINI_API_KEY.*--backend oracle"):
        caption_dataset(root, "gemini", store.path)


def test_a_second_run_on_the_same_store_is_refused_while_the_first_holds_it(data, key, tmp_path):
    root, images = data
    store = CaptionStore(tmp_path / "g.jsonl")
    with serve(images) as fake, store.exclusive():
        with pytest.raises(RuntimeError, match="another captioning run"):
            caption_dataset(root, "gemini", store.path, base_url=fake.url, **FAST_RETRY)
    assert sum(fake.requests.values()) == 0


def test_rate_limiter_spaces_request_starts_across_threads():
    import threading

    lim, starts = RateLimiter(rpm=1200), []   # 0.05 s apart
    threads = [threading.Thread(target=lambda: (lim.wait(), starts.append(time.monotonic()))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    starts.sort()
    assert min(b - a for a, b in zip(starts, starts[1:])) >= 0.045


def _captioner(root, out, url, extra=()):
    """`textscd caption` in a child process (the command's own parser and function)."""
    code = ("import sys, argparse, logging; from textscd_lib.cli import caption as c;"
            "logging.basicConfig(level=logging.DEBUG);"
            "p = argparse.ArgumentParser(); c.register(p.add_subparsers());"
            "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))")
    env = {**os.environ, "GEMINI_API_KEY": KEY, "TQDM_DISABLE": "0", "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-c", code, "caption", str(root), "--backend", "gemini", "--out", str(out),
            "--base-url", url, "--workers", "2", "--rpm", "600000", *extra]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO)


def test_kill_mid_run_then_resume_loses_no_caption_and_requests_none_twice(tmp_path):
    root = tmp_path / "data"
    images = make_tiny_second(root, n=8)
    out = tmp_path / "run" / "gemini.jsonl"
    with serve(images, hang_after_ok=3) as fake:
        proc = _captioner(root, out, fake.url)
        deadline = time.monotonic() + 30
        # wait until 3 captions are stored and 2 more requests hang in flight, then SIGKILL
        while time.monotonic() < deadline and not (len(CaptionStore(out).captions()) == 3
                                                   and sum(fake.requests.values()) == 5):
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        out1, err1 = proc.communicate(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        first = CaptionStore(out).captions()
        assert len(first) == 3 and sum(fake.requests.values()) == 5
        fake.release()
        proc = _captioner(root, out, fake.url)
        out2, err2 = proc.communicate(timeout=60)
        assert proc.returncode == 0, err2.decode()[-2000:]
    store = CaptionStore(out)
    caps = store.captions()
    assert sorted(caps) == sorted(images)                                    # no caption lost
    assert all(fake.ok_answers(n) == 1 for n in images)                      # none answered twice
    assert all(fake.requests[n] == 1 for n in first)                         # stored ones not asked again
    assert sum(fake.requests.values()) == len(images) + 2                    # only the 2 in flight repeated
    ok_lines = [r for r in store.records() if r["status"] == "ok"]
    assert len(ok_lines) == len(images)
    assert all(caps[n] == f"A caption for {n}, request {fake.requests[n]}." for n in images)
    assert json.loads(out2.decode())["ok"] == len(images) - 3
    assert b"5/5" in err2 and b"failed=0" in err2                           # the progress bar
    # the key was sent to the server, and appears in no file and no output
    assert fake.keys_seen == {KEY}
    for blob in (out1, err1, out2, err2):
        assert KEY.encode() not in blob
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert KEY.encode() not in f.read_bytes(), f


def test_cli_without_key_explains_how_to_set_it_and_never_prints_a_key(data, monkeypatch, capsys, tmp_path):
    from textscd_lib.cli.main import main

    root, _ = data
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    rc = main(["caption", str(root), "--backend", "gemini", "--out", str(tmp_path / "g.jsonl")])
    err = capsys.readouterr().err
    assert rc == 2 and "export GEMINI_API_KEY=" in err and "oracle" in err and "second-cc" in err
    rc = main(["caption", str(root), "--out", str(tmp_path / "g.jsonl"), "--dry-run"])
    assert rc == 0 and "would make 6 requests" in capsys.readouterr().out


def test_chapter_sources_call_captions_the_run_with_the_chosen_model_and_ignores_the_offline_seed(
        data, key, tmp_path):
    """Chapter 02's ``ensure_captions(root, CAPTIONS, RUN_PATH, seed=SEED, model=...)`` with CAPTIONS="gemini":
    ``seed`` belongs to the offline sources and must not break Gemini; a misspelt option is named."""
    from textscd_lib.text.captions import ensure_captions, load_captions

    root, images = data
    run = tmp_path / "run"
    with serve(images) as fake:
        store = ensure_captions(root, "gemini", run, seed=0, model="gemini-test-model", base_url=fake.url,
                                **FAST_RETRY)
        with pytest.raises(ValueError, match=r"takes no option \['modle'\]"):
            caption_dataset(root, "gemini", tmp_path / "other.jsonl", modle="x", base_url=fake.url)
    assert sorted(load_captions(store)) == sorted(images)
    assert dict(fake.models) == {"gemini-test-model": len(images)}


@pytest.mark.parametrize("code", [400, 401, 403])
def test_a_key_google_rejects_stops_the_run_after_one_request_and_exits_1(data, monkeypatch, capsys, tmp_path,
                                                                           code):
    """400 API_KEY_INVALID (a malformed or revoked key), 401 and 403: one request, one line, exit 1; no pair is
    stored as failed (they were never really tried)."""
    from textscd_lib.cli.main import main

    root, images = data
    monkeypatch.setenv("GEMINI_API_KEY", "a-wrong-key")
    out = tmp_path / "gemini.jsonl"
    with serve(images, key_error=code) as fake:
        rc = main(["caption", str(root), "--out", str(out), "--base-url", fake.url, "--workers", "4",
                   "--rpm", "600000", "--attempts", "3"])
    err = capsys.readouterr().err
    assert rc == 1 and fake.rejected == 1
    assert len(err.strip().splitlines()) == 1 and "Gemini stopped the run" in err and str(code) in err
    assert CaptionStore(out).records() == []
    assert "a-wrong-key" not in err


@pytest.mark.parametrize("option, value, says", [
    ("--timeout", "0", "--timeout: must be a finite number > 0"), ("--timeout", "-5", "--timeout: must be"),
    ("--attempts", "0", "--attempts: must be >= 1"), ("--rpm", "-1", "--rpm: must be a finite number > 0"),
    ("--rpm", "0", "--rpm: must be"), ("--workers", "-3", "--workers: must be >= 1"),
    ("--workers", "0", "--workers: must be >= 1")])
def test_gemini_options_that_would_hang_or_never_request_are_refused_before_any_request(
        data, key, capsys, tmp_path, option, value, says):
    from textscd_lib.cli.main import main

    root, images = data
    with serve(images) as fake, pytest.raises(SystemExit) as exc:
        main(["caption", str(root), "--out", str(tmp_path / "g.jsonl"), "--base-url", fake.url, option, value])
    assert exc.value.code == 2 and says in capsys.readouterr().err
    assert sum(fake.requests.values()) == 0 and not (tmp_path / "g.jsonl").exists()


def test_the_library_refuses_the_same_settings_in_one_line():
    from textscd_lib.text.gemini import GeminiConfig

    for bad in (dict(timeout_s=0), dict(attempts=0), dict(workers=0), dict(rpm=-1)):
        with pytest.raises(ValueError, match=f"gemini: {next(iter(bad))} must be"):
            GeminiConfig(**bad)
