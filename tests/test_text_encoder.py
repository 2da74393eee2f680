"""The frozen text encoder, eq. (5), and the text-feature cache (chapter 03).

CLIP is built with random weights (``weights="random"``): the real ViT-B-16 text architecture, offline."""

import time

import pytest
import torch

from textscd_lib.text import encoder as te
from textscd_lib.text import tokens as tk
from textscd_lib.text import weights as tw
from textscd_lib.text.features import TextFeatures, build_text_features

SHORT = "new buildings appear in the top left, replacing low vegetation"
LONG = " ".join(["the low vegetation in the bottom right corner has turned into buildings and a playground"] * 5)


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(0)
    return te.load_text_encoder("clip", weights="random")


@pytest.fixture(scope="module")
def minilm():
    return te.load_text_encoder("minilm")


def test_encoders_are_frozen_and_outputs_carry_no_grad(clip, minilm):
    for enc in (clip, minilm):
        assert not any(p.requires_grad for p in enc.parameters())
        enc.train()
        assert not enc.training  # stays in eval mode: no dropout
        F_text, mask = enc.encode([SHORT])
        assert not F_text.requires_grad and F_text.dtype == torch.float32 and mask.dtype == torch.bool


def test_text_encoder_receives_no_gradient_when_textscd_trains(minilm):
    from textscd_lib.models.textscd import build_model

    model = build_model("textscd", text_dim=minilm.dim, weights=None, width=32, heads=4)
    F_text, mask = minilm.encode([SHORT, ""])
    x = torch.randn(2, 3, 64, 64)
    model(x, x, F_text, mask)["change"].sum().backward()
    assert all(p.grad is None for p in minilm.parameters())
    assert model.tgi["1"].text_proj.weight.grad is not None


def test_clip_50_token_features_equal_the_first_50_of_the_77_token_run(clip):
    import open_clip

    ids77 = open_clip.tokenize([SHORT, LONG], context_length=77)
    full = clip.run_tokens(ids77)
    assert full.shape == (2, 77, 512)
    F_text, mask = clip.encode([SHORT, LONG])
    assert F_text.shape == (2, 50, 512)
    n_short = len(clip.full_tokens(SHORT))
    assert mask[0].sum() == n_short and mask[1].all()
    assert torch.allclose(F_text[0, :n_short], full[0, :n_short], atol=1e-5)
    assert torch.allclose(F_text[1], full[1, :50], atol=1e-5)  # a long caption: positions never interpolated


def test_clip_real_tokens_do_not_depend_on_padding_or_batch(clip):
    alone, m_alone = clip.encode([SHORT])
    batch, _ = clip.encode([LONG, SHORT])
    n = int(m_alone.sum())
    assert torch.allclose(alone[0, :n], batch[1, :n], atol=1e-5)


def test_tokens_and_truncated_words_outside_L_50(clip, minilm):
    for enc in (clip, minilm):
        assert len(enc.tokens(LONG)) == 50 and enc.truncated(LONG)
        assert enc.truncated(SHORT) == [] and "buildings" in enc.tokens(SHORT)
    assert clip.tokens(LONG) + clip.truncated(LONG) == clip.full_tokens(LONG)


def test_clip_tokens_count_a_caption_and_cut_it_at_L_50_without_weights(monkeypatch):
    import open_clip

    def no_weights(*args, **kwargs):
        raise AssertionError("clip_tokens must not build or load a model")

    monkeypatch.setattr(open_clip, "create_model", no_weights)
    monkeypatch.setattr(open_clip, "load_openai_model", no_weights)
    tk.clip_tokenizer.cache_clear()
    short = tk.clip_tokens(SHORT)  # 11 words and one comma, between the start and end markers
    assert len(short) == 13 and not short.truncated and short.seen == SHORT.replace(",", " ,")
    assert short.tokens[:4] == ("<start_of_text>", "new", "buildings", "appear") and short.tokens[-1] == "<end_of_text>"
    long = tk.clip_tokens(LONG)  # 5 x 15 words + 2 markers
    assert len(long) == 77 and long.truncated and long.tokens[-1] == "<end_of_text>"
    assert long.seen.split() == LONG.split()[:49]  # the start marker takes one of the 50 positions
    assert not tk.clip_tokens(" ".join(["building"] * 48)).truncated  # 48 words + 2 markers = 50: fits
    assert tk.clip_tokens(" ".join(["building"] * 49)).truncated  # 51: the end marker falls outside


def test_clip_encoder_tokenises_through_clip_tokens(clip):
    ids, mask = clip.token_ids([SHORT, LONG])
    assert ids[0, :13].tolist() == list(tk.clip_tokens(SHORT).ids) and mask[0].sum() == 13
    assert ids[1].tolist() == list(tk.clip_tokens(LONG).ids[:50]) and mask[1].all()
    assert clip.full_tokens(LONG) == list(tk.clip_tokens(LONG).tokens)
    assert clip.truncated(LONG) == list(tk.clip_tokens(LONG).tokens[50:]) and len(clip.tokens(LONG)) == 50


def test_minilm_gives_per_token_384d_features_with_a_mask(minilm):
    F_text, mask = minilm.encode([SHORT, "", LONG])
    assert F_text.shape == (3, 50, 384) and mask.shape == (3, 50)
    assert mask[1].sum() == 2 and mask[2].all()  # [CLS] [SEP] for the empty caption
    assert minilm.substitute and "MiniLM" in minilm.substitute


def test_text_encoder_says_its_weights_at_info_and_leaves_the_substitute_line_to_the_caller(caplog):
    """The caller records the substitute and the chapter or CLI shows it once; the module repeating it (or a
    WARNING) would show it twice in other words."""
    import logging

    caplog.set_level(logging.INFO, logger="textscd_lib.text.encoder")
    enc = te.load_text_encoder("minilm")
    mine = [r for r in caplog.records if r.name == "textscd_lib.text.encoder"]
    assert any(enc.weights_description in r.getMessage() and r.levelno == logging.INFO for r in mine)
    assert enc.substitute and not any(" instead of " in r.getMessage() for r in mine)
    assert all(r.levelno < logging.WARNING for r in mine)


def test_auto_picks_minilm_offline_in_well_under_a_second(monkeypatch, tmp_path):
    monkeypatch.delenv("TEXTSCD_CLIP_WEIGHTS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.chdir(tmp_path)
    t = time.perf_counter()
    found = te.clip_weights_available()
    assert time.perf_counter() - t < 0.5
    if found is None:  # unless the repo's data/weights holds a real copy
        enc = te.load_text_encoder("auto")
        assert enc.name == "minilm" and "CLIP weights not found offline" in enc.substitute
        with pytest.raises(FileNotFoundError, match="TEXTSCD_CLIP_WEIGHTS"):
            te.load_text_encoder("clip")


def test_clip_weights_are_found_in_the_env_var_and_the_hf_cache(monkeypatch, tmp_path):
    snap = tmp_path / "hf" / "hub" / tw.CLIP_HF_REPO / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "open_clip_model.safetensors").write_bytes(b"x")
    monkeypatch.delenv("TEXTSCD_CLIP_WEIGHTS", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert te.clip_weights_available() == str(snap / "open_clip_model.safetensors")
    own = tmp_path / "mine.pt"
    own.write_bytes(b"x")
    monkeypatch.setenv("TEXTSCD_CLIP_WEIGHTS", str(own))
    assert te.clip_weights_available() == str(own)


def test_unreadable_clip_weights_file_is_named(tmp_path):
    bad = tmp_path / "broken-clip.safetensors"
    bad.write_bytes(b"not weights")
    with pytest.raises(ValueError, match="broken-clip.safetensors"):
        te.load_text_encoder("clip", weights=bad)


def test_feature_cache_encodes_each_unique_caption_once_and_looks_up_by_pair(minilm, tmp_path, monkeypatch):
    calls = []
    real = minilm.encode
    monkeypatch.setattr(minilm, "encode", lambda texts: calls.append(list(texts)) or real(texts))
    captions = {"p1": SHORT, "p2": SHORT, "p3": "a pond dried up"}
    path = tmp_path / "minilm__oracle.pt"
    tf = build_text_features(minilm, captions, path)
    assert sum(len(c) for c in calls) == 3  # SHORT, the pond, and the empty caption
    assert path.is_file() and tf.features.dtype == torch.float16
    F_text, mask = tf.lookup(["p2", "p3", "no-caption"])
    assert F_text.shape == (3, 50, 384) and F_text.dtype == torch.float32
    direct, _ = real([SHORT, "", ])
    assert torch.allclose(F_text[0], direct[0], atol=1e-2)
    assert torch.allclose(F_text[2], direct[1], atol=1e-2) and mask[2].sum() == 2  # missing -> empty caption
    calls.clear()
    again = build_text_features(minilm, captions, path)  # cache hit
    assert calls == [] and torch.equal(again.features, tf.features)
    loaded = TextFeatures.load(path)
    assert loaded.encoder_name == "minilm" and loaded.dim == 384
    build_text_features(minilm, {**captions, "p4": "a new road"}, path)  # captions changed: rebuilt
    assert calls and TextFeatures.load(path).lookup(["p4"])[1].sum() > 2


def test_bad_feature_cache_is_named(tmp_path):
    bad = tmp_path / "clip__oracle.pt"
    bad.write_bytes(b"junk")
    with pytest.raises(ValueError, match="clip__oracle.pt"):
        TextFeatures.load(bad)


def test_caption_tokens_give_the_encoders_tokens_without_loading_any_encoder(clip, minilm, monkeypatch):
    expected = {"clip": clip.tokens, "minilm": minilm.tokens}

    def no_model(*args, **kwargs):
        raise AssertionError("caption_tokens must not load an encoder")

    import open_clip
    import transformers

    monkeypatch.setattr(open_clip, "create_model", no_model)
    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", no_model)
    for name, tokens in expected.items():
        for text in (SHORT, LONG, ""):
            assert tk.caption_tokens(name)(text) == tokens(text), (name, text)
    assert tk.caption_tokens("clip-random")(SHORT) == clip.tokens(SHORT)
    monkeypatch.setattr(te, "clip_weights_available", lambda: None)  # "auto" on a machine without CLIP
    assert tk.caption_tokens("auto")(SHORT) == minilm.tokens(SHORT)
    with pytest.raises(ValueError, match="unknown text encoder 'bert'"):
        tk.caption_tokens("bert")
