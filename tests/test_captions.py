"""Caption store and offline caption sources (chapter 02): durable appends, deterministic merges, oracle /
noisy / shuffled / empty / SECOND-CC stores that later chapters read exactly like Gemini's."""

from __future__ import annotations

import json
import threading

import pytest
from fake_gemini import make_tiny_second

from textscd_lib.analysis.caption_errors import classes_mentioned
from textscd_lib.text.captions import (
    PAPER_PROMPT,
    CaptionStore,
    caption_dataset,
    ensure_captions,
    load_captions,
)
from textscd_lib.text.sources import describe_changes, read_second_cc

RECORD_KEYS = {"pair", "split", "caption", "status", "error", "source", "backend", "model", "prompt", "time"}


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "data"
    make_tiny_second(r, n=9)
    return r


def _scene(root):
    return {json.loads(line)["pair"]: json.loads(line) for line in (root / "scene_log.jsonl").read_text().splitlines()}


def test_paper_prompt_is_the_instruction_of_section_4_1():
    assert PAPER_PROMPT == ("Change detection task: Use a sentence to summarize the differences in buildings, "
                            "roads, vegetation, etc.")


def test_half_written_last_line_of_a_killed_writer_is_skipped_then_repaired(tmp_path):
    store = CaptionStore(tmp_path / "c.jsonl")
    store.append({"pair": "a", "caption": "one", "status": "ok"})
    store.append({"pair": "b", "caption": "two", "status": "ok"})
    with open(store.path, "ab") as fh:                       # a process killed in the middle of a write
        fh.write(b'{"pair": "c", "capt')
    assert [r["pair"] for r in CaptionStore(store.path).records()] == ["a", "b"]
    again = CaptionStore(store.path)
    again.append({"pair": "c", "caption": "three", "status": "ok"})
    lines = store.path.read_text().splitlines()
    assert [json.loads(x)["pair"] for x in lines] == ["a", "b", "c"]   # every line is valid JSON again
    assert again.captions() == {"a": "one", "b": "two", "c": "three"}


def test_merge_prefers_an_ok_record_then_the_last_one_appended(tmp_path):
    store = CaptionStore(tmp_path / "c.jsonl")
    for rec in ({"pair": "a", "status": "failed", "error": "500"}, {"pair": "a", "caption": "v1", "status": "ok"},
                {"pair": "a", "status": "failed", "error": "429"}, {"pair": "b", "caption": "1", "status": "ok"},
                {"pair": "b", "caption": "2", "status": "ok"}, {"pair": "c", "status": "failed", "error": "x"}):
        store.append(rec)
    latest = store.latest()
    assert list(latest) == ["a", "b", "c"]
    assert latest["a"]["caption"] == "v1" and store.captions() == {"a": "v1", "b": "2"}
    assert store.failed() == {"c": "x"}
    with pytest.raises(ValueError, match="status"):
        store.append({"pair": "d", "status": "maybe"})


def test_concurrent_appends_never_interleave_lines(tmp_path):
    store = CaptionStore(tmp_path / "c.jsonl")

    def writer(t):
        for i in range(40):
            store.append({"pair": f"{t}-{i}", "caption": "x" * 300, "status": "ok"})

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = store.path.read_text().splitlines()
    assert len(lines) == 240 and len({json.loads(x)["pair"] for x in lines}) == 240


def test_oracle_captions_name_every_true_class_and_place_and_are_deterministic(root, tmp_path):
    caption_dataset(root, "oracle", tmp_path / "o.jsonl", seed=0)
    caption_dataset(root, "oracle", tmp_path / "o2.jsonl", seed=0)
    caption_dataset(root, "oracle", tmp_path / "o3.jsonl", seed=7)
    caps, scene = load_captions(tmp_path / "o.jsonl"), _scene(root)
    assert caps == load_captions(tmp_path / "o2.jsonl") and caps != load_captions(tmp_path / "o3.jsonl")
    assert sorted(caps) == sorted(scene)
    for name, cap in caps.items():
        changes = scene[name]["changes"]
        assert cap.endswith(".") and cap[0].isupper()
        if not changes:
            assert "no" in cap.lower()
        for ch in changes:
            assert {ch["from"], ch["to"]} <= classes_mentioned(cap), (cap, ch)
            place = "center" if ch["where"] == "centre" else ch["where"]
            assert f"the {place}" in cap


def test_describe_changes_names_the_three_largest_and_summarises_the_rest():
    import random

    ch = [{"from": "water", "to": "playground", "area": 0.01, "where": "top"},
          {"from": "tree", "to": "building", "area": 0.3, "where": "left"},
          {"from": "low vegetation", "to": "ground", "area": 0.05, "where": "right"},
          {"from": "ground", "to": "building", "area": 0.1, "where": "bottom"}]
    for seed in range(5):
        text = describe_changes(ch, random.Random(seed))
        assert "smaller changes" in text
        assert classes_mentioned(text) == {"tree", "building", "low vegetation", "ground"}, text
    assert describe_changes([], random.Random(0)).startswith(("There are no", "The two images", "No "))


def test_noisy_with_p0_is_the_oracle_and_with_p1_corrupts_every_pair(root, tmp_path):
    caption_dataset(root, "oracle", tmp_path / "o.jsonl")
    caption_dataset(root, "noisy", tmp_path / "n0.jsonl", noise=0.0)
    caption_dataset(root, "noisy", tmp_path / "n1.jsonl", noise=1.0)
    oracle = load_captions(tmp_path / "o.jsonl")
    assert load_captions(tmp_path / "n0.jsonl") == oracle
    noisy = CaptionStore(tmp_path / "n1.jsonl").latest()
    assert all(r["corruptions"] for r in noisy.values())                  # at least an invented change
    assert sum(r["caption"] != oracle[n] for n, r in noisy.items()) == len(oracle)
    with pytest.raises(ValueError, match="noise"):
        caption_dataset(root, "noisy", tmp_path / "bad.jsonl", noise=1.5)


def test_shuffled_captions_are_the_oracle_texts_given_to_other_pairs(root, tmp_path):
    caption_dataset(root, "oracle", tmp_path / "o.jsonl")
    caption_dataset(root, "shuffled", tmp_path / "s.jsonl")
    oracle, shuffled = load_captions(tmp_path / "o.jsonl"), CaptionStore(tmp_path / "s.jsonl").latest()
    assert sorted(r["caption"] for r in shuffled.values()) == sorted(oracle.values())
    assert all(r["from_pair"] != n and r["caption"] == oracle[r["from_pair"]] for n, r in shuffled.items())


def test_empty_source_gives_every_pair_the_empty_caption(root, tmp_path):
    s = caption_dataset(root, "empty", tmp_path / "e.jsonl")
    assert s["ok"] == 9 and set(load_captions(tmp_path / "e.jsonl").values()) == {""}


def test_second_cc_captions_import_from_levir_style_json_and_csv(root, tmp_path):
    levir = {"images": [{"filename": "00001.png", "split": "train",
                         "sentences": [{"raw": " Houses were built. "}, {"raw": "New buildings."}]},
                        {"filename": "00004.png", "sentences": [{"raw": "Nothing changed."}]},
                        {"filename": "99999.png", "sentences": [{"raw": "not in this dataset"}]}]}
    (tmp_path / "cc.json").write_text(json.dumps(levir))
    (tmp_path / "cc.csv").write_text("name,caption\n00002.png,A road appeared.\n")
    assert read_second_cc(tmp_path / "cc.json", sentence=1)["00001"] == "New buildings."
    s = caption_dataset(root, "second-cc", tmp_path / "h.jsonl", file=tmp_path / "cc.json")
    assert (s["ok"], s["missing"]) == (2, 7)
    assert load_captions(tmp_path / "h.jsonl") == {"00001": "Houses were built.", "00004": "Nothing changed."}
    caption_dataset(root, "second-cc", tmp_path / "h2.jsonl", file=tmp_path / "cc.csv")
    assert load_captions(tmp_path / "h2.jsonl") == {"00002": "A road appeared."}
    with pytest.raises(ValueError, match="--cc-file"):
        caption_dataset(root, "second-cc", tmp_path / "h3.jsonl")


@pytest.mark.parametrize("source", ["oracle", "noisy", "shuffled", "empty"])
def test_every_offline_store_has_gemini_s_record_shape_and_covers_both_splits(root, tmp_path, source):
    caption_dataset(root, source, tmp_path / f"{source}.jsonl")
    recs = CaptionStore(tmp_path / f"{source}.jsonl").records()
    assert all(RECORD_KEYS <= set(r) and r["status"] == "ok" and r["source"] == source for r in recs)
    assert {r["split"] for r in recs} == {"train", "val"} and len(recs) == 9


def test_ensure_captions_writes_the_run_store_once_and_records_the_substitute(root, tmp_path):
    run = tmp_path / "results" / "fast"
    p = ensure_captions(root, "noisy-0.3", run)
    assert p == run / "captions" / "noisy-0.3.jsonl" and len(load_captions(p)) == 9
    subs = json.loads((run / "substitutes.json").read_text())
    assert "0.3" in subs["captions"]["used"] and "Gemini" in subs["captions"]["instead_of"]
    mtime = p.stat().st_mtime_ns
    assert ensure_captions(root, "noisy-0.3", run) == p and p.stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="unknown caption source"):
        ensure_captions(root, "gpt", run)


def test_ensure_captions_rewrites_an_offline_store_made_with_other_parameters_or_data(root, tmp_path):
    run = tmp_path / "run"
    first = load_captions(ensure_captions(root, "oracle", run, seed=0))
    assert load_captions(ensure_captions(root, "oracle", run, seed=3)) != first       # other seed
    assert load_captions(ensure_captions(root, "oracle", run, seed=0)) == first
    log = root / "scene_log.jsonl"                                                      # data regenerated
    log.write_text(log.read_text().replace('"building"', '"water"'))
    again = load_captions(ensure_captions(root, "oracle", run, seed=0))
    assert again != first and any("water" in c for c in again.values())


def test_ensure_gemini_captions_without_a_key_uses_a_store_or_says_how_to_get_one(root, tmp_path, monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="GEMINI_API_KEY"):
        ensure_captions(root, "gemini", run)
    with pytest.raises(RuntimeError, match="GEMINI_API_KEY"):   # no empty store was left behind to reuse
        ensure_captions(root, "gemini", run)
    store = CaptionStore(run / "captions" / "gemini.jsonl")
    store.append({"pair": "00000", "caption": "cached", "status": "ok"})
    assert load_captions(ensure_captions(root, "gemini", run)) == {"00000": "cached"}


def test_oracle_on_data_without_scene_log_names_the_missing_file(root, tmp_path):
    (root / "scene_log.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match="scene_log.jsonl"):
        caption_dataset(root, "oracle", tmp_path / "o.jsonl")


# ------------------------------------------------------------------------------ a store read strictly
def _store(tmp_path, lines: list[bytes]):
    path = tmp_path / "caps.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def _rec(pair: str, caption: str | None, status: str = "ok") -> bytes:
    return json.dumps({"pair": pair, "caption": caption, "status": status}, ensure_ascii=False).encode("utf-8")


def test_bytes_that_are_not_utf8_are_an_error_naming_the_file_and_line(tmp_path, capsys):
    from textscd_lib.cli.main import main

    path = _store(tmp_path, [_rec("00000", "a road"), b'{"pair": "00001", "caption": "caf\xe9", "status": "ok"}'])
    with pytest.raises(ValueError, match=r"caps\.jsonl:2: not UTF-8 text \(byte 0xe9"):
        load_captions(path)
    assert main(["features", str(path), "--encoder", "clip-random", "--out", str(tmp_path / "f.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "caps.jsonl:2: not UTF-8" in err[0] and not (tmp_path / "f.pt").exists()


def test_an_unknown_status_is_an_error_naming_the_line_not_a_dropped_pair(tmp_path):
    path = _store(tmp_path, [_rec("00000", "a road"), _rec("00001", "houses", status="OK")])
    with pytest.raises(ValueError, match=r"caps\.jsonl:2: unknown status 'OK' of pair '00001'"):
        load_captions(path)


def test_a_byte_order_mark_is_accepted_silently(tmp_path, caplog):
    path = _store(tmp_path, [b"\xef\xbb\xbf" + _rec("00000", "a road"), _rec("00001", "houses")])
    with caplog.at_level("WARNING"):
        assert load_captions(path) == {"00000": "a road", "00001": "houses"}
    assert not caplog.records


def test_conflicting_duplicates_are_warned_with_their_count_and_the_last_wins(tmp_path, caplog):
    path = _store(tmp_path, [_rec("00000", "a road"), _rec("00001", "houses"), _rec("00000", "a river"),
                             _rec("00001", "houses"), _rec("00002", None, "failed"), _rec("00002", "trees")])
    with caplog.at_level("WARNING"):
        assert load_captions(path) == {"00000": "a river", "00001": "houses", "00002": "trees"}
    text = caplog.text
    assert "1 pair(s) have several ok records with different captions" in text and "00000 on lines 1, 3" in text
    assert "the last one in the file wins" in text


def test_lines_skipped_as_unreadable_are_named_by_number(tmp_path, caplog):
    path = _store(tmp_path, [_rec("00000", "a road"), b"not json", _rec("00001", "houses")])
    with caplog.at_level("WARNING"):
        assert set(load_captions(path)) == {"00000", "00001"}
    assert "skipped 1 line(s) that are not caption records: line 2" in caplog.text


def test_caption_exits_1_saying_the_store_holds_no_caption_when_every_pair_failed(tmp_path, capsys, monkeypatch):
    from fake_gemini import FakeGemini

    from textscd_lib.cli.main import main

    images = make_tiny_second(tmp_path / "data", n=3)
    monkeypatch.setenv("GEMINI_API_KEY", "test-key-not-secret-123")
    with FakeGemini() as fake:
        for name, (a, b) in images.items():
            fake.register_pair(name, a, b, [400])  # a request refused for this pair: stored as failed
        rc = main(["caption", str(tmp_path / "data"), "--out", str(tmp_path / "g.jsonl"), "--base-url", fake.url,
                   "--attempts", "1", "--rpm", "600000"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1
    assert "holds no caption at all (3 of 3 pairs failed in this run)" in err[0]


def test_features_of_a_store_where_every_pair_failed_are_refused_not_written_empty(tmp_path, capsys):
    from textscd_lib.cli.main import main

    path = _store(tmp_path, [_rec("00000", None, "failed"), _rec("00001", None, "failed")])
    assert main(["features", str(path), "--encoder", "clip-random", "--out", str(tmp_path / "f.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no caption with status ok (2 pairs failed)" in err[0]
    assert not (tmp_path / "f.pt").exists()
