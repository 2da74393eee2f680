"""A fake Gemini ``generateContent`` server on 127.0.0.1 for the caption tests (chapter 02).

It speaks ``POST /v1beta/models/{model}:generateContent`` (and ``/v1/…``, the default of google-genai 3)
like the Gemini Developer API. A request carries
only the prompt and two images, so the server identifies the pair by hashing the image bytes; the test maps
hashes to pair names with :meth:`FakeGemini.register_pair`. Per pair, a script of actions is played on
successive requests: ``"ok"``, an HTTP status (429, 500, 503, 400, 403…), ``"malformed"`` (200 with broken
JSON), ``"empty"`` (200 without candidates), ``("slow", seconds)`` (then ok). With ``hang_after_ok=N``
every request after the N-th ok answer blocks (until :meth:`release`), which lets a test kill the client
while requests are in flight. Every request, and every answer actually sent, is counted per pair. With
``expect_key`` a request with another key is rejected (counted in ``rejected``) the way Google does:
``key_error=403`` PERMISSION_DENIED, ``401`` UNAUTHENTICATED, or ``400`` INVALID_ARGUMENT with reason
``API_KEY_INVALID`` (what the Developer API answers to a malformed or revoked key).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def pair_hash(png1: bytes, png2: bytes) -> str:
    return hashlib.sha256(png1 + b"|" + png2).hexdigest()


class FakeGemini:
    def __init__(self, hang_after_ok: int | None = None, expect_key: str | None = None, key_error: int = 403):
        self.scripts: dict[str, list] = {}
        self.names: dict[str, str] = {}
        self.requests: Counter = Counter()       # pair -> requests received
        self.answers: dict[str, list] = defaultdict(list)  # pair -> actions whose answer was sent
        self.models: Counter = Counter()
        self.bodies: list[dict] = []
        self.paths: list[str] = []
        self.keys_seen: set[str] = set()
        self.hang_after_ok = hang_after_ok
        self.expect_key = expect_key
        self.key_error = key_error
        self.rejected = 0  # requests refused for their key
        self._ok_sent = 0
        self._release = threading.Event()
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    # -- test API
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def register_pair(self, name: str, png1: bytes, png2: bytes, script: list | None = None) -> None:
        self.names[pair_hash(png1, png2)] = name
        self.scripts[name] = list(script or [])

    def release(self) -> None:
        """Let hanging requests go (they are then answered 503, as if the server had failed them)."""
        self.hang_after_ok = None
        self._release.set()

    def ok_answers(self, name: str) -> int:
        return sum(a == "ok" for a in self.answers[name])

    def __enter__(self) -> FakeGemini:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- server side
    def _next_action(self, name: str):
        with self._lock:
            self.requests[name] += 1
            script = self.scripts.setdefault(name, [])
            action = script.pop(0) if script else "ok"
            hang = (self.hang_after_ok is not None and action == "ok" and self._ok_sent >= self.hang_after_ok)
            if action == "ok" and not hang:
                self._ok_sent += 1
        return action, hang

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def _send(self, code: int, body: bytes, name: str, action) -> None:
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    self.wfile.flush()
                except OSError:  # the client is gone (killed): nothing was delivered
                    return
                with fake._lock:
                    fake.answers[name].append(action)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                fake.keys_seen.add(self.headers.get("x-goog-api-key", ""))
                path = self.path.split("?")[0]
                fake.paths.append(path)
                m = re.fullmatch(r"/v1(?:beta|alpha)?/models/([^/:]+):generateContent", path)
                if m is None:
                    self._send(404, b'{"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}',
                               "?", 404)
                    return
                if fake.expect_key is not None and self.headers.get("x-goog-api-key") != fake.expect_key:
                    with fake._lock:
                        fake.rejected += 1
                    self._send(fake.key_error, _key_error(fake.key_error), "?", fake.key_error)
                    return
                body = json.loads(raw)
                fake.models[m.group(1)] += 1
                fake.bodies.append(body)
                parts = body["contents"][0]["parts"]
                images = [_b64(p["inlineData"]["data"]) for p in parts if "inlineData" in p]
                name = fake.names.get(pair_hash(*images), "?") if len(images) == 2 else "?"
                action, hang = fake._next_action(name)
                if hang:
                    fake._release.wait(30)
                    self._send(503, _error(503, "UNAVAILABLE"), name, "hang")
                    return
                if isinstance(action, tuple) and action[0] == "slow":
                    fake._release.wait(action[1])
                    self._send(200, _answer(f"A late caption for {name}."), name, "slow")
                elif action == "ok":
                    n = fake.requests[name]
                    self._send(200, _answer(f"A caption for {name}, request {n}."), name, "ok")
                elif action == "malformed":
                    self._send(200, b'{"candidates": [{"content": ', name, action)
                elif action == "empty":
                    self._send(200, b'{"candidates": [], "usageMetadata": {"promptTokenCount": 10}}', name, action)
                else:
                    self._send(int(action), _error(int(action), "SCRIPTED"), name, action)

        return Handler


def _b64(s: str) -> bytes:
    """The SDK sends URL-safe base64, possibly without padding."""
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _answer(text: str) -> bytes:
    return json.dumps({
        "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 530, "candidatesTokenCount": 24, "totalTokenCount": 554},
        "modelVersion": "fake"}).encode()


def _key_error(code: int) -> bytes:
    """Google's answer to a key it does not accept (400 carries the reason API_KEY_INVALID)."""
    status = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED"}.get(code, "PERMISSION_DENIED")
    err = {"code": code, "message": "API key not valid. Please pass a valid API key.", "status": status}
    if code == 400:
        err["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                           "domain": "googleapis.com"}]
    return json.dumps({"error": err}).encode()


def _error(code: int, status: str) -> bytes:
    err = {"code": code, "message": f"scripted {code}", "status": status}
    if code == 429:
        err["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.01s"}]
    return json.dumps({"error": err}).encode()


def make_tiny_second(root, n: int = 6, size: int = 16, seed: int = 0):
    """A tiny SECOND-layout folder for the caption tests: ``n`` pairs (two thirds train, the rest val) of
    random ``size``² PNGs with index labels, and a ``scene_log.jsonl`` in mini-SECOND's format. Returns
    ``{name: (im1_bytes, im2_bytes)}`` for :meth:`FakeGemini.register_pair`."""
    from pathlib import Path

    import numpy as np
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    wheres = ("top left", "top right", "centre", "bottom left", "bottom", "right")
    transitions = (("low vegetation", "building"), ("ground", "building"), ("tree", "ground"),
                   ("water", "low vegetation"), ("ground", "playground"), ("building", "ground"))
    index = {"water": 1, "ground": 2, "low vegetation": 3, "tree": 4, "building": 5, "playground": 6}
    images, log_lines = {}, []
    for i in range(n):
        name, split = f"{i:05d}", ("train" if i < (2 * n) // 3 else "val")
        changes = []
        l1, l2 = np.zeros((size, size), np.uint8), np.zeros((size, size), np.uint8)
        for k in range(i % 3):  # 0, 1 or 2 changes
            a, b = transitions[(i + k) % len(transitions)]
            r0, c0 = 2 + 6 * k, 2
            l1[r0:r0 + 4, c0:c0 + 4], l2[r0:r0 + 4, c0:c0 + 4] = index[a], index[b]
            changes.append({"from": a, "to": b, "area": round(16 / size**2, 4), "where": wheres[(i + k) % 6],
                            "bbox": [r0, c0, r0 + 4, c0 + 4]})
        pngs = []
        for folder, arr in (("im1", rng.integers(0, 255, (size, size, 3), np.uint8)),
                            ("im2", rng.integers(0, 255, (size, size, 3), np.uint8)),
                            ("label1", l1), ("label2", l2)):
            f = root / split / folder / f"{name}.png"
            f.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(f)
            pngs.append(f.read_bytes())
        images[name] = (pngs[0], pngs[1])
        log_lines.append(json.dumps({"pair": name, "split": split, "size": size, "changes": changes,
                                     "ambiguous": [], "pseudo_changes": [{"kind": "illumination", "gain": 1.1}]}))
    (root / "scene_log.jsonl").write_text("\n".join(log_lines) + "\n")
    return images
