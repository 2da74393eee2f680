"""report.html of `textscd errors` with hostile names in every field (prediction, comparison, truth and
caption paths, method names, tile names, captions): parsed with html.parser, no injected element or attribute
appears, and no absolute machine path is shown."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser

from textscd_lib.analysis.simulate import write_predictions
from textscd_lib.cli.main import main
from textscd_lib.data.synthetic import synthesize

EVIL_IMG = "q<img src=x onerror=alert(1)>"
EVIL_SCRIPT = '"><script>alert(2)<\\script>'
OUR_HANDLERS = {"srt(this)", "tog(this)", "flt()", "srtc(this)"}


class Collect(HTMLParser):
    """Every start tag with its attributes, and the text of <script> elements."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag


def hostile_dataset(tmp):
    """A 4-tile mini-SECOND val split whose tiles, folders and captions carry hostile names."""
    root = synthesize(tmp / f"data{EVIL_IMG}", 4, 48, seed=5, val_fraction=1.0)
    gt = root / "val"
    for i, old in enumerate(sorted(p.stem for p in (gt / "label1").iterdir())):
        new = (EVIL_IMG, EVIL_SCRIPT, f"t{i}'onmouseover='x", f"t{i}&amp;")[i]
        for f in ("im1", "im2", "label1", "label2"):
            shutil.move(gt / f / f"{old}.png", gt / f / f"{new}.png")
    log = root / "scene_log.jsonl"
    if log.exists():
        log.unlink()                                    # its pair names no longer match
    names = sorted(p.stem for p in (gt / "label1").iterdir())
    caps = tmp / f"caps{EVIL_SCRIPT}.jsonl"
    caps.write_text("".join(json.dumps({"pair": n, "status": "ok", "caption": f"A building <b>{EVIL_IMG}</b> "
                                        f"{EVIL_SCRIPT} on the lawn."}) + "\n" for n in names))
    return root, gt, names, caps


def test_hostile_names_in_every_field_produce_no_element_or_attribute(tmp_path):
    root, gt, names, caps = hostile_dataset(tmp_path)
    pred, comp = tmp_path / f"A{EVIL_IMG}", tmp_path / f"B{EVIL_SCRIPT}"
    write_predictions(gt, pred, "label1", seed=1)
    write_predictions(gt, comp, "im1", seed=2, blobs=2.0)
    out = tmp_path / "out"
    assert main(["errors", "--pred", str(pred), "--compare", str(comp), "--gt", str(root), "--captions", str(caps),
                 "--names", f"{EVIL_IMG},{EVIL_SCRIPT}", "--out", str(out), "--workers", "1", "--top", "2"]) == 0
    page = (out / "report.html").read_text()
    p = Collect()
    p.feed(page)
    tags = [t for t, _ in p.tags]
    assert tags.count("script") == 1                                 # ours, in the head
    for tag, attrs in p.tags:
        assert "onerror" not in attrs and "onmouseover" not in attrs, (tag, attrs)
        for k, v in attrs.items():
            if k.startswith("on"):
                assert v in OUR_HANDLERS, (tag, k, v)
        if tag == "img":
            assert attrs["src"].startswith("data:image/"), attrs["src"][:60]
    assert not any(t == "b" and "caption" in str(a) for t, a in p.tags)
    assert str(tmp_path) not in page                                  # no absolute machine path
    assert "A" + EVIL_IMG.replace("<", "&lt;").replace(">", "&gt;") in page   # the name is shown, as text
    assert len(page) > 0 and all(n.replace("<", "&lt;").replace(">", "&gt;").replace("&amp;", "&amp;amp;")
                                 in page.replace("&#x27;", "'").replace("&quot;", '"') for n in names)
