"""Small inline SVG charts for report.html (chapter 06; ``textscd errors``): grouped bars, lines, stacked shares.

No plotting library and no fonts to embed: a chart is a string of SVG placed straight into the page. Every
label is escaped (:func:`html.escape`), so a method called ``<script>`` prints as text. A value that is NaN
(a score that does not apply, e.g. a binary method's SeK) is drawn as nothing and labelled "n/a", never as 0.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

E = html.escape
PALETTE = ("#5b3fa0", "#a8a8a8", "#e08a00", "#00a0b0")
TYPE_COLORS = ("#ff66ff", "#c000c0", "#66e6ff", "#0090b0", "#ffbe00")   # the five error types


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _finite(v) -> float:
    return 0.0 if _missing(v) else float(v)


def _legend(names: Sequence[str], colors: Sequence[str], x: int, y: int) -> str:
    out, cx = [], x
    for n, c in zip(names, colors):
        out.append(f'<rect x="{cx}" y="{y - 9}" width="10" height="10" fill="{c}"/>'
                   f'<text x="{cx + 14}" y="{y}">{E(str(n))}</text>')
        cx += 24 + 7 * len(str(n))
    return "".join(out)


def bar_chart(groups: Sequence[str], series: Mapping[str, Sequence[float]], title: str, unit: str = "",
              width: int = 520) -> str:
    """Horizontal grouped bars: one group per entry of ``groups``, one bar per series (e.g. per method)."""
    names = list(series)
    bar, gap, left = 12, 10, 170
    h = 34 + len(groups) * (bar * len(names) + gap) + 18
    top = max([_finite(v) for vals in series.values() for v in vals] + [1e-9])
    scale = (width - left - 60) / top
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" role="img">'
           f'<text x="4" y="14" font-weight="bold">{E(title)}</text>', _legend(names, PALETTE, left, 28)]
    y = 36
    for gi, g in enumerate(groups):
        out.append(f'<text x="4" y="{y + bar * len(names) / 2 + 4}">{E(str(g))}</text>')
        for si, n in enumerate(names):
            v = _finite(series[n][gi])
            shown = "n/a" if _missing(series[n][gi]) else f"{v:.2f}{E(unit)}"
            out.append(f'<rect x="{left}" y="{y}" width="{max(0.0, v * scale):.1f}" height="{bar - 2}" '
                       f'fill="{PALETTE[si % len(PALETTE)]}"/><text x="{left + max(0.0, v * scale) + 3:.1f}" '
                       f'y="{y + bar - 3}">{shown}</text>')
            y += bar
        y += gap
    return "".join(out) + "</svg>"


def line_chart(x: Sequence[float], series: Mapping[str, Sequence[float]], title: str, xlabel: str,
               ylabel: str, width: int = 420, height: int = 240) -> str:
    """One line per series over ``x`` (e.g. SeK against the tolerance k, one line per method); NaN points are
    left out, and a series without any is named "(n/a)" in the legend."""
    left, right, top, bottom = 44, 12, 54, 32
    ys = [float(v) for vals in series.values() for v in vals if not _missing(v)]
    lo, hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1
    sx = (width - left - right) / max(1e-9, (max(x) - min(x)) if len(x) > 1 else 1)
    sy = (height - top - bottom) / (hi - lo)

    def px(a, b):
        return left + (a - min(x)) * sx, height - bottom - (b - lo) * sy

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">'
           f'<text x="4" y="14" font-weight="bold">{E(title)}</text>',
           _legend([n if any(not _missing(v) for v in vals) else f"{n} (n/a)" for n, vals in series.items()],
                   PALETTE, left, 30),
           f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#888"/>'
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#888"/>'
           f'<text x="{width / 2}" y="{height - 4}" text-anchor="middle">{E(xlabel)}</text>'
           f'<text x="2" y="{top - 4}">{E(ylabel)}</text>'
           f'<text x="{left - 4}" y="{top + 4}" text-anchor="end">{hi:.1f}</text>'
           f'<text x="{left - 4}" y="{height - bottom}" text-anchor="end">{lo:.1f}</text>']
    for xi in x:
        out.append(f'<text x="{px(xi, lo)[0]:.1f}" y="{height - bottom + 13}" text-anchor="middle">{xi:g}</text>')
    for si, vals in enumerate(series.values()):
        pts = " ".join("{:.1f},{:.1f}".format(*px(a, float(b))) for a, b in zip(x, vals) if not _missing(b))
        out.append(f'<polyline fill="none" stroke="{PALETTE[si % len(PALETTE)]}" stroke-width="2" points="{pts}"/>')
    return "".join(out) + "</svg>"


def stacked_shares(rows: Mapping[str, Mapping[str, float]], title: str, width: int = 520) -> str:
    """One horizontal bar per row (a method) split into its shares (%) of each part (the error types)."""
    parts = list(next(iter(rows.values()))) if rows else []
    left, bar = 90, 18
    h = 50 + len(rows) * (bar + 8) + 16 * ((len(parts) + 2) // 3)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" role="img">'
           f'<text x="4" y="14" font-weight="bold">{E(title)}</text>']
    y = 26
    for name, shares in rows.items():
        out.append(f'<text x="4" y="{y + 13}">{E(str(name))}</text>')
        x = float(left)
        for i, p in enumerate(parts):
            w = _finite(shares.get(p)) / 100 * (width - left - 10)
            out.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar}" fill="{TYPE_COLORS[i % 5]}">'
                       f'<title>{E(str(p))}: {_finite(shares.get(p)):.1f} %</title></rect>')
            x += w
        y += bar + 8
    for i, p in enumerate(parts):
        out.append(_legend([p], [TYPE_COLORS[i % 5]], 4 + 170 * (i % 3), y + 14 + 16 * (i // 3)))
    return "".join(out) + "</svg>"
