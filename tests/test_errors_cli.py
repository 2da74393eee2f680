"""`textscd errors` on predictions in the layouts other methods write: the same records whatever wrote the PNGs,
a self-contained report, and bad prediction folders refused with one line per problem and nothing written."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from textscd_lib.analysis.simulate import write_predictions
from textscd_lib.cli.main import main
from textscd_lib.data.synthetic import synthesize


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("errors-cli")
    root = synthesize(tmp / "data", 6, 64, seed=3, ambiguity=0.5, val_fraction=1.0)
    gt = root / "val"
    for layout in ("label1", "im1", "im1_rgb"):          # one simulated method, three layouts
        write_predictions(gt, tmp / f"A-{layout}", layout, seed=1)
    write_predictions(gt, tmp / "B", "im1", seed=2, blobs=0.5)
    names = sorted(p.stem for p in (gt / "label1").iterdir())
    caps = [{"pair": n, "status": "ok", "caption": "New buildings replace the grass." if i % 2 else ""}
            for i, n in enumerate(names)]
    (tmp / "captions.jsonl").write_text("".join(json.dumps(c) + "\n" for c in caps))
    return tmp, root, names


def run(tmp, root, pred, out, *extra):
    return main(["errors", "--pred", str(pred), "--gt", str(root), "--out", str(out), "--workers", "1", *extra])


def test_same_records_whatever_layout_wrote_the_pngs(data, capsys):
    tmp, root, _ = data
    tables = {}
    for layout in ("label1", "im1", "im1_rgb"):
        assert run(tmp, root, tmp / f"A-{layout}", tmp / f"out-{layout}") == 0
        tables[layout] = [pd.read_csv(tmp / f"out-{layout}" / "errors" / f) for f in ("tiles.csv", "components.csv")]
    err = capsys.readouterr().err
    assert "im1/ im2/" in err and "im1_rgb/ im2_rgb/" in err and "label1/ label2/" in err   # says what it read
    for layout in ("im1", "im1_rgb"):
        for a, b in zip(tables["label1"], tables[layout]):
            pd.testing.assert_frame_equal(a, b)
    comps = tables["im1"][1]
    fa_miss = comps["error"].isin(["false alarm", "miss"])
    assert len(comps) > 0 and set(comps.loc[fa_miss, "kind"]) <= {"boundary", "isolated"}
    assert (comps["error"] == "wrong class").any() and comps.loc[~fa_miss, "kind"].isna().all()


def test_compare_writes_both_methods_and_a_self_contained_report(data, capsys):
    tmp, root, names = data
    out = tmp / "out-ab"
    assert run(tmp, root, tmp / "A-im1", out, "--compare", str(tmp / "B"), "--names", "TextSCD,Baseline",
               "--captions", str(tmp / "captions.jsonl"), "--rank-by", "difference", "--top", "3") == 0
    printed = capsys.readouterr().out
    assert "TextSCD: SeK" in printed and "Baseline: SeK" in printed and "top tiles by difference" in printed
    tiles = pd.read_csv(out / "errors" / "tiles.csv", dtype={"tile": str})
    assert sorted(tiles["method"].unique()) == ["Baseline", "TextSCD"] and len(tiles) == 2 * len(names)
    comps = pd.read_csv(out / "errors" / "components.csv", dtype={"tile": str}, keep_default_na=False)
    assert set(comps["caption_names"]) <= {"", "predicted", "true", "both", "neither"}
    assert (comps["cause"] != "").all()                               # mini-SECOND has a scene log
    ranking = pd.read_csv(out / "errors" / "ranking.csv", dtype={"tile": str})
    assert ranking["wrong_diff"].abs().is_monotonic_decreasing
    page = (out / "report.html").read_text()
    assert not re.search(r"(src|href)=\"(https?:|//|file:)", page) and "<link" not in page
    crops = page.count('<td data-v="1"><img')                       # component-browser rows with crops
    assert crops > 0 and page.count("data:image/webp;base64,") == 2 * len(names) + crops   # + thumb, panel
    assert "<svg" in page and "What each error type costs" in page
    assert all(f">{n}<" in page for n in names)
    assert Image.open(out / "errors" / "gallery.png").height > 3 * 128


def test_attribution_tolerance_slices_and_both_sek_conventions_are_written(data, capsys):
    tmp, root, _ = data
    out = tmp / "out-costs"
    assert run(tmp, root, tmp / "A-im1", out, "--compare", str(tmp / "B"), "--names", "TextSCD,Baseline") == 0
    att = pd.read_csv(out / "errors" / "attribution.csv")
    assert list(att.columns) == ["method", "error", "mode", "metric", "base", "fixed", "gain"]
    sek = att[(att["metric"] == "SeK") & (att["mode"] == "progressive")]
    for meth in ("TextSCD", "Baseline"):                               # everything fixed: SeK 100
        assert sek[sek["method"] == meth].iloc[-1]["fixed"] == pytest.approx(100.0)
    tol = pd.read_csv(out / "errors" / "tolerance.csv")
    assert list(tol.columns) == ["method", "k", "k_share_of_diagonal", "metric", "value"]
    assert sorted(tol["k"].unique()) == list(range(9))
    sl = pd.read_csv(out / "errors" / "slices.csv")
    assert {"size", "transition", "changed share of tile", "cause"} <= set(sl["slice"])
    summary = json.loads((out / "errors" / "summary.json").read_text())
    assert summary["methods"] == ["TextSCD", "Baseline"]
    meth = summary["per method"]["TextSCD"]
    assert "SeK (7x7, both dates; SECOND protocol, ours)" in meth
    assert "SeK (37 from->to classes; some toolboxes, not comparable)" in meth
    assert sum(meth["share of wrong pixels (%)"].values()) == pytest.approx(100.0)
    assert summary["sanity"]["truth as prediction"]["SeK"] == 100 and summary["sanity"]["truth as prediction"][
        "wrong pixels"] == 0
    assert 0 <= summary["sanity"]["all unchanged"]["OA"] < 100
    page = (out / "report.html").read_text()
    assert "SeK (37 from-&gt;to classes; some toolboxes, not comparable)" in page and "all unchanged" in page


def test_bad_prediction_folder_gives_one_line_per_problem_and_writes_nothing(data, tmp_path, capsys):
    tmp, root, names = data
    pred = tmp_path / "pred"
    write_predictions(root / "val", pred, "im1", seed=1)
    (pred / "im1" / f"{names[0]}.png").unlink()
    Image.fromarray(np.zeros((32, 64), np.uint8)).save(pred / "im2" / f"{names[1]}.png")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(pred / "im2" / "stray.png")
    out = tmp_path / "out"
    assert run(tmp, root, pred, out) == 2
    lines = capsys.readouterr().err.splitlines()
    assert "3 problems" in lines[0]
    assert any(f"im1/{names[0]}.png: missing" in line for line in lines)
    assert any(f"im2/{names[1]}.png: prediction is 64×32, ground truth 64×64" in line for line in lines)
    assert any("im2/stray.png: extra prediction" in line for line in lines)
    assert not out.exists()


def test_extra_files_may_be_allowed_and_difference_needs_a_second_method(data, tmp_path, capsys):
    tmp, root, _ = data
    pred = tmp_path / "pred"
    write_predictions(root / "val", pred, "im1", seed=1)
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(pred / "im1" / "stray.png")
    assert run(tmp, root, pred, tmp_path / "out", "--allow-extra") == 0
    assert run(tmp, root, pred, tmp_path / "out2", "--allow-extra", "--rank-by", "difference") == 2
    assert "needs a second method" in capsys.readouterr().err and not (tmp_path / "out2").exists()


def test_the_error_instrument_imports_no_torch():
    """`textscd errors` reads PNGs and counts pixels: its start-up (every worker process too) loads no torch."""
    import subprocess
    import sys

    code = ("import sys, textscd_lib.analysis.instrument, textscd_lib.cli.errors; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_two_workers_write_the_same_report_and_tables_as_one(data, tmp_path):
    """The tiles and the browser's crop strips go over worker processes; order and content stay the same."""
    tmp, root, _ = data
    outs = {}
    for w in ("1", "2"):
        out = tmp_path / f"w{w}"
        assert main(["errors", "--pred", str(tmp / "A-im1"), "--compare", str(tmp / "B"), "--gt", str(root),
                     "--out", str(out), "--workers", w, "--names", "A,B"]) == 0
        outs[w] = out
    html = (outs["1"] / "report.html").read_text(encoding="utf-8")
    assert html.count("data:image/webp;base64,") > 4          # the browser's crops are in it
    assert (outs["2"] / "report.html").read_text(encoding="utf-8") == html
    for name in ("components.csv", "tiles.csv", "attribution.csv", "tolerance.csv"):
        assert (outs["2"] / "errors" / name).read_bytes() == (outs["1"] / "errors" / name).read_bytes(), name
