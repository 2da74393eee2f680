"""Caption quality, ambiguous-pixel errors and the TGI text effect (textscd_lib.analysis.ablation, chapter 07)."""

from __future__ import annotations

import numpy as np
import pytest

from textscd_lib.analysis import ablation as Ab

W, G, LV, TR, B = 1, 2, 3, 4, 5  # water, ground, low vegetation, tree, building


def test_ambiguity_errors_count_partner_swaps_on_the_ambiguous_date_only():
    # low vegetation (drawn like trees) -> building: date 1's class is the ambiguous one
    l1 = np.array([[LV, LV, LV, LV, 0]])
    l2 = np.array([[B, B, B, B, 0]])
    p1 = np.array([[LV, TR, W, 0, 0]])   # right, swapped with the partner, other wrong class, miss
    p2 = np.array([[B, B, B, 0, 0]])
    rec = {"ambiguous": [{"classes": ["low vegetation", "tree"], "drawn_as": "tree"}]}
    m1, m2 = Ab.ambiguous_masks(l1, l2, rec)
    assert m1.tolist() == [[True, True, True, True, False]] and not m2.any()
    res = Ab.ambiguity_errors(["t"], {"t": (p1, p2)}, {"t": (l1, l2)}, {"t": rec})
    assert res["pixels"] == 4
    assert res["miss"] == pytest.approx(1 / 4)
    assert res["class_error"] == pytest.approx(2 / 3)
    assert res["partner_confusion"] == pytest.approx(1 / 3)
    assert Ab.ambiguity_errors(["t"], {"t": (p1, p2)}, {"t": (l1, l2)}, {"t": {}})["pixels"] == 0


def test_caption_quality_rewards_naming_the_true_transition_and_nothing_else():
    l1 = np.array([[LV, LV, G, 0]])
    l2 = np.array([[B, B, B, 0]])
    labels = {"t": (l1, l2)}
    right = Ab.caption_quality(labels, {"t": "Grass was replaced by houses; bare soil became buildings."})
    assert right == {"coverage": 1.0, "precision": 1.0, "quality": 1.0}
    half = Ab.caption_quality(labels, {"t": "Grass was replaced by houses next to a new pond."})
    assert half["coverage"] == pytest.approx(2 / 3) and half["precision"] == pytest.approx(2 / 3)
    assert Ab.caption_quality(labels, {"t": ""})["quality"] == 0.0


def test_tgi_text_effect_separates_caption_dependent_change():
    import torch

    from textscd_lib.models.textscd import build_model

    torch.manual_seed(0)
    model = build_model("textscd", text_dim=8, weights=None, width=16).eval()
    x1, x2 = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    mask = torch.ones(2, 5, dtype=torch.bool)
    empty = (torch.zeros(2, 5, 8), mask)
    texts = {"empty": empty, "same": empty, "other": (torch.randn(2, 5, 8), mask)}
    eff = Ab.tgi_text_effect(model, x1, x2, texts)
    vs = eff["vs empty"]
    assert (vs.loc["same"] == 0).all() and (vs.loc["other"] > 0).all()
    assert list(vs.columns) == [1, 2, 3]          # the TGI levels of the paper
    with pytest.raises(ValueError, match="Baseline"):
        Ab.tgi_text_effect(build_model("baseline", text_dim=8, weights=None, width=16), x1, x2, texts)


def test_ambiguity_class_error_is_undefined_when_nothing_was_detected():
    l1, l2 = np.array([[LV, LV]]), np.array([[B, B]])
    nothing = (np.zeros_like(l1), np.zeros_like(l2))
    rec = {"ambiguous": [{"classes": ["low vegetation", "tree"]}]}
    res = Ab.ambiguity_errors(["t"], {"t": nothing}, {"t": (l1, l2)}, {"t": rec})
    assert res["miss"] == 1.0 and np.isnan(res["class_error"]) and np.isnan(res["partner_confusion"])



def test_ablation_row_holds_its_columns_then_caption_quality_metrics_and_ambiguous_errors():
    from textscd_lib.engine.predictions import map_scores

    l1, l2 = np.array([[LV, LV, G, 0]]), np.array([[B, B, B, 0]])
    p1, p2 = np.array([[TR, LV, G, 0]]), np.array([[B, B, B, 0]])
    preds, labels = {"t": (p1, p2)}, {"t": (l1, l2)}
    log = {"t": {"ambiguous": [{"classes": ["low vegetation", "tree"]}]}}
    caption = {"t": "Grass was replaced by houses."}
    row = Ab.ablation_row(preds, labels, log, caption_texts=caption, experiment="test-time captions",
                          model="TextSCD", captions="oracle", **{"nominal quality": 1.0})
    assert list(row)[:4] == ["experiment", "model", "captions", "nominal quality"]
    assert list(row)[4:7] == ["caption quality", "coverage", "precision"]
    q = Ab.caption_quality(labels, caption)
    assert row["caption quality"] == q["quality"] and row["coverage"] == pytest.approx(2 / 3)
    assert {k: row[k] for k in ("F_scd", "mIoU", "OA", "SeK")} == map_scores(preds, labels)
    amb = Ab.ambiguity_errors(["t"], preds, labels, log)
    assert {k: row[f"amb. {k}"] for k in amb} == amb and row["amb. partner_confusion"] == pytest.approx(1 / 2)
    plain = Ab.ablation_row(preds, labels, {}, model="Baseline")
    assert "coverage" not in plain and plain["amb. pixels"] == 0
