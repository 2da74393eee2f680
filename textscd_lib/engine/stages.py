"""The stages around the trainer, each with explicit inputs and outputs (chapter 05; ``textscd features``,
``textscd train``, ``textscd predict``).

    data (textscd data synth | prepare-second)  ->  captions (textscd caption)  ->  text features (textscd
    features)  ->  train (textscd train)  ->  predict (textscd predict)  ->  analyse (textscd evaluate)

- :func:`check_data_folder` — a prepared data folder (train/ and val/) or a refusal naming the command that
  makes one;
- :func:`make_text_features` — a caption store -> one text-feature file, which also records how it was made
  (caption source, the substitutes for Gemini and CLIP) so that the trainer can say so in its run;
- :func:`load_features_input` / :func:`record_inputs` — what the trainer reads and records of its inputs;
- :func:`predict_to_folder` — a checkpoint + a data folder -> predicted maps in the SECOND layout (RGB), what
  ``textscd evaluate`` reads, in the precision the run validated with.

``textscd_lib.course.pipeline`` chains them for the notebooks.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from textscd_lib.common.device import pick_device
from textscd_lib.common.outputs import guard_output_dir, guard_output_file, mark_output_dir
from textscd_lib.common.paths import resolve
from textscd_lib.common.runs import clear_substitute, record_substitute, record_substitute_line
from textscd_lib.data.dataset import DecodedCache
from textscd_lib.data.second import SecondFormatError, find_pairs, scan
from textscd_lib.engine.checkpoints import load_model
from textscd_lib.engine.config import PRECISIONS
from textscd_lib.engine.export import export_predictions
from textscd_lib.text.captions import caption_substitute
from textscd_lib.text.encoder import TextEncoder, load_text_encoder
from textscd_lib.text.features import (
    TextFeatures,
    build_text_features,
    check_features_data,
    check_text_features,
    store_data_record,
)
from textscd_lib.text.store import CaptionStore, load_captions

log = logging.getLogger(__name__)

MAKE_DATA = "textscd data synth --out DIR (mini-SECOND) or textscd data prepare-second SRC --out DIR (SECOND)"
MAKE_FEATURES = "textscd caption DATA --backend oracle --out CAPTIONS.jsonl, then textscd features CAPTIONS.jsonl --out FILE"

# what `data` records in a run when the data folder is a mini-SECOND (as data.synthetic.resolve_data_root says it)
MINI_SECOND = ("mini-SECOND (synthetic, seeded)", "SECOND", "SECOND is not on this machine; pass DATA_ROOT to use it")


def check_data_folder(data_root: str | Path) -> Path:
    """``data_root`` as a checked folder with train/ and val/ splits (the trainer's first input); a clear
    error naming the command that makes one when it is missing or not prepared."""
    if not str(data_root):
        raise FileNotFoundError(f"no data folder given (--data-root): make one with {MAKE_DATA}")
    root = resolve(data_root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such data folder; make one with {MAKE_DATA}")
    pairs, problems = scan(root)
    if problems:
        raise SecondFormatError(f"{root}: invalid dataset (textscd data validate {root} lists the problems)",
                                problems)
    splits = {p.split for p in pairs}
    if not {"train", "val"} <= splits:
        raise FileNotFoundError(f"{root}: no train/ and val/ splits (found {sorted(splits) or 'no pairs'}); "
                                f"make the working layout with {MAKE_DATA}")
    return root


# --------------------------------------------------------------------------------------------- features
def store_source(captions: str | Path) -> tuple[str, dict | None]:
    """(source name as ``ensure_captions`` spells it, e.g. ``noisy-0.3``; its substitute record or None for
    Gemini) of a caption store, read from its records."""
    path = resolve(captions)
    records = CaptionStore(path).latest() if path.is_file() else {}
    if not records:
        raise FileNotFoundError(f"{path}: no caption store (make it with textscd caption DATA --out {path.name})")
    backends = sorted({str(r.get("backend")) for r in records.values()})
    if len(backends) != 1:
        raise ValueError(f"{path}: captions from several sources {backends}; one store holds one source")
    backend = backends[0]
    params = next(iter(records.values())).get("params") or {}
    source = f"noisy-{params.get('noise', 0.3)}" if backend == "noisy" else backend
    return source, caption_substitute(backend, **{k: v for k, v in params.items() if k != "backend"})


def make_text_features(captions: str | Path, out: str | Path, encoder: str | TextEncoder = "auto",
                       source: str | None = None, captions_record: dict | None | bool = False,
                       force: bool = True) -> TextFeatures:
    """Encode a caption store once per unique caption into the text-feature file ``out`` (``textscd features``,
    chapter 03). The file also records how it was made (``.provenance``): the caption source, its substitute
    for Gemini (``captions_record``; by default read from the store) and the text encoder's substitute for
    CLIP — what :func:`record_inputs` writes into a training run. ``out`` may not be the store, and an existing
    ``out`` must be a text-feature file (replaced only with ``force``; the command line asks for ``--force``)."""
    captions = resolve(captions)
    guard_output_file(resolve(out), "text-feature file", inputs=[captions], force=force, recognise=is_features_file)
    texts = load_captions(captions)
    if not texts:
        failed = len(CaptionStore(captions).failed())
        raise ValueError(f"{captions}: no caption with status ok ({failed} pairs failed); nothing to encode - "
                         "caption again (textscd caption) before making features")
    found_source, found_record = store_source(captions)
    enc = load_text_encoder(encoder, device="cpu") if isinstance(encoder, str) else encoder
    provenance = {"source": source or found_source, "captions_file": str(captions),
                  "captions": found_record if captions_record is False else captions_record,
                  "encoder": enc.name, "text_encoder": enc.substitute, "data": store_data_record(captions)}
    tf = build_text_features(enc, texts, resolve(out))
    if getattr(tf, "provenance", None) != provenance:
        tf.provenance = provenance
        tf.save(resolve(out))
    return tf


def is_features_file(path: Path) -> bool:
    """True when ``path`` loads as a text-feature file of :class:`TextFeatures` (an output of ours)."""
    try:
        TextFeatures.load(path)
    except (ValueError, FileNotFoundError):
        return False
    return True


def is_prediction_folder(folder: Path) -> bool:
    """A folder written by :func:`predict_to_folder` before output markers existed: only label1/, label2/."""
    children = {p.name for p in folder.iterdir()}
    return bool(children) and children <= {"label1", "label2"} and all((folder / c).is_dir() for c in children)


def load_features_input(cfg) -> TextFeatures | None:
    """The trainer's text input: None for the Baseline, else ``cfg.text_features`` loaded (refused, naming the
    commands that make it, when missing). Its recorded caption source must be ``cfg.captions``."""
    if cfg.model == "baseline":
        return None
    if not cfg.text_features:
        raise FileNotFoundError(f"TextSCD needs text features (--text-features FILE): make them with {MAKE_FEATURES}")
    path = resolve(cfg.text_features)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such text-feature file; make it with {MAKE_FEATURES}")
    tf = TextFeatures.load(path)
    made_from = (getattr(tf, "provenance", None) or {}).get("source")
    if made_from and made_from != cfg.captions:
        raise ValueError(f"{path}: features of the caption source {made_from!r}, but the run says captions="
                         f"{cfg.captions!r}; pass the matching features or captions")
    return tf


def record_inputs(run_path: Path, model: str, data_root: Path, text_features: TextFeatures | None,
                  image_substitutes: list[str], writer: bool = True) -> list[str]:
    """Record in the run what stood in for the paper's setting, as the trainer's inputs say (parts ``data``,
    ``captions``, ``text_encoder``, ``image_encoder``); returns the text encoder's substitute lines."""
    prov = (getattr(text_features, "provenance", None) or {}) if text_features is not None else {}
    text_subs = [prov["text_encoder"]] if prov.get("text_encoder") else []
    if not writer:
        return text_subs
    if (data_root / "mini_second.json").is_file():
        record_substitute(run_path, "data", *MINI_SECOND)
    else:
        clear_substitute(run_path, "data")
    parts: list = []
    if text_features is not None and not prov:
        log.warning("%s: the features do not record their captions and text encoder (made by an older "
                    "version); the run's record of those parts is left as it was", text_features.path)
    elif text_features is not None:  # the Baseline reads no text: those parts stay as recorded
        if prov.get("captions"):
            record_substitute(run_path, "captions", **prov["captions"])
        else:
            clear_substitute(run_path, "captions")  # Gemini: the paper's source
        parts = [("text_encoder", text_subs)]
    else:
        parts = []
    for part, lines in [("image_encoder", image_substitutes), *parts]:
        for line in lines:
            record_substitute_line(run_path, part, line)
        if not lines:
            clear_substitute(run_path, part)
    return text_subs


# -------------------------------------------------------------------------------------------- predict
def predict_to_folder(checkpoint: str | Path, data_root: str | Path, out: str | Path,
                      text_features: str | Path | TextFeatures | None = None, split: str = "val",
                      device: str = "auto", batch_size: int = 8, force: bool = True,
                      precision: str | None = None) -> Path:
    """A checkpoint's predicted maps for one split of a data folder, in the SECOND layout with RGB colours:
    ``out/{label1,label2}/NAME.png`` (``textscd predict``; ``textscd evaluate`` reads them). TextSCD needs the
    text features of that data's captions. ``out`` may not be, contain or lie in the data folder or the other
    inputs; an existing ``out`` must be a prediction folder (updated only with ``force``, which the notebooks'
    pipeline relies on and the command line asks for as ``--force``).

    ``precision`` (``auto``, ``bf16``, ``fp32``; None: the one the run was trained with, as its checkpoint
    records it) is resolved on ``device`` as the trainer resolves it for validation, so the maps of a
    checkpoint predicted on the device type it was trained on are the maps its validation scored. The device
    and the precision are checked before anything is written."""
    dev = pick_device(device)
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    root = resolve(data_root)
    tf_path = None if text_features is None or isinstance(text_features, TextFeatures) else resolve(text_features)
    out = guard_output_dir(resolve(out), "prediction folder", inputs=[root, resolve(checkpoint), tf_path],
                           force=force, recognise=is_prediction_folder)
    model = load_model(checkpoint)
    if not (root / split).is_dir() and split:
        raise FileNotFoundError(f"{root}: no {split}/ split; make the data with {MAKE_DATA}")
    tf = text_features
    if model.kind != "baseline":
        if tf is None:
            raise FileNotFoundError(f"{checkpoint}: a TextSCD checkpoint needs --features FILE (the text features "
                                    f"of {root.name}'s captions; make them with {MAKE_FEATURES})")
        tf = tf if isinstance(tf, TextFeatures) else TextFeatures.load(resolve(tf))
        check = check_text_features(tf, [p.name for p in find_pairs(root, split)], split=split,  # refuses
                                    allow_empty=tf.provenance.get("source") == "empty")  # another dataset's
        for line in check.lines():
            log.warning("%s: %s", tf.path, line)
        check_features_data(tf, root)  # another mini-SECOND's features with the same pair names: refused
        trained = model.checkpoint.get("text_features")
        if trained and tf.encoder_name != trained:
            raise ValueError(f"text features of the encoder {tf.encoder_name!r}, but the model was trained with "
                             f"{trained!r}; make them with textscd features --encoder {trained}")
    else:
        tf = None
    data = DecodedCache(root, split)
    precision = precision or model.checkpoint.get("config", {}).get("precision", "auto")
    mark_output_dir(out, "prediction folder", command="textscd predict", data=str(root), split=split)
    return export_predictions(model, data, tf, out, dev, batch_size, precision)


def default_run_name(prefix: str = "train") -> str:
    """A fresh run name, ``train-YYYYmmdd-HHMMSS`` (``textscd train`` without ``--run-name``)."""
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def features_origin(path: str | Path) -> tuple[str, str]:
    """(caption source, text encoder name) a text-feature file was made from (``unknown`` source when the
    file does not record it); ``textscd train`` records them in the run's config."""
    tf = TextFeatures.load(resolve(path)) if resolve(path).is_file() else None
    if tf is None:
        raise FileNotFoundError(f"{resolve(path)}: no such text-feature file; make it with {MAKE_FEATURES}")
    return (tf.provenance or {}).get("source", "unknown"), tf.encoder_name
