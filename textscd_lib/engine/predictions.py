"""A trained model's maps in memory, and their scores: chapters 06 (metrics and error analysis) and 07 (caption
ablation).

Chapters 06 and 07 do not read the exported PNG predictions of chapter 05; they run the checkpoints on the val
split for any caption set they like and keep the index maps in memory:

- :func:`label_maps` / :func:`predict_maps` — ``{pair: (map1, map2)}`` of the truth and of a model.
- :func:`text_features_for` — the `TextFeatures` of a caption set (the run's cache, or built once).
- :func:`lazy_text_encoder` — the frozen text encoder, loaded only when a caption set is not cached yet.
- :func:`map_confusion` / :func:`map_scores` — one 7×7 confusion over a set of maps, and Table 1's four
  numbers from it (`textscd_lib.metrics`, docs/facts.md#metrics).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from textscd_lib.common.device import pick_device
from textscd_lib.engine.inference import dataset_source, predictions
from textscd_lib.metrics import METRIC_COLUMNS, SCDConfusion, to_numpy
from textscd_lib.text.encoder import load_text_encoder
from textscd_lib.text.features import TextFeatures, build_text_features, features_path


def label_maps(dataset) -> dict[str, tuple]:
    """``{name: (label1, label2)}`` uint8 of an ``SCDDataset`` (chapters 06, 07)."""
    return {name: dataset.raw(i)[2:] for i, name in enumerate(dataset.names)}


def predict_maps(model, dataset, text_features=None, device="cpu", batch_size: int = 8,
                 precision: str = "auto") -> dict[str, tuple]:
    """``{name: (pred1, pred2)}`` uint8 index maps of a model on an ``SCDDataset`` (chapters 06, 07):
    ``pred_k = argmax(sem_k) × (sigmoid(change) > 0.5)`` (`textscd_lib.models.textscd.predict`), through the
    same inference path as validation and ``textscd predict`` (:func:`textscd_lib.engine.inference.predictions`:
    bf16 on CUDA, fp32 elsewhere). ``text_features`` (a `TextFeatures`) is looked up by pair name; Baseline
    ignores it."""
    device = pick_device(device) if isinstance(device, str) else device
    names, source, feats = dataset_source(dataset, text_features, device)
    out: dict[str, tuple] = {}
    for batch, p1, p2 in predictions(model.to(device), source, feats, batch_size, precision):
        p1, p2 = p1.to(torch.uint8).cpu().numpy(), p2.to(torch.uint8).cpu().numpy()
        out.update({names[i]: (p1[k], p2[k]) for k, i in enumerate(batch["idx"])})
    return out


def map_confusion(preds: Mapping[str, tuple], labels: Mapping[str, tuple], names: Sequence[str] | None = None):
    """One `SCDConfusion` (7×7, both dates) summed over the pairs ``names`` (default: every pair of ``preds``)
    — the matrix all four of Table 1's numbers come from (chapters 06, 07; docs/facts.md#metrics)."""

    conf = SCDConfusion()
    for n in preds if names is None else names:
        conf.update(*(to_numpy(x) for x in preds[n]), *(to_numpy(x) for x in labels[n]))
    return conf


def map_scores(preds: Mapping[str, tuple], labels: Mapping[str, tuple],
               names: Sequence[str] | None = None) -> dict[str, float]:
    """F_scd, mIoU, OA and SeK (fractions) of a set of maps against the truth, from one
    :func:`map_confusion` (chapter 07 scores every caption swap with it)."""
    s = map_confusion(preds, labels, names).scores()
    return {k: s[k] for k in METRIC_COLUMNS}


def text_features_for(run_path, encoder_name: str, source: str, captions: Mapping[str, str], encoder=None):
    """`TextFeatures` of a caption set (chapters 06, 07): the run's cache
    ``cache/text_features/<encoder>__<source>.pt`` when it holds exactly these captions, else built with
    ``encoder`` (a `TextEncoder`, or a zero-argument function returning one, called only when needed)."""

    path = features_path(run_path, encoder_name, source)
    if path.is_file():
        try:
            tf = TextFeatures.load(path)
            if tf.encoder_name == encoder_name and all(
                    n in tf.index and tf.texts[tf.index[n]] == c for n, c in captions.items()):
                return tf
        except ValueError:
            pass
    if encoder is None:
        raise ValueError(f"{path}: no cached features for these captions and no text encoder to build them")
    enc = encoder() if callable(encoder) and not hasattr(encoder, "encode") else encoder
    if enc.name != encoder_name:
        raise ValueError(f"text encoder {enc.name!r} given, but the model was trained with {encoder_name!r}")
    return build_text_features(enc, dict(captions), path)


def lazy_text_encoder(name: str = "auto", loader: Callable | None = None) -> Callable:
    """A zero-argument function that loads the frozen text encoder ``name`` on its first call and returns the
    same encoder afterwards (chapter 07: loading MiniLM/CLIP is skipped while every caption set is in the
    feature cache). Pass it as ``encoder`` to :func:`text_features_for`. ``loader`` defaults to
    `textscd_lib.text.encoder.load_text_encoder`."""
    loaded: list = []

    def encoder():
        if not loaded:
            if loader is None:
                loaded.append(load_text_encoder(name))
            else:
                loaded.append(loader(name))
        return loaded[0]

    return encoder
