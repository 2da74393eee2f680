"""A model's maps in memory and their scores (textscd_lib.engine.predictions, chapters 06 and 07)."""

from __future__ import annotations

import numpy as np
import pytest

from textscd_lib.analysis.ablation import changed_pixels_differ
from textscd_lib.engine import predictions as P


def test_predict_maps_returns_index_maps_per_pair_and_text_moves_nothing_for_baseline(tmp_path):
    import torch

    from textscd_lib.data.dataset import SCDDataset
    from textscd_lib.data.synthetic import synthesize
    from textscd_lib.models.textscd import build_model

    root = synthesize(tmp_path / "mini", pairs=3, size=32, seed=1, val_fraction=0.34)
    ds = SCDDataset(root, "val")
    torch.manual_seed(0)
    model = build_model("baseline", text_dim=8, weights=None, width=16)
    preds = P.predict_maps(model, ds, batch_size=2)
    assert set(preds) == set(ds.names)
    p1, p2 = preds[ds.names[0]]
    assert p1.shape == (32, 32) and p1.dtype == np.uint8 and p1.max() <= 6
    assert changed_pixels_differ(preds, preds) == 0.0
    labels = P.label_maps(ds)
    assert labels[ds.names[0]][0].shape == (32, 32)



W, G, LV, TR, B = 1, 2, 3, 4, 5  # water, ground, low vegetation, tree, building


def _maps():
    rng = np.random.default_rng(0)
    labels, preds = {}, {}
    for n in ("a", "b", "c"):
        change = rng.random((8, 8)) < 0.5
        labels[n] = (np.where(change, LV, 0), np.where(change, B, 0))
        preds[n] = (np.where(rng.random((8, 8)) < 0.6, labels[n][0], TR),
                    np.where(rng.random((8, 8)) < 0.6, labels[n][1], W))
    return preds, labels


def test_map_scores_come_from_one_confusion_summed_over_the_pairs():
    from textscd_lib.metrics import SCDConfusion

    preds, labels = _maps()
    by_hand = SCDConfusion()
    for n in ("a", "c"):
        by_hand.update(*preds[n], *labels[n])
    conf = P.map_confusion(preds, labels, ["a", "c"])
    assert np.array_equal(conf.matrix, by_hand.matrix)
    s = by_hand.scores()
    assert P.map_scores(preds, labels, ["a", "c"]) == {k: s[k] for k in ("F_scd", "mIoU", "OA", "SeK")}
    assert P.map_confusion(preds, labels).matrix.sum() == 2 * 3 * 8 * 8   # default: every pair, both dates


class _FakeEncoder:
    """Stands in for a frozen text encoder: 4-d features, 3 tokens, counts what it encodes."""

    name, key = "fake", "fake:v1:L3"

    def __init__(self):
        self.encoded = 0

    def encode(self, texts):
        import torch

        self.encoded += len(texts)
        return torch.ones(len(texts), 3, 4), torch.ones(len(texts), 3, dtype=torch.bool)


def test_lazy_text_encoder_is_loaded_once_and_only_when_a_caption_set_is_not_cached(tmp_path):
    loads = []

    def loader(name):
        loads.append(name)
        return _FakeEncoder()

    encoder = P.lazy_text_encoder("fake", loader=loader)
    assert loads == []
    captions = {"a": "trees became buildings", "b": ""}
    tf = P.text_features_for(tmp_path, "fake", "oracle", captions, encoder)
    assert loads == ["fake"] and tf.lookup(["a"])[0].shape == (1, 3, 4)
    again = P.text_features_for(tmp_path, "fake", "oracle", captions, encoder)   # from the run's cache
    assert loads == ["fake"] and encoder().encoded == 2 and again.texts == tf.texts
    assert encoder() is encoder()
    with pytest.raises(ValueError, match="trained with 'clip'"):
        P.text_features_for(tmp_path, "clip", "noisy", captions, encoder)


def _val_split(tmp_path):
    import torch

    from textscd_lib.data.dataset import SCDDataset
    from textscd_lib.data.synthetic import synthesize
    from textscd_lib.models.textscd import build_model

    root = synthesize(tmp_path / "mini", pairs=6, size=32, seed=3, val_fraction=0.5)
    torch.manual_seed(0)
    model = build_model("baseline", text_dim=8, weights=None, width=16)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so the maps vary from pixel to pixel
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return SCDDataset(root, "val"), model


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_chapter_maps_and_exported_predictions_score_what_validation_scored(tmp_path, precision):
    """The maps of predict_maps (chapters 06, 07) and of export_predictions (textscd predict), scored, equal
    the trainer's validation scores under the same precision rule (bf16 is what CUDA validates with)."""
    import torch

    from textscd_lib.engine.evaluation import evaluate_source
    from textscd_lib.engine.export import export_predictions
    from textscd_lib.engine.inference import dataset_source
    from textscd_lib.metrics import score_folders

    ds, model = _val_split(tmp_path)
    _, source, feats = dataset_source(ds, None, torch.device("cpu"))
    validated = evaluate_source(model, source, feats, batch_size=2, precision=precision)
    preds = P.predict_maps(model, ds, batch_size=3, precision=precision)
    scored = P.map_scores(preds, P.label_maps(ds))
    assert np.array_equal(P.map_confusion(preds, P.label_maps(ds)).matrix, np.array(validated["confusion"]))
    assert scored == {k: validated[k] for k in scored}
    out = export_predictions(model, ds, out_root=tmp_path / "pred", device="cpu", batch_size=2,
                             precision=precision)
    from_files = score_folders(out, ds.root, split="val")
    assert {k: from_files[k] for k in scored} == {k: validated[k] for k in scored}
