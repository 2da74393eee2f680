"""report.html: one self-contained page a person browses (chapter 06; ``textscd errors``).

Images are embedded as base64 (thumbnails, one gallery row per tile, component crops; WebP), charts are inline
SVG, the tables sort and filter with a few lines of inline JavaScript, and nothing is fetched: no server, no
internet, no external CSS or JS. First what each error type costs (oracle-fix attribution, A beside B; the
boundary tolerance curve; the error composition; the sanity lines and both SeK conventions), then the summary
tables, a component browser, and every tile: click a row to open its gallery row, its caption with the class
words marked, and its largest components.

Every piece of text that comes from outside (paths, method names, tile names, captions, CSV values) goes
through :func:`html.escape` before it is placed in the page, in element text and in attribute values alike.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass, field

import pandas as pd
from PIL import Image

from textscd_lib.analysis.gallery import marked_caption

MARK_STYLE = {"predicted": "background:#ffb3ff", "true": "background:#b3f0ff",
              "both": "background:linear-gradient(#ffb3ff,#b3f0ff)", "class": "text-decoration:underline"}

CSS = """body{font:13px/1.4 system-ui,sans-serif;margin:16px;color:#222}h1{font-size:18px}h2{font-size:15px;
margin-top:22px}table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ccc;padding:2px 6px;
text-align:right}th{background:#f2f2f2;cursor:pointer;position:sticky;top:0}td.l,th.l{text-align:left}
tbody.t{cursor:pointer}tbody.t:hover td{background:#f7f7ff}tr.d td{background:#fff;text-align:left}
.sums{display:flex;flex-wrap:wrap;gap:24px}.note{color:#555;max-width:900px}img.th{display:block}
#cf{margin:6px 0}#cf label{margin-right:10px}#cb img{display:block}svg text{font:11px system-ui,sans-serif}"""

JS = """function srt(th){const t=th.closest('table'),i=[...th.parentNode.children].indexOf(th),
d=th.dataset.d=th.dataset.d==='a'?'d':'a',b=[...t.querySelectorAll('tbody.t')];
b.sort((x,y)=>{let p=x.rows[0].cells[i].dataset.v,q=y.rows[0].cells[i].dataset.v;
let a=parseFloat(p),c=parseFloat(q);if(isNaN(a)&&isNaN(c)){a=p;c=q}else if(isNaN(a))return 1;else if(isNaN(c))
return -1;return (a<c?-1:a>c?1:0)*(d==='a'?1:-1)});b.forEach(x=>t.appendChild(x))}
function tog(b){const r=b.rows[1];r.hidden=!r.hidden}
window.addEventListener('load',()=>{if(location.hash==='#open'){const b=document.querySelector('tbody.t');
if(b)tog(b)}})
function flt(){const f={};document.querySelectorAll('#cf select,#cf input').forEach(e=>f[e.name]=e.value);
let n=0;document.querySelectorAll('#cb tbody tr').forEach(r=>{const d=r.dataset;const ok=['method','type',
'transition','cause'].every(k=>!f[k]||d[k]===f[k])&&(+d.area>=(+f.area||0));r.hidden=!ok;n+=ok});
document.getElementById('cn').textContent=n}
function srtc(th){const t=th.closest('table').tBodies[0],i=[...th.parentNode.children].indexOf(th),
d=th.dataset.d=th.dataset.d==='a'?'d':'a',rs=[...t.rows];rs.sort((x,y)=>{let p=x.cells[i].dataset.v,
q=y.cells[i].dataset.v,a=parseFloat(p),c=parseFloat(q);if(isNaN(a)||isNaN(c)){a=p;c=q}
return (a<c?-1:a>c?1:0)*(d==='a'?1:-1)});rs.forEach(r=>t.appendChild(r))}"""

E = html.escape        # every outside text goes through this (element text and quoted attribute values)


def data_uri(img: Image.Image, fmt: str = "WEBP", quality: int = 80) -> str:
    """A PIL image as a ``data:`` URI (WebP by default; PNG for exact colours)."""
    buf = io.BytesIO()
    img.save(buf, format=fmt, quality=quality, **({"method": 4} if fmt == "WEBP" else {}))
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def caption_html(caption: str | None, predicted: set[str], true: set[str]) -> str:
    """A caption with its class words marked (:func:`textscd_lib.analysis.gallery.marked_caption`)."""
    if caption is None:
        return "<i>no caption</i>"
    parts = [f'<span style="{MARK_STYLE[m]}">{html.escape(t)}</span>' if m else html.escape(t)
             for t, m in marked_caption(caption, predicted, true)]
    return "".join(parts) or "<i>(empty caption)</i>"


def _cell(v, left: bool = False) -> str:
    if isinstance(v, float):
        shown = ("NaN" if math.isnan(v) else f"{v:.0f}" if v.is_integer() or abs(v) >= 100 else f"{v:.2f}")
        return f'<td data-v="{"" if math.isnan(v) else v}">{shown}</td>'
    esc = html.escape(str(v))
    return f'<td data-v="{esc}"{" class=l" if left else ""}>{esc}</td>'


def frame_table(df: pd.DataFrame, title: str) -> str:
    """A small summary table (index as its first column)."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in [df.index.name or "", *df.columns])
    body = "".join("<tr>" + _cell(i, True) + "".join(_cell(v) for v in r) + "</tr>"
                   for i, r in zip(df.index, df.itertuples(index=False)))
    return f"<div><h3>{html.escape(title)}</h3><table><tr>{head}</tr>{body}</table></div>"


def render(title: str, facts: list[str], summaries: list[tuple[str, pd.DataFrame]], tiles: pd.DataFrame,
           columns: list[str], thumbs: dict[str, str], panels: dict[str, str], details: dict[str, str],
           costs: Costs | None = None) -> str:
    """The whole page as a string. ``tiles`` (index = tile) gives the table, ``columns`` which of its columns
    to show; ``thumbs``/``panels`` map a tile to the data URI of its thumbnail / gallery row, ``details`` to
    extra HTML (already escaped) shown under the panel (caption, components); ``costs`` adds the cost section
    and the component browser."""
    head = '<th class=l onclick="srt(this)">thumb</th><th class=l onclick="srt(this)">tile</th>' + "".join(
        f'<th onclick="srt(this)">{html.escape(c)}</th>' for c in columns)
    rows = []
    span = len(columns) + 2
    for name, r in tiles[columns].iterrows():
        cells = "".join(_cell(float(v) if isinstance(v, (int, float)) else v) for v in r)
        thumb = f'<img class=th src="{E(thumbs[name])}" width=56 height=56 alt="">' if name in thumbs else ""
        rows.append(f'<tbody class=t onclick="tog(this)"><tr><td data-v="">{thumb}</td>{_cell(name, True)}'
                    f'{cells}</tr><tr class=d hidden><td colspan={span}>'
                    + (f'<img src="{E(panels[name])}" alt="gallery row of {E(name)}">' if name in panels else "")
                    + f"<div>{details.get(name, '')}</div></td></tr></tbody>")
    sums = "".join(frame_table(df, t) for t, df in summaries)
    fact_html = "".join(f"<li>{E(f)}</li>" for f in facts)
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style><script>{JS}</script></head><body><h1>{html.escape(title)}</h1>"
            f"<ul class=note>{fact_html}</ul>{cost_section(costs) if costs is not None else ''}"
            f"<h2>Summary</h2><div class=sums>{sums}</div>{browser_section(costs) if costs is not None else ''}"
            f"<h2>Tiles ({len(tiles)}; click a column to sort, a row to open it)</h2>"
            f"<table><thead><tr>{head}</tr></thead>{''.join(rows)}</table></body></html>")


@dataclass
class Costs:
    """What the cost section and the component browser show: the attribution and tolerance tables
    (`textscd_lib.analysis.attribution`), the summary lines (sanity, both SeK conventions, shares per method),
    the method names, the browser's component rows (``crop`` = a data URI or "") and the methods that are
    change-only (binary: their semantic scores and wrong-class rows show "n/a")."""

    attribution: pd.DataFrame
    tolerance: pd.DataFrame
    extra: dict
    methods: list[str]
    browser: pd.DataFrame
    binary: list[str] = field(default_factory=list)


NA = "n/a"     # a score that does not apply (a binary method's SeK, its wrong-class rows)


def _attribution_frame(att: pd.DataFrame, metric: str = "SeK", binary=()) -> pd.DataFrame:
    """error type × (method, mode) gains of ``metric`` (×100), for the table under the chart; a NaN of a
    ``binary`` method shows as "n/a" (not applicable), any other NaN as NaN (undefined)."""
    a = att[att["metric"] == metric]
    t = a.pivot_table(index="error", columns=["method", "mode"], values="gain", sort=False, dropna=False)
    na = [m in binary for m, _ in t.columns]
    t.columns = [f"{m} {mode} gain" for m, mode in t.columns]
    t = t.round(2).astype(object)
    for col, b in zip(t.columns, na):
        if b:
            t[col] = t[col].where(t[col].notna(), NA)
    return t.rename_axis("error type")


def _charts(c: Costs, metric: str, label: str) -> str:
    """The attribution bars (isolated gain of ``metric``) and the tolerance curve of ``metric``, A beside B; a
    method whose ``metric`` does not apply is drawn as "n/a"."""
    from textscd_lib.analysis import charts
    from textscd_lib.analysis.attribution import ERROR_TYPES

    iso = c.attribution[(c.attribution["metric"] == metric) & (c.attribution["mode"] == "isolated")]
    series = {m: [float(iso[(iso["method"] == m) & (iso["error"] == t)]["gain"].sum(min_count=1))
                  for t in ERROR_TYPES] for m in c.methods}
    tol = c.tolerance[c.tolerance["metric"] == metric]
    ks = sorted(tol["k"].unique())
    curve = {m: [float(tol[(tol["method"] == m) & (tol["k"] == k)]["value"].iloc[0]) for k in ks] for m in c.methods}
    return (charts.bar_chart(list(ERROR_TYPES), series, f"{label} gain when one type is fixed (isolated, ×100)")
            + charts.line_chart(ks, curve, f"{label} with a boundary tolerance", "k (px)", f"{label} ×100"))


def cost_section(c: Costs) -> str:
    """What each error type costs: the attribution chart (isolated SeK gain, A beside B) and table, the
    tolerance curve, the error composition, the two SeK conventions and the sanity lines."""
    from textscd_lib.analysis import charts

    comp = {m: c.extra["per method"][m]["share of wrong pixels (%)"] for m in c.methods}
    share = c.tolerance["k_share_of_diagonal"].max() if len(c.tolerance) else float("nan")
    conv = pd.DataFrame({m: [NA if m in c.binary else c.extra["per method"][m][lab]
                             for lab in c.extra["SeK conventions"].values()]
                         for m in c.methods}, index=pd.Index(list(c.extra["SeK conventions"].values()), name="SeK"))
    sanity = pd.DataFrame({k: v for k, v in c.extra["sanity"].items()}).T.rename_axis("reference prediction")
    change = (f"<p class=note>{E(', '.join(c.binary))}: a binary change folder (a change mask, no classes): "
              "false alarms and misses only, scored by the change F1 (and IoU_c) of the change mask; its SeK, "
              "OA, F_scd and wrong-class rows are n/a (not applicable).</p><div class=sums>"
              + _charts(c, "change_F1", "change F1")
              + frame_table(_attribution_frame(c.attribution, "change_F1", c.binary),
                            "change F1 gain per error type (×100)") + "</div>") if c.binary else ""
    return ("<h2>What each error type costs</h2><p class=note>Oracle fixes on the pooled 7×7 confusion matrix: "
            "false-alarm pixels set to unchanged, missed and wrong-class pixels set to the truth. <b>isolated</b>: "
            "one type fixed alone (the gains do not add up to the gap to 100); <b>progressive</b>: the types fixed "
            "one after another in the order listed, the last reaching SeK 100. Tolerance: every wrong pixel "
            f"within k px of a true change boundary counted correct (k = 8 is {100 * share:.2f} % of the tile "
            "diagonal).</p><div class=sums>"
            + _charts(c, "SeK", "SeK")
            + charts.stacked_shares(comp, "Share of wrong pixels by type (%)") + "</div><div class=sums>"
            + frame_table(_attribution_frame(c.attribution, "SeK", c.binary), "SeK gain per error type (×100)")
            + frame_table(conv, "Two SeK conventions (×100)")
            + frame_table(sanity, "Sanity lines (×100)") + "</div>" + change)


BROWSER_COLUMNS = ("method", "type", "tile", "area", "date", "predicted", "true", "distance_px", "cause",
                   "caption_names")


def _select(name: str, values) -> str:
    opts = "".join(f'<option value="{E(str(v))}">{E(str(v))}</option>' for v in sorted(set(map(str, values))))
    return f'<label>{name} <select name="{name}" onchange="flt()"><option value="">all</option>{opts}</select></label>'


def browser_section(c: Costs) -> str:
    """The component browser: one row per component (the largest per type; crops for the largest few), with
    filters by method, type, transition, cause and size, sortable by any column."""
    b = c.browser
    if b is None or b.empty:
        return "<h2>Components</h2><p>no error components</p>"
    trans = b["predicted"].where(b["error"] == "false alarm", b["true"])
    filters = (_select("method", b["method"]) + _select("type", b["type"]) + _select("transition", trans)
               + _select("cause", b["cause"].fillna(""))
               + '<label>area ≥ <input name="area" type="number" min="0" value="0" onchange="flt()"></label>')
    head = '<th class=l onclick="srtc(this)">crops (date 1, date 2, truth 1|2, prediction 1|2)</th>' + "".join(
        f'<th class=l onclick="srtc(this)">{E(k)}</th>' for k in BROWSER_COLUMNS)
    rows = []
    for r, t in zip(b.itertuples(index=False), trans):
        crop = f'<img src="{E(r.crop)}" alt="">' if r.crop else ""
        data = (f'data-method="{E(str(r.method))}" data-type="{E(str(r.type))}" data-transition="{E(str(t))}" '
                f'data-cause="{E(str(r.cause if isinstance(r.cause, str) else ""))}" data-area="{int(r.area)}"')
        cells = "".join(_cell(float(getattr(r, k)) if k in ("area", "distance_px") else getattr(r, k), True)
                        for k in BROWSER_COLUMNS)
        rows.append(f'<tr {data}><td data-v="{1 if crop else 0}">{crop}</td>{cells}</tr>')
    return (f"<h2>Components (<span id=cn>{len(b)}</span> shown)</h2><p class=note>The largest components of "
            "each method and error type are listed; only the largest few of each carry crops (date 1, date 2, "
            "truth 1 | 2, prediction 1 | 2, the component boxed in magenta). All components are in "
            f"errors/components.csv.</p><div id=cf>{filters}</div><table id=cb><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")
