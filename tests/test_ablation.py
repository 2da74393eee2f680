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


def _test_time(sek: dict, f_scd: float = 0.8, confusion: dict | None = None):
    """The test-time ablation rows of chapter 07 (fractions, like the chapter's table)."""
    import pandas as pd

    confusion = confusion or {k: 0.25 for k in sek}
    return pd.DataFrame({"SeK": {k: v / 100 for k, v in sek.items()}, "F_scd": {k: f_scd for k in sek},
                         "moved": {k: 0.01 for k in sek}, "amb. partner_confusion": confusion})


def _effect(presence: float, content: float):
    import pandas as pd

    rows = {"oracle": {("vs empty", 2): presence, ("vs oracle", 2): 0.0},
            "shuffled": {("vs empty", 2): presence, ("vs oracle", 2): content},
            "empty": {("vs empty", 2): 0.0, ("vs oracle", 2): presence}}
    return pd.DataFrame(rows).T


def test_verdict_reports_a_gain_below_the_seed_to_seed_noise_as_within_the_noise():
    t = _test_time({"(none)": 48.0, "oracle": 48.3, "empty": 48.4, "shuffled": 48.2})
    verdict = Ab.text_verdict(t, _effect(0.2, 0.05), "oracle", noise=0.7)
    assert verdict[0] == "TextSCD (oracle) − Baseline: +0.30 SeK, within the seed-to-seed noise of ±0.7."
    assert "does not depend on its caption" in verdict[1]
    assert not any("gain over Baseline does not come" in v for v in verdict)  # no gain to explain away
    assert "less than half as far" in verdict[-1]


def test_verdict_says_textscd_reads_its_caption_when_empty_captions_cost_more_than_the_noise():
    t = _test_time({"(none)": 58.2, "oracle": 59.4, "empty": 54.5, "shuffled": 58.35},
                   confusion={"(none)": 0.254, "oracle": 0.223, "empty": 0.19, "shuffled": 0.3})
    verdict = Ab.text_verdict(t, _effect(0.2, 0.3), "oracle", noise=0.7)
    assert verdict[0] == "TextSCD (oracle) − Baseline: +1.20 SeK."
    assert verdict[1] == ("TextSCD uses its caption: oracle captions score +4.90 SeK over empty ones and "
                          "+1.05 SeK over shuffled ones.")
    assert not any("ambiguous pixels" in v for v in verdict)  # 22.3 % < 25.4 % - 2: the text helps there
    assert "as far or farther at level 2" in verdict[-1]


def test_verdict_on_an_undertrained_model_says_nothing_about_text():
    t = _test_time({"(none)": 0.0, "oracle": 0.0, "empty": 0.0, "shuffled": 0.0}, f_scd=float("nan"))
    assert len(Ab.text_verdict(t, _effect(0.0, 0.0), "oracle")) == 1
    assert "undertrained" in Ab.text_verdict(t, _effect(0.0, 0.0), "oracle")[0]


def test_ambiguous_transitions_named_counts_pixels_whose_caption_names_both_classes():
    l1 = np.array([[LV, LV, LV, 0]])
    l2 = np.array([[B, B, B, 0]])
    rec = {"ambiguous": [{"classes": ["low vegetation", "tree"], "drawn_as": "tree"}]}
    labels, log = {"t": (l1, l2)}, {"t": rec, "u": {}}
    assert Ab.ambiguous_transitions_named(["t", "u"], labels, log, {"t": "grass became buildings"}) == (3, 3)
    assert Ab.ambiguous_transitions_named(["t"], labels, log, {"t": "new buildings"}) == (0, 3)


def test_seed_noise_takes_the_measured_spread_of_the_nearest_training_length():
    from textscd_lib.analysis.ablation import SEK_NOISE, SEK_NOISE_BY_EPOCHS, seed_noise

    assert seed_noise(6) == SEK_NOISE_BY_EPOCHS[6] and seed_noise(30) == SEK_NOISE_BY_EPOCHS[30]
    assert seed_noise(1) == seed_noise(10) == SEK_NOISE_BY_EPOCHS[6]      # FAST runs and short runs
    assert seed_noise(50) == SEK_NOISE_BY_EPOCHS[30]
    assert seed_noise(18) == max(SEK_NOISE_BY_EPOCHS.values())           # a tie takes the larger spread
    assert seed_noise(None) == SEK_NOISE
    # the values are the committed seed study's and runs' ranges, not free constants
    import json
    from pathlib import Path
    study = json.loads((Path(__file__).parents[1] / "results/seed-study/demo-6ep.json").read_text())["spread"]
    assert SEK_NOISE_BY_EPOCHS[6] == max(study["baseline"]["range"], study["textscd"]["range"])
    ours = [[r["SeK"] for r in json.loads((Path(__file__).parents[1] / f"results/{run}/metrics/table1.json")
                                           .read_text())["rows"] if r["source"].startswith("ours")]
            for run in ("cpu-30ep", "cpu-30ep-seed1")]
    assert SEK_NOISE_BY_EPOCHS[30] == round(max(abs(a - b) for a, b in zip(*ours)), 2)


def test_verdict_from_predictions_alone_says_nothing_about_the_tgi():
    """Committed predictions carry no model: the verdict keeps its SeK findings and drops the TGI sentence."""
    t = _test_time({"(none)": 58.2, "oracle": 59.4, "empty": 54.5, "shuffled": 58.35})
    with_model = Ab.text_verdict(t, _effect(0.2, 0.3), "oracle", noise=0.7)
    alone = Ab.text_verdict(t, None, "oracle", noise=0.7)
    assert alone == with_model[:-1] and "Inside" in with_model[-1]


def test_caption_sets_without_a_scene_log_give_each_pair_the_next_pairs_caption(tmp_path, monkeypatch):
    from textscd_lib.text import captions as C

    def fake_store(root, source, run_path, record=True, **opts):  # the run's own captions: one store
        from textscd_lib.text.store import CaptionStore

        path = tmp_path / f"{source}.jsonl"
        store = CaptionStore(path)
        for n in ("a", "b", "c"):
            store.append({"pair": n, "caption": f"caption of {n}", "backend": "gemini", "status": "ok"})
        return path

    monkeypatch.setattr(C, "ensure_captions", fake_store)
    caps, how = Ab.caption_sets(tmp_path, tmp_path, ["a", "b", "c"],
                                Ab.test_time_sources("gemini", [0.3], scene_log=False), scene_log=False)
    assert list(caps) == ["gemini", "shuffled", "empty"]  # no noisy-P without a scene log
    assert caps["shuffled"] == {"a": "caption of b", "b": "caption of c", "c": "caption of a"}
    assert set(caps["empty"].values()) == {""} and "derangement" in how["shuffled"]["made"]


def test_chapters_choose_their_own_models_only_when_chapter_05_made_both(tmp_path):
    with pytest.raises(FileNotFoundError, match="textscd run --only 05"):
        Ab.choose_predictions("run", tmp_path)
    for kind in ("baseline", "textscd"):
        (tmp_path / "checkpoints" / kind).mkdir(parents=True)
        (tmp_path / "checkpoints" / kind / "best.pt").write_bytes(b"")
    assert Ab.choose_predictions("auto", tmp_path) == ("models", None)
    assert Ab.choose_predictions("run", tmp_path) == ("models", None)
    with pytest.raises(FileNotFoundError, match="export_reference_predictions.py --run no-such-run"):
        Ab.choose_predictions("no-such-run", tmp_path)


def test_load_reference_names_the_missing_map(tmp_path):
    import json

    from PIL import Image

    (tmp_path / "baseline" / "label1").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "baseline" / "label1" / "p.png")
    (tmp_path / "manifest.json").write_text(json.dumps({"val_pairs": ["p"], "models": {"baseline": {}}}))
    (tmp_path / "captions.json").write_text("{}")
    with pytest.raises(ValueError, match=r"baseline/label2/p\.png: missing"):
        Ab.load_reference(tmp_path)
    (tmp_path / "baseline" / "label2").mkdir()
    Image.fromarray(np.full((4, 4), 3, np.uint8)).save(tmp_path / "baseline" / "label2" / "p.png")
    _, preds, _ = Ab.load_reference(tmp_path)
    assert preds["baseline"]["p"][1].tolist() == np.full((4, 4), 3).tolist()
