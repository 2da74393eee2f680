"""report.html: one self-contained page a person browses (chapter 06; ``textscd errors``).

Images are embedded as base64 (thumbnails and one gallery row per tile, WebP), the table sorts with a few lines
of inline JavaScript, and nothing is fetched: no server, no internet, no external CSS or JS. Summary tables
(false alarms by kind, by predicted transition, by cause, by what the caption names; A against B) come first,
then every tile: click a row to open its gallery row, its caption with the class words marked, and its
largest components.
"""

from __future__ import annotations

import base64
import html
import io
import math

import pandas as pd
from PIL import Image

from textscd_lib.analysis.gallery import marked_caption

MARK_STYLE = {"predicted": "background:#ffb3ff", "true": "background:#b3f0ff",
              "both": "background:linear-gradient(#ffb3ff,#b3f0ff)", "class": "text-decoration:underline"}

CSS = """body{font:13px/1.4 system-ui,sans-serif;margin:16px;color:#222}h1{font-size:18px}h2{font-size:15px;
margin-top:22px}table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ccc;padding:2px 6px;
text-align:right}th{background:#f2f2f2;cursor:pointer;position:sticky;top:0}td.l,th.l{text-align:left}
tbody.t{cursor:pointer}tbody.t:hover td{background:#f7f7ff}tr.d td{background:#fff;text-align:left}
.sums{display:flex;flex-wrap:wrap;gap:24px}.note{color:#555;max-width:900px}img.th{display:block}"""

JS = """function srt(th){const t=th.closest('table'),i=[...th.parentNode.children].indexOf(th),
d=th.dataset.d=th.dataset.d==='a'?'d':'a',b=[...t.querySelectorAll('tbody.t')];
b.sort((x,y)=>{let p=x.rows[0].cells[i].dataset.v,q=y.rows[0].cells[i].dataset.v;
let a=parseFloat(p),c=parseFloat(q);if(isNaN(a)&&isNaN(c)){a=p;c=q}else if(isNaN(a))return 1;else if(isNaN(c))
return -1;return (a<c?-1:a>c?1:0)*(d==='a'?1:-1)});b.forEach(x=>t.appendChild(x))}
function tog(b){const r=b.rows[1];r.hidden=!r.hidden}
window.addEventListener('load',()=>{if(location.hash==='#open'){const b=document.querySelector('tbody.t');
if(b)tog(b)}})"""


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
           columns: list[str], thumbs: dict[str, str], panels: dict[str, str], details: dict[str, str]) -> str:
    """The whole page as a string. ``tiles`` (index = tile) gives the table, ``columns`` which of its columns
    to show; ``thumbs``/``panels`` map a tile to the data URI of its thumbnail / gallery row, ``details`` to
    extra HTML shown under the panel (caption, components)."""
    head = '<th class=l onclick="srt(this)">thumb</th><th class=l onclick="srt(this)">tile</th>' + "".join(
        f'<th onclick="srt(this)">{html.escape(c)}</th>' for c in columns)
    rows = []
    span = len(columns) + 2
    for name, r in tiles[columns].iterrows():
        cells = "".join(_cell(float(v) if isinstance(v, (int, float)) else v) for v in r)
        thumb = f'<img class=th src="{thumbs[name]}" width=56 height=56 alt="">' if name in thumbs else ""
        rows.append(f'<tbody class=t onclick="tog(this)"><tr><td data-v="">{thumb}</td>{_cell(name, True)}'
                    f'{cells}</tr><tr class=d hidden><td colspan={span}>'
                    + (f'<img src="{panels[name]}" alt="gallery row of {html.escape(name)}">' if name in panels else "")
                    + f"<div>{details.get(name, '')}</div></td></tr></tbody>")
    sums = "".join(frame_table(df, t) for t, df in summaries)
    fact_html = "".join(f"<li>{f}</li>" for f in facts)
    return (f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style><script>{JS}</script></head><body><h1>{html.escape(title)}</h1>"
            f"<ul class=note>{fact_html}</ul><h2>Summary</h2><div class=sums>{sums}</div>"
            f"<h2>Tiles ({len(tiles)}; click a column to sort, a row to open it)</h2>"
            f"<table><thead><tr>{head}</tr></thead>{''.join(rows)}</table></body></html>")
