"""The text-feature cache: ``F_text`` computed once per unique caption and stored per encoder (chapter 03,
``notebooks/03_encoders.ipynb``; training reads it in chapter 05).

The text encoder of eq. (5) is frozen (:mod:`textscd_lib.text.encoder`), so its output for a caption never
changes: :func:`build_text_features` encodes each unique caption once (plus the empty caption, used for pairs
without one) and writes ``(B, 50, D_t)`` fp16 features and masks to one file, keyed by the encoder and a hash
of the captions (:func:`captions_hash`). :class:`TextFeatures` looks the features up by pair name.

Text must reach the model or the run stops: :func:`check_text_features` compares the features with the pairs a
run will read (unknown pair names, empty captions, captions cut by the 50-token window, duplicate names) before
training, refuses above :data:`MAX_MISSING_FRACTION` and otherwise returns the warning that the caller records
in the run's warnings (:func:`textscd_lib.common.runs.record_warning`). :func:`check_features_data` compares the
data the features were made for (the scene-log digest their caption store recorded) with the data a run reads:
features of another mini-SECOND with the same pair names are refused with both digests.

A feature file is read with ``weights_only=True`` only: loading it never runs code.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from textscd_lib.common.io import atomic_torch_save
from textscd_lib.common.runs import clear_warning, record_warning
from textscd_lib.text.encoder import TextEncoder
from textscd_lib.text.store import CaptionStore

log = logging.getLogger(__name__)


class TextFeatures:
    """Cached per-caption ``F_text`` (fp16 on disk) with lookup by pair name (chapters 03, 05)."""

    def __init__(self, encoder_name: str, key: str, captions_hash: str, texts: list[str],
                 features: torch.Tensor, mask: torch.Tensor, index: dict[str, int],
                 cut: list[int] | None = None) -> None:
        self.encoder_name, self.key, self.captions_hash = encoder_name, key, captions_hash
        self.texts, self.features, self.mask, self.index = texts, features, mask, index
        self.cut = cut  # per text: tokens beyond the window (None: not recorded by an older cache)
        self.path: Path | None = None
        self.provenance: dict = {}  # how the file was made (engine.stages.make_text_features): source, substitutes
        self.empty_index = texts.index("")
        self.dim = features.shape[-1]
        self.context_length = features.shape[1]

    def state(self) -> dict:
        return {"encoder_name": self.encoder_name, "key": self.key, "captions_hash": self.captions_hash,
                "texts": self.texts, "features": self.features.cpu().half(), "mask": self.mask.cpu(),
                "index": self.index, "cut": self.cut, "provenance": self.provenance}

    def save(self, path: str | Path) -> Path:
        return atomic_torch_save(path, self.state())

    @classmethod
    def load(cls, path: str | Path) -> TextFeatures:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no text-feature cache (build it with build_text_features)")
        try:
            s = torch.load(path, map_location="cpu", weights_only=True)  # never unpickles objects: no code runs
            tf = cls(s["encoder_name"], s["key"], s["captions_hash"], s["texts"], s["features"],
                     s["mask"], s["index"], s.get("cut"))
        except Exception as e:
            why = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
            if "weights_only" in why or "Weights only" in why:
                why = "it holds pickled Python objects, which are never unpickled"
            raise ValueError(f"{path}: not a text-feature cache ({why}); make it again with textscd features") \
                from None
        tf.path = path
        tf.provenance = s.get("provenance") or {}
        return tf

    def to(self, device) -> TextFeatures:
        """Move the tables to ``device`` once, so that :meth:`lookup` is a gather there."""
        self.features, self.mask = self.features.to(device), self.mask.to(device)
        return self

    def missing(self, names) -> list[str]:
        """The pair names that have no caption here (they would read the empty caption)."""
        return [n for n in names if n not in self.index]

    def lookup(self, names) -> tuple[torch.Tensor, torch.Tensor]:
        """``F_text`` float32 (B, 50, D) and mask (B, 50) for pair names; no caption -> the empty caption."""
        idx = torch.tensor([self.index.get(n, self.empty_index) for n in names], dtype=torch.long,
                           device=self.features.device)
        return self.features[idx].float(), self.mask[idx]


def features_path(run_path: str | Path, encoder_name: str, source: str) -> Path:
    """Where a run caches the features of one caption source: ``results/<run>/cache/text_features/
    <encoder>__<source>.pt`` (chapter 03 writes it, chapters 05-07 read it)."""
    return Path(run_path) / "cache" / "text_features" / f"{encoder_name}__{source}.pt"


def scene_log_digest(data_root: str | Path) -> str | None:
    """16 hex digits of ``DATA/scene_log.jsonl`` (a mini-SECOND), as an offline caption store records it in its
    ``params`` (``text.captions.offline_params``); None for data without a scene log."""
    f = Path(data_root) / "scene_log.jsonl"
    return hashlib.sha256(f.read_bytes()).hexdigest()[:16] if f.is_file() else None


def store_data_record(captions: str | Path) -> dict:
    """What a caption store says of the data it captioned: ``{"scene_log": digest or None}`` (the params of its
    records); ``textscd features`` records it in the feature file's provenance as ``data``."""
    records = CaptionStore(Path(captions)).latest() if Path(captions).is_file() else {}
    digests = {(r.get("params") or {}).get("scene_log") for r in records.values()}
    return {"scene_log": digests.pop() if len(digests) == 1 else None}


_WARNED: set[str] = set()  # feature files already warned about (once per process)


def check_features_data(tf: TextFeatures, data_root: str | Path) -> str | None:
    """Refuse (:class:`TextFeaturesMismatch`, with both digests) text features made for another dataset than
    ``data_root``: the scene-log digest recorded at ``textscd features`` time (or, for a file made before it was
    recorded, in its caption store when that is still there) must be the data's. A file that records nothing
    is warned about once and returns the warning line; None when the data match or nothing can be compared."""
    recorded = (tf.provenance or {}).get("data")
    store = (tf.provenance or {}).get("captions_file")
    if recorded is None and store and Path(store).is_file():
        recorded = store_data_record(store)
    src = str(tf.path) if tf.path else f"text features ({tf.encoder_name})"
    if recorded is None:
        line = (f"{src}: the features do not record the data they were made for (an older file); the data "
                f"fingerprint cannot be compared: make them again with textscd features to check it")
        if src not in _WARNED:
            _WARNED.add(src)
            log.warning("%s", line)
        return line
    made_for, now = recorded.get("scene_log"), scene_log_digest(data_root)
    if made_for and made_for != now:
        raise TextFeaturesMismatch(
            f"{src}: features made for data with scene log {made_for} (captions {store or 'unknown'}), but "
            f"{data_root} has " + (f"scene log {now}" if now else "no scene log") + ": another dataset with "
            "the same pair names? Make its captions and features (textscd caption, then textscd features)")
    return None


def captions_hash(encoder_key: str, captions: dict[str, str]) -> str:
    """16 hex digits identifying an encoder and a caption set {pair: caption} (chapter 03): the cache key."""
    blob = json.dumps([encoder_key, sorted(captions.items())], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def build_text_features(encoder: TextEncoder, captions: dict[str, str], path: str | Path,
                        batch_size: int = 64) -> TextFeatures:
    """Encode each unique caption once and cache the result at ``path`` (chapter 03). Reuses ``path`` when
    it holds the same encoder and captions (key = encoder + hash of the captions)."""
    path = Path(path)
    h = captions_hash(encoder.key, captions)
    if path.is_file():
        try:
            cached = TextFeatures.load(path)
            if cached.captions_hash == h and cached.key == encoder.key and cached.cut is not None:
                log.info("text features: reusing %s", path)
                return cached
        except ValueError as e:
            log.warning("%s", e)
    texts = sorted(set(captions.values()) | {""})
    feats, masks = [], []
    for i in range(0, len(texts), batch_size):
        f, m = encoder.encode(texts[i: i + batch_size])
        feats.append(f.cpu().half())
        masks.append(m.cpu())
    pos = {t: i for i, t in enumerate(texts)}
    tf = TextFeatures(encoder.name, encoder.key, h, texts, torch.cat(feats), torch.cat(masks),
                      {n: pos[c] for n, c in captions.items()}, _cut_tokens(encoder, texts))
    tf.save(path)
    tf.path = path
    log.info("text features: %d captions (%d unique) -> %s", len(captions), len(texts), path)
    return tf


def _cut_tokens(encoder, texts: list[str]) -> list[int] | None:
    """Per text, how many tokens fall outside the encoder's window (None when the encoder cannot say)."""
    try:
        return [len(encoder.truncated(t)) if t else 0 for t in texts]
    except (AttributeError, NotImplementedError):
        return None


# ------------------------------------------------------------------------------------------ the check
MAX_MISSING_FRACTION = 0.05  # above 5 % of a split's pairs unknown / empty / duplicated, training refuses


class TextFeaturesMismatch(ValueError):
    """The text features do not fit the pairs a run reads; the message gives the numbers and the fix."""


@dataclass
class TextCheck:
    """What :func:`check_text_features` found for one set of pairs (chapter 05)."""

    source: str
    pairs: int
    unknown: list[str] = field(default_factory=list)     # no caption in the features (read the empty one)
    empty: list[str] = field(default_factory=list)       # a caption, but it is ""
    cut: dict[str, int] = field(default_factory=dict)    # pair -> tokens beyond the window
    duplicates: list[str] = field(default_factory=list)  # names listed more than once
    cut_known: bool = True
    allow_empty: bool = False
    extra: list[str] = field(default_factory=list)       # captioned pairs that are not among the names

    def lines(self) -> list[str]:
        """One sentence per kind of problem, with counts and example names."""
        def part(names, what):
            ex = ", ".join(repr(n) for n in list(names)[:3])
            return f"{len(names)} of {self.pairs} pairs {what} (e.g. {ex})"
        out = []
        if self.unknown:
            out.append(part(self.unknown, "have no caption in the features and read the empty caption"))
        if self.empty:
            out.append(part(self.empty, "have an empty caption" + (" (allowed: empty text on purpose)"
                                                                     if self.allow_empty else "")))
        if self.cut:
            most = max(self.cut.values())
            out.append(part(self.cut, f"have a caption cut by the token window (up to {most} tokens lost)"))
        if self.duplicates:
            out.append(part(self.duplicates, "are listed more than once"))
        if self.extra:
            ex = ", ".join(repr(n) for n in self.extra[:3])
            out.append(f"{len(self.extra)} captioned pairs are not among the {self.pairs} pairs read (e.g. {ex})")
        if not self.cut_known:
            out.append("caption lengths were not recorded in these features (an older cache): rebuild them to "
                       "check for cut captions")
        return out

    def as_record(self) -> dict:
        return {"source": self.source, "pairs": self.pairs, "unknown": len(self.unknown),
                "empty": len(self.empty), "cut": len(self.cut), "duplicates": len(self.duplicates),
                "extra": len(self.extra),
                "allow_empty": self.allow_empty, "examples": {"unknown": self.unknown[:3], "empty": self.empty[:3],
                                                            "cut": list(self.cut)[:3]}}


def check_text_features(tf: TextFeatures, names, allow_empty: bool = False, split: str = "",
                        max_fraction: float = MAX_MISSING_FRACTION) -> TextCheck:
    """Check that ``tf`` gives a caption to every pair of ``names`` before a run reads them (chapter 05).

    Refuses (:class:`TextFeaturesMismatch`, with the numbers and the fix) when more than ``max_fraction`` of
    the pairs are unknown to the features (say, features built for another dataset), or duplicated, or read
    an empty caption — unless ``allow_empty`` (a run on empty text on purpose: the caption ablation's
    ``empty`` source). Cut captions never refuse (the paper's 50-token window cuts by design); they are
    counted. Returns the :class:`TextCheck`; :func:`record_text_check` records it in the run."""
    names = list(names)
    src = str(tf.path) if tf.path else f"text features ({tf.encoder_name})"
    seen: set[str] = set()
    dup = sorted({n for n in names if n in seen or seen.add(n)})
    unknown = [n for n in dict.fromkeys(names) if n not in tf.index]
    known = [n for n in dict.fromkeys(names) if n in tf.index]
    empty = [n for n in known if tf.texts[tf.index[n]] == ""]
    cut = {n: tf.cut[tf.index[n]] for n in known if tf.cut and tf.cut[tf.index[n]] > 0}
    chk = TextCheck(src, len(seen), unknown, empty, cut, dup, tf.cut is not None, allow_empty,
                    sorted(set(tf.index) - seen))
    n = max(chk.pairs, 1)
    where = f" {split}" if split else ""
    too_many = []
    if len(unknown) > max_fraction * n:
        too_many.append("unknown")
    if len(dup) > max_fraction * n:
        too_many.append("duplicated")
    if not allow_empty and len(unknown) + len(empty) > max_fraction * n:
        too_many.append("without text")
    if too_many:
        raise TextFeaturesMismatch(
            f"{src}: the text features do not fit the{where} pairs to read ({', '.join(too_many)} above "
            f"{max_fraction:.0%} of {chk.pairs}): " + "; ".join(chk.lines()) + ". Fix: build the captions and features for this dataset (textscd caption, chapter 03), or train "
            "on empty text on purpose with --allow-empty-text (TrainConfig(allow_empty_text=True)).")
    return chk


def record_text_check(run_path: str | Path, part: str, checks: list[TextCheck]) -> str | None:
    """Record what :func:`check_text_features` found in the run's warnings as ``part`` (or clear ``part``
    when nothing was found); returns the warning line, or None."""
    lines = [f"{c.source}: " + "; ".join(c.lines()) for c in checks if c.lines()]
    if not lines:
        clear_warning(run_path, part)
        return None
    return record_warning(run_path, part, " | ".join(lines), checks=[c.as_record() for c in checks])
