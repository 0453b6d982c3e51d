"""Server-rendered SVG charts (no JavaScript, no CDN): multi-series line charts over time buckets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

PALETTE = ("#2952cc", "#1f8a4c", "#c0392b", "#b7791f", "#7c3aed", "#0e7490", "#be185d", "#4b5563")


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float]


def _fmt(value: float) -> str:
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value:.0f}"


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def line_chart(
    series: Sequence[Series], labels: Sequence[str], *, title: str, width: int = 720, height: int = 200
) -> Markup:
    """`labels` name the x buckets (every series has one value per label)."""
    left, right, top, bottom = 48, 12, 12, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((v for s in series for v in s.values), default=0.0) or 1.0
    n = max(len(labels), 2)

    def x(i: int) -> float:
        return left + plot_w * i / (n - 1)

    def y(v: float) -> float:
        return top + plot_h * (1 - v / peak)

    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]
    for frac in (0, 0.5, 1):
        gy = top + plot_h * (1 - frac)
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{gy:.1f}" y2="{gy:.1f}"/>')
        parts.append(f'<text x="{left - 6}" y="{gy + 4:.1f}" text-anchor="end">{_fmt(peak * frac)}</text>')
    parts.append(f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}"/>')
    step = max(1, len(labels) // 6)
    for i, label in enumerate(labels):
        if i % step == 0 or i == len(labels) - 1:
            anchor = "end" if i == len(labels) - 1 else ("start" if i == 0 else "middle")
            parts.append(f'<text x="{x(i):.1f}" y="{height - 6}" text-anchor="{anchor}">{escape(label)}</text>')
    for index, s in enumerate(series):
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(s.values))
        parts.append(
            f'<polyline fill="none" stroke="{color(index)}" stroke-width="2" points="{points}">'
            f"<title>{escape(s.name)}</title></polyline>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def legend(series: Sequence[Series]) -> Markup:
    items = "".join(f'<span><i style="background:{color(i)}"></i>{escape(s.name)}</span>' for i, s in enumerate(series))
    return Markup(f'<div class="legend">{items}</div>')
