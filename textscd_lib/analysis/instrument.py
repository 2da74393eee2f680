"""The error-analysis instrument over folders of predictions from any method (chapter 06; ``textscd errors``).

:func:`analyse_folders` pairs the predictions with the truth (`textscd_lib.metrics.match_predictions`: label1/
label2/, or im1/ im2/ and im1_rgb/ im2_rgb/ as the SECOND reference protocol's prediction scripts write them),
checks everything before reading a map, computes the records of every tile (`textscd_lib.analysis.records`) for
method A and, with ``compare``, method B, ranks the tiles (`textscd_lib.analysis.errors.rank_tiles`), draws the
gallery of the top tiles (`textscd_lib.analysis.gallery`) and renders report.html
(`textscd_lib.analysis.report`). :func:`write_outputs` writes it all at the end, each file atomically, so a
failure leaves nothing half-written. The records are the same whatever produced the PNGs.

A **binary change folder** (a change-only method: one 0/1 or 0/255 mask per pair) is read too, alone or beside a
semantic method. It gets what applies to it: false alarms and misses as components (boundary / isolated), the
change scores (IoU_c, change F1, mIoU), the attribution of the four change-only error types and the tolerance
curve on those scores. Its wrong-class counts and its semantic scores (OA, SeK, F_scd, the 37-class SeK) are
not applicable: NaN in the CSVs, null in summary.json, "n/a" in report.html — never a zero.
"""

from __future__ import annotations

import functools
import html
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from textscd_lib.analysis import attribution as A
from textscd_lib.analysis import gallery as G
from textscd_lib.analysis import report as R
from textscd_lib.analysis.errors import ERROR_CATEGORIES, FALSE_ALARM, RANKINGS, error_map, rank_tiles
from textscd_lib.analysis.records import (
    BOUNDARY_PX,
    COMPONENT_COLUMNS,
    distance_to,
    maps_of_change_mask,
    tile_analysis,
)
from textscd_lib.common.io import atomic_write, atomic_write_json, atomic_write_text
from textscd_lib.data.second import image_files, read_image, read_label
from textscd_lib.data.synthetic import read_scene_log
from textscd_lib.metrics import (
    METRIC_COLUMNS,
    NOT_APPLICABLE,
    change_confusion,
    match_predictions,
    read_change_mask,
    read_truth,
    scores_from_change_masks,
    scores_from_confusion,
    scores_from_transitions,
)
from textscd_lib.text.store import load_captions

THUMB_PX, PANEL_PX, GALLERY_PX, CROP_PX = 56, 96, 128, 40
CROPS_PER_TYPE = 20       # component-browser rows with crops: the largest N per error type and method
BROWSER_ROWS = 600        # component-browser rows per error type and method (the largest)
NA = "n/a"                # what report.html shows for a score that does not apply (a binary method's SeK)
SUMMARY_KEYS = ("OA", "mIoU", "SeK", "F_scd", "IoU_c", "change_F1", "pixels", "binary", "nan_reasons")
SEK_LABELS = {"SeK": "SeK (7x7, both dates; SECOND protocol, ours)",
              "SeK_37": "SeK (37 from->to classes; some toolboxes, not comparable)"}


@dataclass
class Analysis:
    """What :func:`analyse_folders` found: per method (A, then B) the tile and component tables, the totals,
    the ranking of A's tiles, the gallery image and the report page."""

    methods: list[str]
    tiles: dict[str, pd.DataFrame]
    components: dict[str, pd.DataFrame]
    scores: dict[str, dict]
    ranking: pd.DataFrame
    rank_by: str
    gallery: object
    html: str
    facts: list[str] = field(default_factory=list)
    attribution: pd.DataFrame | None = None
    tolerance: pd.DataFrame | None = None
    slices: pd.DataFrame | None = None
    extra: dict = field(default_factory=dict)      # sanity lines, both SeK conventions, shares (summary.json)


def find_scene_log(gt_root: Path) -> dict[str, dict] | None:
    """The mini-SECOND scene log next to the ground truth (GT or its parents, two levels), or None."""
    for d in (gt_root, *list(gt_root.parents)[:2]):
        if (d / "scene_log.jsonl").is_file():
            return read_scene_log(d)
    return None


@functools.lru_cache(maxsize=16)
def _listing(folder: Path) -> dict[str, Path]:
    """``image_files(folder)``, listed once per process: the crops of every tile look their images up in it."""
    return image_files(folder)


def _images(gt_label_dir: Path, name: str, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    out = []
    for f in ("im1", "im2"):
        p = _listing(gt_label_dir / f).get(name)
        out.append(read_image(p) if p else np.full((*shape, 3), 200, np.uint8))
    return out[0], out[1]


def read_prediction(paths: tuple, label: tuple, binary: bool) -> tuple[np.ndarray, np.ndarray]:
    """A tile's predicted index maps, or for a binary change folder the scoring maps of its change mask
    (`textscd_lib.analysis.records.maps_of_change_mask`)."""
    if binary:
        return maps_of_change_mask(read_change_mask(paths[0]), label)
    return read_label(paths[0]), read_label(paths[1])


def _tile_job(job: tuple) -> tuple:
    """Records, confusions, fix deltas, thumbnail and report panel of one tile (a picklable job for the pool)."""
    name, gt_paths, img_dir, pa, pb, caption, scene, boundary_px, names, binary = job
    label = read_truth(*gt_paths)
    preds = [read_prediction(pa, label, binary[0])] + ([read_prediction(pb, label, binary[1])] if pb else [])
    change = label[0] > 0              # distances to the true change and into it: the same for both methods
    dist, depth = distance_to(change), distance_to(~change)
    res = [tile_analysis(name, p, label, caption, scene, boundary_px, dist, depth, b) for p, b in zip(preds, binary)]
    im1, im2 = _images(img_dir, name, label[0].shape)
    comps_a = pd.DataFrame(res[0].components, columns=list(COMPONENT_COLUMNS))
    iso = {e: set(comps_a.loc[(comps_a["error"] == e) & (comps_a["kind"] == "isolated"), "id"])
           for e in ("false alarm", "miss")}
    thumb = R.data_uri(G._square(G.outlined(im2, error_map(*preds[0], *label), iso, THUMB_PX), THUMB_PX))
    panel = G.tile_row(im1, im2, label, preds[0], comps_a, preds[1] if pb else None, names, PANEL_PX,
                       binary=binary)
    truth_wrong = int((error_map(*label, *label) >= FALSE_ALARM).sum())   # the truth scored as a prediction
    return name, res, truth_wrong, thumb, R.data_uri(panel)


def analyse_folders(pred: str | Path, gt: str | Path, compare: str | Path | None = None,
                    captions: str | Path | None = None, names: tuple[str, str] = ("A", "B"),
                    split: str | None = None, rank_by: str = "false-alarm-area", top: int = 8,
                    boundary_px: int = BOUNDARY_PX, strict: bool = True, workers: int = 1,
                    progress: bool = False, log=print, layout: str | tuple | None = None) -> Analysis:
    """Error records, ranking, gallery and report for the predictions in ``pred`` (and ``compare``) against
    ``gt`` (chapter 06, ``textscd errors``). ``captions``: a caption store (JSONL) of the tiles; the scene log
    is found next to ``gt`` when there is one. ``strict``: extra prediction files are a problem too.
    ``workers`` > 1 spreads the tiles over processes. ``log`` receives what was read (layouts, sources).
    ``layout``: the prediction layout (`textscd_lib.metrics.LAYOUT_NAMES`; None or "auto" = the first found),
    one for both folders or a pair (A's, B's); a binary change folder is analysed for what applies to it (see
    the module docstring)."""
    if rank_by not in RANKINGS:
        raise ValueError(f"unknown ranking {rank_by!r}; choose one of {', '.join(RANKINGS)}")
    if rank_by == "difference" and compare is None:
        raise ValueError("--rank-by difference needs a second method (--compare DIR)")
    methods = [names[0]] + ([names[1]] if compare is not None else [])
    m, facts, read = _match(pred, compare, gt, split, strict, layout, methods)
    binary = (m[0]["binary"], len(m) > 1 and m[1]["binary"])
    if rank_by == "sek" and binary[0]:
        raise ValueError(f"--rank-by sek: {pred} is a binary change folder (no classes, SeK not applicable); "
                         "rank by false-alarm-area, isolated-false-alarms, miss-area or difference")
    for line in read:
        log(line)
    caps = load_captions(captions) if captions else None
    gt_dir = Path(next(iter(m[0]["gt"].values()))[0]).parent.parent
    scene_log = find_scene_log(gt_dir)
    facts.append(f"truth: {_shown(gt_dir, gt)}; scene log: {'yes' if scene_log else 'none (no cause column)'}; "
                 f"captions: {Path(captions).name if captions else 'none'}; boundary = within {boundary_px} px")
    log(facts[-1])
    jobs = [(n, m[0]["gt"][n], gt_dir, m[0]["pred"][n], m[1]["pred"][n] if compare else None,
             caps.get(n) if caps is not None else None, (scene_log or {}).get(n), boundary_px, names, binary)
            for n in m[0]["names"]]
    results = _run(jobs, workers, progress)
    tiles, comps, pooled = {}, {}, {}
    for k, meth in enumerate(methods):
        tiles[meth] = pd.DataFrame([r[1][k].row for r in results]).set_index("tile")
        comps[meth] = pd.DataFrame([c for r in results for c in r[1][k].components], columns=list(COMPONENT_COLUMNS))
        pooled[meth] = _pool([r[1][k] for r in results])
    scores = {meth: method_scores(pooled[meth]["H"], b) for meth, b in zip(methods, binary)}
    costs = _costs(tiles, comps, pooled, methods, sum(r[2] for r in results), binary)
    ranking = rank_tiles(tiles[methods[0]], rank_by, compare=tiles.get(names[1]))
    gallery = _gallery(ranking.index[:top], m, gt_dir, tiles, comps, caps, names, compare is not None)
    browser = _browser(comps, m, gt_dir, methods, workers)
    details = {n: _details(n, comps[methods[0]], caps) for n in tiles[methods[0]].index}
    table = _tile_table(tiles, methods)
    page = R.render(f"False detections: {' vs '.join(methods)}", facts, summaries(tiles, comps, scores, methods),
                    table.loc[ranking.index], list(table.columns), {r[0]: r[3] for r in results},
                    {r[0]: r[4] for r in results}, details,
                    costs=R.Costs(costs["attribution"], costs["tolerance"], costs["extra"], methods, browser,
                                  [meth for meth, b in zip(methods, binary) if b]))
    return Analysis(methods, tiles, comps, scores, ranking, rank_by, gallery, page, facts, costs["attribution"],
                    costs["tolerance"], costs["slices"], costs["extra"])


def _match(pred, compare, gt, split, strict: bool, layout, methods: list[str]) -> tuple[list, list, list]:
    """`textscd_lib.metrics.match_predictions` of ``pred`` (and ``compare``) in ``layout`` (one for both, or a
    pair), the report's lines saying what was read and the same with full paths (for the log)."""
    lays = tuple(layout) if isinstance(layout, (tuple, list)) else (layout, layout)
    m = [match_predictions(p, gt, split, strict=strict, layout=lay)
         for p, lay in zip([pred] + ([compare] if compare else []), lays)]
    facts, read = [], []
    for meth, mm, folder in zip(methods, m, (pred, compare)):
        dirs = list(dict.fromkeys(mm["pred_dirs"]))          # a binary folder is one folder for both dates
        facts.append(f"{meth}: {', '.join(_shown(d, folder) for d in dirs)} — {mm['layout']}")
        read.append(f"{meth}: read {' and '.join(map(str, dirs))} ({mm['layout']})")
    return m, facts, read


def _shown(path: Path, given: str | Path | None) -> str:
    """``path`` as the user named it: relative to the folder given on the command line (its name first), so no
    absolute machine path reaches the report."""
    given = Path(given) if given is not None else Path(path)
    try:
        rel = Path(path).resolve().relative_to(given.resolve())
    except ValueError:
        return Path(path).name + "/"
    return f"{given.name}/{rel.as_posix()}/".replace("/./", "/") if str(rel) != "." else f"{given.name}/"


def method_scores(H: np.ndarray, binary: bool = False) -> dict:
    """A method's pooled scores: `textscd_lib.metrics.scores_from_confusion` of its 7×7 ``H`` plus the change
    scores of `textscd_lib.metrics.scores_from_change_masks` (IoU_c, change precision / recall / F1; from ``H``
    over both dates, as IoU_c is). ``binary``: the change scores alone (each pixel once), the semantic ones NaN
    as not applicable, exactly what ``textscd evaluate`` reports for the folder."""
    if binary:     # both dates of a binary method's scoring maps carry the same change: each pixel counts twice
        return scores_from_change_masks(change_confusion(H) // 2)
    change = scores_from_change_masks(change_confusion(H))
    return {**scores_from_confusion(H), "binary": False,
            **{k: change[k] for k in ("change_precision", "change_recall", "change_F1")}}


def not_applicable(scores: dict, key: str) -> bool:
    """Whether ``scores[key]`` is NaN because it does not apply (a binary method's semantic score)."""
    return scores.get("nan_reasons", {}).get(key, "").startswith(NOT_APPLICABLE.split(":")[0])


def _pool(res: list) -> dict:
    """The tiles of one method pooled: H, T, the fix deltas per type and per tolerance bin, and the component
    deltas (in component order)."""
    k = len(A.ERROR_TYPES)
    return {"H": sum((r.H for r in res), np.zeros((7, 7), np.int64)),
            "T": sum((r.T for r in res), np.zeros((37, 37), np.int64)),
            "type": sum((r.type_delta for r in res), np.zeros((k, 7, 7), np.int64)),
            "tolerance": sum((r.tolerance_delta for r in res), np.zeros((len(A.TOLERANCE_PX), 7, 7), np.int64)),
            "components": np.concatenate([r.component_delta.reshape(-1, 49) for r in res] or [np.zeros((0, 49))])}


def _costs(tiles: dict, comps: dict, pooled: dict, methods: list[str], truth_wrong: int,
           binary: tuple = (False, False)) -> dict:
    """Attribution, tolerance curve, slices and the summary lines (sanity, both SeK conventions, shares);
    ``binary[k]``: method k is change-only (its semantic lines NaN / None: not applicable)."""
    first = tiles[methods[0]]
    side = math.hypot(*[math.sqrt(first["pixels"].mean())] * 2) if len(first) else 0.0
    share = (first["changed"] / first["pixels"]).to_dict() if len(first) else {}
    att, tol, sl, extra = [], [], [], {"SeK conventions": SEK_LABELS, "per method": {}}
    for meth, b in zip(methods, binary):
        p = pooled[meth]
        att.append(A.attribution_table(p["H"], p["type"], meth, b))
        tol.append(A.tolerance_curve(p["H"], p["tolerance"], side, meth, b))
        sl.append(A.slice_table(p["H"], comps[meth], p["components"], share, meth, b))
        extra["per method"][meth] = _method_lines(p, tiles[meth], comps[meth], b)
    sanity = A.sanity_scores(pooled[methods[0]]["H"])   # the truth's lines: the same whichever method
    sanity["truth as prediction"]["wrong pixels"] = truth_wrong
    extra["sanity"] = {k: {m: (round(v, 4) if isinstance(v, float) else v) for m, v in d.items()}
                       for k, d in sanity.items()}
    return {"attribution": pd.concat(att, ignore_index=True), "tolerance": pd.concat(tol, ignore_index=True),
            "slices": pd.concat(sl, ignore_index=True), "extra": extra}


def _method_lines(p: dict, t: pd.DataFrame, c: pd.DataFrame, binary: bool) -> dict:
    """One method's summary lines: both SeK conventions (NaN for a binary method), wrong pixels and components
    by error type and their shares (wrong class None for a binary method)."""
    px = {"false alarm boundary": int(t["fa_boundary_px"].sum()), "false alarm isolated":
          int(t["fa_isolated_px"].sum()), "miss boundary": int(t["miss_boundary_px"].sum()),
          "miss isolated": int(t["miss_isolated_px"].sum()),
          "wrong class": None if binary else int(t["wc_px"].sum())}
    sek = (float("nan"),) * 2 if binary else (scores_from_confusion(p["H"])["SeK"], scores_from_transitions(p["T"])["SeK"])
    return {SEK_LABELS["SeK"]: round(100 * A._clean(sek[0]), 4), SEK_LABELS["SeK_37"]: round(100 * A._clean(sek[1]), 4),
            "wrong pixels by type": px, "share of wrong pixels (%)": {k: round(v, 4) for k, v in A.shares(px).items()},
            "components by type": c.assign(_t=(c["error"] + " " + c["kind"].fillna("")).str.strip())["_t"]
            .value_counts().to_dict()}


def _browser(comps: dict, m: list, gt_dir: Path, methods: list[str], workers: int = 1) -> pd.DataFrame:
    """The component browser's rows: per method and error type the :data:`BROWSER_ROWS` largest components,
    the :data:`CROPS_PER_TYPE` largest of them with a crop strip (``crop``: a data URI, else ""). The strips
    are cut tile by tile (each tile's images and truth decoded once for both methods), over ``workers``."""
    parts, want = [], {}
    for k, meth in enumerate(methods):
        c = comps[meth].assign(method=meth, type=(comps[meth]["error"] + " " + comps[meth]["kind"].fillna(""))
                               .str.strip(), crop="")
        c = c.sort_values(["type", "area", "tile", "id"], ascending=[True, False, True, True], kind="stable")
        c = c.groupby("type", sort=False).head(BROWSER_ROWS).reset_index(drop=True)
        rank = c.groupby("type", sort=False).cumcount()
        for i, r in c[rank < CROPS_PER_TYPE].iterrows():
            want.setdefault(r.tile, []).append((k, i, (r.r0, r.c0, r.r1, r.c1)))
        parts.append(c)
    jobs = [(tile, m[0]["gt"][tile], gt_dir, [(m[k]["pred"][tile], m[k]["binary"]) for k in range(len(methods))],
             boxes) for tile, boxes in sorted(want.items())]
    for strips in _map(_crop_job, jobs, workers):
        for k, i, uri in strips:
            parts[k].at[i, "crop"] = uri
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _crop_job(job: tuple) -> list[tuple[int, int, str]]:
    """The crop strips ``(method index, row, data URI)`` of one tile's components (a picklable pool job)."""
    tile, gt_paths, img_dir, preds, boxes = job
    label = read_truth(*gt_paths)
    im1, im2 = _images(img_dir, tile, label[0].shape)
    read = {k: read_prediction(preds[k][0], label, preds[k][1]) for k in {k for k, _, _ in boxes}}
    return [(k, i, R.data_uri(G.component_strip(im1, im2, label, read[k], box, CROP_PX, preds[k][1]), quality=70))
            for k, i, box in boxes]


def _map(fn, jobs: list, workers: int, bar=lambda it: it) -> list:
    """``[fn(job) for job in jobs]``, over ``workers`` processes when there are several (order kept)."""
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            return list(bar(pool.map(fn, jobs, chunksize=max(1, len(jobs) // (8 * workers)))))
    return [fn(j) for j in bar(jobs)]


def _run(jobs: list, workers: int, progress: bool) -> list:
    from tqdm import tqdm

    bar = (lambda it: tqdm(it, total=len(jobs), desc="tiles", unit="tile")) if progress else (lambda it: it)
    return _map(_tile_job, jobs, workers, bar)


def _gallery(tops, m, gt_dir, tiles, comps, caps, names, has_b):
    rows = []
    a = names[0]
    binary = (m[0]["binary"], has_b and m[1]["binary"])
    for n in tops:
        label = read_truth(*m[0]["gt"][n])
        pa = read_prediction(m[0]["pred"][n], label, binary[0])
        pb = read_prediction(m[1]["pred"][n], label, binary[1]) if has_b else None
        im1, im2 = _images(gt_dir, n, label[0].shape)
        t = tiles[a].loc[n]
        score = f"change F1 {_pct(t['change_F1'])} (binary)" if binary[0] else f"SeK {_pct(t['SeK'])}"
        title = (f"{n} · {a}: false alarm {int(t['false alarm'])} px ({int(t['fa_isolated'])} isolated), miss "
                 f"{int(t['miss'])} px, {score}")
        c = comps[a][comps[a]["tile"] == n]
        row = G.tile_row(im1, im2, label, pa, c, pb, names, GALLERY_PX, title, binary)
        if caps is not None:
            pred_cls, true_cls = _classes_of(c)
            row = G.beside(row, G.caption_panel(caps.get(n), pred_cls, true_cls, 220, GALLERY_PX))
        rows.append(row)
    return G.stack(rows, G.legend()) if rows else None


def _pct(v) -> str:
    return "NaN" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def _classes_of(c: pd.DataFrame) -> tuple[set[str], set[str]]:
    """The classes of the false alarms' predicted transitions and of the misses' true transitions."""
    pred_cls = {x for t in c.loc[c["error"] == "false alarm", "predicted"] for x in t.split("→")}
    true_cls = {x for t in c.loc[c["error"] == "miss", "true"] for x in t.split("→")}
    return pred_cls, true_cls


def _details(name: str, comps: pd.DataFrame, caps) -> str:
    c = comps[comps["tile"] == name]
    pred_cls, true_cls = _classes_of(c)
    cap = R.caption_html(caps.get(name) if caps is not None else None, pred_cls, true_cls)
    big = c.sort_values("area", ascending=False).head(6)
    cols = ["error", "kind", "area", "distance_px", "predicted", "true", "event", "cause", "caption_names"]
    rows = "".join("<tr>" + "".join(f"<td class=l>{html.escape(str(v))}</td>" for v in r) + "</tr>"
                   for r in big[cols].round(1).itertuples(index=False))
    head = "".join(f"<th class=l>{k}</th>" for k in cols)
    return (f"<p>caption (magenta: names a false alarm's class, cyan: a missed class): {cap}</p>"
            + (f"<table><tr>{head}</tr>{rows}</table>" if len(big) else "<p>no error components</p>"))


def _tile_table(tiles: dict, methods: list[str]) -> pd.DataFrame:
    """The report's tile table: per method SeK ("n/a" for a binary method, which gets its change F1 beside),
    false alarm, isolated false alarms and miss; with two methods their difference in wrong pixels (false
    alarm + miss + wrong class; without wrong class when one method is binary)."""
    out = pd.DataFrame(index=tiles[methods[0]].index)
    for meth in methods:
        t = tiles[meth]
        binary = _is_binary(t)
        out[f"{meth} SeK"] = NA if binary else 100 * t["SeK"]
        if binary:
            out[f"{meth} change F1"] = 100 * t["change_F1"]
        out[f"{meth} false alarm px"] = t["false alarm"]
        out[f"{meth} isolated FA"] = t["fa_isolated"]
        out[f"{meth} miss px"] = t["miss"]
    if len(methods) == 2:
        wrong = [c for c in ERROR_CATEGORIES[2:] if not any(_is_binary(tiles[m], c) for m in methods)]
        what = "wrong px" if len(wrong) == 3 else "false alarm + miss px"
        out[f"{what} {methods[1]} − {methods[0]}"] = (tiles[methods[1]][wrong].sum(axis=1)
                                                      - tiles[methods[0]][wrong].sum(axis=1))
    return out


def _is_binary(t: pd.DataFrame, column: str = ERROR_CATEGORIES[4]) -> bool:
    """Whether a method's tile table has ``column`` not applicable (a binary method's wrong-class pixels: NaN)."""
    return len(t) > 0 and bool(t[column].isna().all())


def summaries(tiles: dict, comps: dict, scores: dict, methods: list[str]) -> list[tuple[str, pd.DataFrame]]:
    """The summary tables of the report and chapter 06: metrics, pixels per error category, false alarms and
    misses by kind, false alarms by predicted transition, by cause and by what the caption names."""
    shown = (*METRIC_COLUMNS, "IoU_c", "change_F1")
    out = [("Metrics over all tiles (×100)", pd.DataFrame(
        {meth: [NA if not_applicable(scores[meth], k) else round(100 * scores[meth][k], 2) for k in shown]
         for meth in methods}, index=pd.Index(shown, name="metric")))]
    out.append(("Pixels per error category", pd.DataFrame(
        {meth: [NA if _is_binary(tiles[meth], c) else tiles[meth][c].sum() for c in ERROR_CATEGORIES]
         for meth in methods}, index=pd.Index(ERROR_CATEGORIES, name="category"))))
    for err, col, title in (("false alarm", "kind", "False alarms by kind"), ("miss", "kind", "Misses by kind"),
                            ("false alarm", "predicted", "False alarms by predicted transition"),
                            ("false alarm", "cause", "False alarms by cause (scene log)"),
                            ("false alarm", "caption_names", "False alarms: the caption names")):
        parts = {}
        for meth in methods:
            c = comps[meth][comps[meth]["error"] == err]
            if col in ("cause", "caption_names") and not (c[col] != "").any():
                continue
            g = c.groupby(col)["area"]
            parts[f"{meth} components"], parts[f"{meth} px"] = g.size(), g.sum()
        if parts:
            df = pd.DataFrame(parts).fillna(0).astype(int).rename_axis(col)
            out.append((title, df.sort_values(df.columns[1], ascending=False).head(12)))
    return out


def write_outputs(a: Analysis, out: str | Path) -> dict[str, Path]:
    """Write errors/tiles.csv, errors/components.csv, errors/ranking.csv, errors/attribution.csv,
    errors/tolerance.csv, errors/slices.csv, errors/summary.json, errors/gallery.png and report.html under ``out``, each atomically (chapter 06, ``textscd errors``)."""
    out = Path(out)
    tiles = pd.concat({meth: t for meth, t in a.tiles.items()}, names=["method"]).reset_index()
    comps = pd.concat({meth: c for meth, c in a.components.items()}, names=["method", "_"]).reset_index(0)
    paths = {"tiles": atomic_write_text(out / "errors" / "tiles.csv", tiles.to_csv(index=False)),
             "components": atomic_write_text(out / "errors" / "components.csv", comps.to_csv(index=False)),
             "ranking": atomic_write_text(out / "errors" / "ranking.csv", a.ranking.to_csv())}
    for key, df in (("attribution", a.attribution), ("tolerance", a.tolerance), ("slices", a.slices)):
        if df is not None:
            paths[key] = atomic_write_text(out / "errors" / f"{key}.csv", df.to_csv(index=False))
    keep = SUMMARY_KEYS
    paths["summary"] = atomic_write_json(out / "errors" / "summary.json", _nan_free({
        "methods": a.methods, "rank_by": a.rank_by, "facts": a.facts, "tiles": len(a.ranking),
        "scores": {m: {k: v for k, v in s.items() if k in keep} for m, s in a.scores.items()}, **a.extra}))
    if a.gallery is not None:
        paths["gallery"] = atomic_write(out / "errors" / "gallery.png", lambda p: a.gallery.save(p, format="PNG"))
    paths["report"] = atomic_write_text(out / "report.html", a.html)
    return paths


def _nan_free(v):
    """JSON-safe: NaN floats become null, recursively."""
    if isinstance(v, dict):
        return {k: _nan_free(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_nan_free(x) for x in v]
    return None if isinstance(v, float) and math.isnan(v) else v


def export_maps(preds: dict, out: str | Path) -> Path:
    """Write in-memory index maps ``{name: (map1, map2)}`` as ``out/label1/NAME.png`` and ``out/label2/NAME.png``
    (chapter 06 exports its own models' maps this way, then reads them like anyone else's)."""
    from PIL import Image

    out = Path(out)
    for f in ("label1", "label2"):
        (out / f).mkdir(parents=True, exist_ok=True)
    for name, maps in preds.items():
        for f, a in zip(("label1", "label2"), maps):
            path = out / f / f"{name}.png"
            atomic_write(path, lambda p, a=a: Image.fromarray(np.asarray(a, np.uint8)).save(p, format="PNG"))
    return out


def load_maps(pred: str | Path, gt: str | Path, split: str | None = None) -> tuple[str, dict, dict]:
    """``(layout, {name: (pred1, pred2)}, {name: (label1, label2)})`` of a prediction folder in any layout of
    `textscd_lib.metrics.PRED_LAYOUTS`, checked against the truth first (chapter 06). A binary change folder
    has no class maps to load: one line says so (:func:`analyse_folders` reads it)."""
    m = match_predictions(pred, gt, split)
    if m["binary"]:
        raise ValueError(f"{pred}: a binary change folder has no class maps to load (analyse_folders and "
                         "textscd errors read it as change masks)")
    preds = {n: tuple(read_label(q) for q in m["pred"][n]) for n in m["names"]}
    return m["layout"], preds, {n: read_truth(*m["gt"][n]) for n in m["names"]}
