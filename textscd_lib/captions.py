"""Change captions: the paper's prompt, the caption store, and the caption sources (chapter 02).

The paper (§4.1, "Text rephrasing") asks Gemini for one sentence per bi-temporal pair with
:data:`PAPER_PROMPT`; the captions become ``F_text`` for the TGI module (eq. 6–7). This module holds:

* :class:`CaptionStore` — one JSONL file per caption set, appended one record per line (atomic, durable,
  a half-written last line from a killed process is detected and repaired), merged deterministically.
* the offline sources that stand in for Gemini when no key is available (``oracle``, ``noisy``,
  ``shuffled``, ``empty``) and an importer for the human captions of SECOND-CC (``second-cc``);
* :func:`caption_dataset` (the ``textscd caption`` command) and :func:`ensure_captions` (the notebooks).

The Gemini backend itself lives in :mod:`textscd_lib.gemini`.
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


# ------------------------------------------------------------------------------------ offline sources
# How a describer names each class (the oracle varies its wording like a VLM does).
_NOUNS = {
    "water": ("water", "a water body", "a pond"),
    "ground": ("bare ground", "bare soil", "bare land"),
    "low vegetation": ("low vegetation", "grassland", "grass"),
    "tree": ("trees", "tree cover", "a patch of trees"),
    "building": ("buildings", "new buildings", "several houses"),
    "playground": ("a playground", "a sports field", "a playground"),
}
_PLURAL = {"trees", "buildings", "new buildings", "several houses"}
_CLASSES = tuple(_NOUNS)
_NO_CHANGE = ("There are no obvious changes between the two images.",
              "The two images show the same scene with no significant differences.",
              "No noticeable changes in buildings, roads or vegetation can be seen.")


def _amount(area: float) -> str:
    return "a small" if area < 0.02 else "an" if area < 0.08 else "a large" if area < 0.2 else "a very large"


def _place(where: str) -> str:
    where = (where or "").strip()
    if where in ("", "center", "centre", "middle"):
        return "in the center"
    return {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom"}.get(
        where, f"in the {where}")


def _clause(ch: dict, rng) -> str:
    a, b = rng.choice(_NOUNS[ch["from"]]), rng.choice(_NOUNS[ch["to"]])
    amount = _amount(float(ch.get("area", 0.05)))
    wheres = ch.get("wheres", [ch.get("where", "")])
    place = _place(wheres[0]) + (f" and {wheres[1]}" if len(wheres) > 1 else "")
    be = "were" if a in _PLURAL else "was"
    forms = (f"{a} {place} {be} replaced by {b}",
             f"{amount} area of {a} {place} turned into {b}",
             f"{b} replaced {a} {place}",
             f"{a} {place} became {b}",
             f"{a} {place} {be} converted to {b}")
    return rng.choice(forms)


def group_changes(changes: list[dict]) -> list[dict]:
    """Merge the regions of one transition: ``{"from", "to", "area": total, "wheres": [≤ 2 places]}``,
    largest total first (a describer says "buildings replaced grass in the top left and the center")."""
    groups: dict[tuple[str, str], dict] = {}
    for ch in sorted(changes, key=lambda c: -float(c.get("area", 0))):
        g = groups.setdefault((ch["from"], ch["to"]), {"from": ch["from"], "to": ch["to"], "area": 0.0, "wheres": []})
        g["area"] += float(ch.get("area", 0))
        where = "center" if ch.get("where") in ("centre", "middle", "", None) else ch["where"]
        if where not in g["wheres"] and len(g["wheres"]) < 2:
            g["wheres"].append(where)
    return sorted(groups.values(), key=lambda g: -g["area"])


def describe_changes(changes: list[dict], rng) -> str:
    """One sentence for a list of ``{"from", "to", "area", "where"}`` changes, in the style Gemini answers
    the paper's prompt (chapter 02). Regions of one transition are merged; the three largest transitions are
    named with their places, the rest summarised."""
    if not changes:
        return rng.choice(_NO_CHANGE)
    groups = group_changes(changes)
    clauses = [_clause(g if i == 0 else {**g, "wheres": g["wheres"][:1]}, rng) for i, g in enumerate(groups[:3])]
    text = clauses[0] if len(clauses) == 1 else ", ".join(clauses[:-1]) + ", and " + clauses[-1]
    if len(groups) > 3:
        text += ", plus a few smaller changes"
    opener = rng.choice(("", "", "Compared with the first image, ", "In the second image, "))
    text = opener + text
    return text[0].upper() + text[1:] + "."


def _scene_log(data_root: Path) -> dict[str, dict]:
    from textscd_lib.synthetic import read_scene_log

    if not (data_root / "scene_log.jsonl").is_file():
        raise FileNotFoundError(f"{data_root / 'scene_log.jsonl'}: oracle captions need the scene log of a "
                                "synthetic mini-SECOND; for real SECOND use --backend gemini or second-cc")
    return read_scene_log(data_root)


def _rng(seed: int, *keys: str):
    import random

    return random.Random(":".join([str(seed), *keys]))  # str seeds are hashed stably (not PYTHONHASHSEED)


def _record(pair, caption: str, backend: str, **extra: Any) -> dict[str, Any]:
    return {"pair": pair.name, "split": pair.split, "caption": caption, "status": "ok", "error": None,
            "source": backend, "backend": backend, "model": None, "prompt": None, **extra}


def oracle_records(data_root: Path, pairs: list, seed: int = 0) -> list[dict[str, Any]]:
    """Oracle captions: the true changes of the scene log put into words — an upper bound on caption
    quality, not a VLM (chapter 02). Deterministic given ``seed``."""
    scenes = _scene_log(data_root)
    missing = [p.name for p in pairs if p.name not in scenes]
    if missing:
        raise ValueError(f"{data_root / 'scene_log.jsonl'}: no entry for {len(missing)} pair(s), e.g. {missing[0]}")
    return [_record(p, describe_changes(scenes[p.name].get("changes", []), _rng(seed, p.name)), "oracle",
                    model="oracle (scene log)") for p in pairs]


def corrupt_changes(changes: list[dict], noise: float, rng) -> tuple[list[dict], list[str]]:
    """Mimic a VLM's mistakes (chapter 07): each change is, with probability ``noise``, omitted or given a
    wrong class (half and half); with probability ``noise`` one invented change is added."""
    out, notes = [], []
    for ch in changes:
        if rng.random() < noise:
            if rng.random() < 0.5:
                notes.append(f"omitted {ch['from']}->{ch['to']}")
                continue
            key = rng.choice(("from", "to"))
            other = "to" if key == "from" else "from"
            wrong = rng.choice([c for c in _CLASSES if c not in (ch[key], ch[other])])
            notes.append(f"swapped {ch[key]}->{wrong} ({key})")
            ch = {**ch, key: wrong}
        out.append(ch)
    if rng.random() < noise:
        a, b = rng.sample(_CLASSES, 2)
        where = rng.choice(("top left", "top right", "bottom left", "bottom right", "center", "top", "bottom"))
        out.append({"from": a, "to": b, "area": round(rng.uniform(0.01, 0.08), 3), "where": where})
        notes.append(f"invented {a}->{b}")
    return out, notes


def noisy_records(data_root: Path, pairs: list, noise: float, seed: int = 0) -> list[dict[str, Any]]:
    """Oracle captions corrupted with probability ``noise`` (:func:`corrupt_changes`); ``noise=0`` gives
    exactly the oracle captions (chapter 07)."""
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise must lie in [0, 1], got {noise}")
    scenes = _scene_log(data_root)
    recs = []
    for p in pairs:
        changes, notes = corrupt_changes(scenes[p.name].get("changes", []), noise, _rng(seed, p.name, "noise"))
        recs.append(_record(p, describe_changes(changes, _rng(seed, p.name)), "noisy",
                            model=f"oracle + noise {noise}", corruptions=notes))
    return recs


def shuffled_records(data_root: Path, pairs: list, seed: int = 0) -> list[dict[str, Any]]:
    """Oracle captions given to the wrong pairs: a derangement, so no pair keeps its own text (chapter 07)."""
    oracle = oracle_records(data_root, pairs, seed)
    order = list(range(len(pairs)))
    _rng(seed, "shuffle").shuffle(order)
    donor = {order[i]: order[(i + 1) % len(order)] for i in range(len(order))}
    return [_record(p, oracle[donor[i]]["caption"], "shuffled", model="oracle, permuted",
                    from_pair=pairs[donor[i]].name) for i, p in enumerate(pairs)]


def empty_records(pairs: list) -> list[dict[str, Any]]:
    """The empty caption for every pair: TextSCD without text (chapter 07)."""
    return [_record(p, "", "empty", model="none") for p in pairs]


def read_second_cc(file: Path, sentence: int = 0) -> dict[str, str]:
    """``{pair: caption}`` from a SECOND-CC caption file (chapter 02): the LEVIR-CC / Karpathy JSON layout
    (``{"images": [{"filename", "sentences": [{"raw"}]}]}``), a ``{name: caption or [captions]}`` JSON, or
    JSONL/CSV with ``name``/``caption`` fields. Pair names are file stems."""
    if not file.is_file():
        raise FileNotFoundError(f"{file}: SECOND-CC caption file not found")
    text = file.read_text(encoding="utf-8")

    def pick(caps) -> str:
        caps = [c.get("raw", c.get("caption", "")) if isinstance(c, dict) else str(c) for c in
                (caps if isinstance(caps, list) else [caps])]
        return caps[min(sentence, len(caps) - 1)].strip() if caps else ""

    out: dict[str, str] = {}
    if file.suffix == ".csv":
        import csv

        for row in csv.DictReader(text.splitlines()):
            out[Path(row["name"]).stem] = row["caption"].strip()
        return out
    try:
        data = json.loads(text)
        rows = data["images"] if isinstance(data, dict) and "images" in data else data
    except json.JSONDecodeError:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    if isinstance(rows, dict):
        return {Path(k).stem: pick(v) for k, v in rows.items()}
    for row in rows:
        name = row.get("filename") or row.get("name") or row.get("pair")
        if name is None:
            raise ValueError(f"{file}: an entry has no filename/name field: {str(row)[:120]}")
        out[Path(name).stem] = pick(row.get("sentences", row.get("captions", row.get("caption", ""))))
    return out


def second_cc_records(file: Path, pairs: list, sentence: int = 0) -> list[dict[str, Any]]:
    """Store records for the pairs that SECOND-CC captions (chapter 02); the others stay missing."""
    caps = read_second_cc(file, sentence)
    recs = [_record(p, caps[p.name], "second-cc", model="human (SECOND-CC)") for p in pairs if p.name in caps]
    if not recs:
        raise ValueError(f"{file}: none of the {len(pairs)} pair names appear in the SECOND-CC file")
    return recs


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


DESCRIBER_VERSION = 3  # bump when the oracle's wording changes: stores made before are rewritten


def offline_params(data_root: Path, backend: str, seed: int = 0, noise: float | None = None,
                   file: str | Path | None = None, sentence: int = 0, **_: Any) -> dict[str, Any]:
    """What an offline store depends on (seed, noise, describer version, a hash of the scene log or of the
    SECOND-CC file); :func:`ensure_captions` rewrites a store whose ``params`` differ."""
    import hashlib

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
        from textscd_lib.gemini import GeminiConfig, caption_with_gemini

        return caption_with_gemini(pairs, store, GeminiConfig(**opts))
    params = offline_params(data_root, backend, **opts)
    seed = int(opts.pop("seed", 0))
    if backend == "oracle":
        records = oracle_records(data_root, pairs, seed)
    elif backend == "noisy":
        records = noisy_records(data_root, pairs, float(opts.pop("noise", 0.3)), seed)
    elif backend == "shuffled":
        records = shuffled_records(data_root, pairs, seed)
    elif backend == "empty":
        records = empty_records(pairs)
    elif backend == "second-cc":
        if not opts.get("file"):
            raise ValueError("backend second-cc needs the SECOND-CC caption file (--cc-file FILE)")
        records = second_cc_records(Path(opts.pop("file")), pairs, int(opts.pop("sentence", 0)))
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
    from textscd_lib.runs import record_substitute

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
            return path
        if find_api_key() is None:
            raise RuntimeError(missing_key_message())
        caption_dataset(data_root, "gemini", path, **opts)
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
