"""Inline SVG charts for the static report: horizontal bars (stacked) and lines.
Hand-written so that the report needs nothing outside the package."""
from __future__ import annotations

from html import escape

PALETTE = ("#4e79a7", "#e15759", "#76b7b2", "#f28e2b", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
           "#9c755f", "#bab0ac")


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


LEGEND_W, LEGEND_H = 150, 14  # one legend entry; entries wrap into rows


def _legend_rows(n: int, x: float, width: int) -> int:
    return -(-n // max(1, int((width - x) // LEGEND_W)))


def _legend(series: list[str], x: float, y: float, width: int) -> str:
    per_row = max(1, int((width - x) // LEGEND_W))
    out = []
    for i, name in enumerate(series):
        lx, ly = x + (i % per_row) * LEGEND_W, y + (i // per_row) * LEGEND_H
        out.append(f'<rect x="{lx:.0f}" y="{ly:.0f}" width="10" height="10" fill="{color(i)}"/>'
                   f'<text x="{lx + 14:.0f}" y="{ly + 9:.0f}" font-size="11">{escape(name[:22])}</text>')
    return "".join(out)


def _tick(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def stacked_bars(rows: dict[str, dict[str, float]], series: list[str], title: str, width: int = 640) -> str:
    """One horizontal bar per row, split into ``series`` (e.g. kept / dropped)."""
    if not rows:
        return f'<p class="empty">{escape(title)}: no data</p>'
    label_w, bar_h = 160, 18
    top = 20 + _legend_rows(len(series), label_w, width) * LEGEND_H
    total_max = max(sum(v.get(s, 0) for s in series) for v in rows.values()) or 1
    scale = (width - label_w - 70) / total_max
    h = top + len(rows) * (bar_h + 6) + 10
    parts = [f'<svg class="chart" data-chart="{escape(title)}" xmlns="http://www.w3.org/2000/svg" '
             f'width="{width}" height="{h}" font-family="sans-serif">',
             f'<text x="0" y="14" font-size="13" font-weight="bold">{escape(title)}</text>',
             _legend(series, label_w, 20, width)]
    for r, (name, vals) in enumerate(rows.items()):
        y = top + r * (bar_h + 6) + 6
        parts.append(f'<text x="{label_w - 6}" y="{y + 13}" font-size="11" text-anchor="end">{escape(name)}</text>')
        x = label_w
        for i, s in enumerate(series):
            w = vals.get(s, 0) * scale
            if w > 0:
                parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color(i)}">'
                             f'<title>{escape(name)} {escape(s)}: {vals.get(s, 0):,.0f}</title></rect>')
            x += w
        total = sum(vals.get(s, 0) for s in series)
        parts.append(f'<text x="{x + 4:.1f}" y="{y + 13}" font-size="11">{total:,.0f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def lines(series: dict[str, list[tuple[float, float]]], title: str, x_label: str, y_label: str,
          width: int = 640, height: int = 260) -> str:
    """Line chart of (x, y) points per series, on shared axes."""
    pts = [p for s in series.values() for p in s]
    if not pts:
        return f'<p class="empty">{escape(title)}: no data</p>'
    left, right, bottom = 60, 20, 40
    top = 26 + _legend_rows(len(series), left, width) * LEGEND_H
    height += top - 40
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y1 = y0 + 1

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def sy(y: float) -> float:
        return height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)

    parts = [f'<svg class="chart" data-chart="{escape(title)}" xmlns="http://www.w3.org/2000/svg" '
             f'width="{width}" height="{height}" font-family="sans-serif">',
             f'<text x="0" y="14" font-size="13" font-weight="bold">{escape(title)}</text>',
             _legend(list(series), left, 20, width),
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#888"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#888"/>']
    for v, y in ((y0, sy(y0)), (y1, sy(y1))):
        parts.append(f'<text x="{left - 4}" y="{y + 4:.0f}" font-size="10" text-anchor="end">{_tick(v)}</text>')
    for v, x in ((x0, sx(x0)), (x1, sx(x1))):
        parts.append(f'<text x="{x:.0f}" y="{height - bottom + 14}" font-size="10" text-anchor="middle">'
                     f'{_tick(v)}</text>')
    parts.append(f'<text x="{(left + width) / 2:.0f}" y="{height - 6}" font-size="11" text-anchor="middle">'
                 f'{escape(x_label)}</text>')
    parts.append(f'<text x="12" y="{(top + height - bottom) / 2:.0f}" font-size="11" text-anchor="middle" '
                 f'transform="rotate(-90 12 {(top + height - bottom) / 2:.0f})">{escape(y_label)}</text>')
    for i, (name, s) in enumerate(series.items()):
        s = sorted(s)
        d = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s)
        parts.append(f'<polyline data-series="{escape(name)}" data-points="{len(s)}" fill="none" '
                     f'stroke="{color(i)}" stroke-width="1.8" points="{d}"/>')
        if len(s) == 1:
            parts.append(f'<circle cx="{sx(s[0][0]):.1f}" cy="{sy(s[0][1]):.1f}" r="3" fill="{color(i)}"/>')
    parts.append("</svg>")
    return "".join(parts)
