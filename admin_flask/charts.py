"""Server-rendered SVG charts (no CDN): multi-series line charts over time buckets.

Readable at any width: the chart never shrinks below its drawn width (it scrolls inside its own box instead), so
its 12-unit text stays at least 12 px. The y axis uses 1-2-5 steps; every bucket is a focusable column whose
title lists each series' value there, shown as a tooltip on hover and keyboard focus (static/admin.js).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

PALETTE = ("#2952cc", "#1f8a4c", "#c0392b", "#b7791f", "#7c3aed", "#0e7490", "#be185d", "#4b5563")
WIDTH = 560
"""Drawn width in px; also the chart's minimum rendered width (admin.css), which keeps FONT_SIZE readable."""
FONT_SIZE = 12
MAX_X_LABELS = 5


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float]


def fmt(value: float) -> str:
    """`950`, `1.5k`, `2M`: short axis and tooltip numbers without a trailing `.0`."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.1f}".removesuffix(".0") + unit
    return f"{value:.0f}" if value == int(value) else f"{value:.2f}".rstrip("0")


def nice_step(peak: float, ticks: int = 4) -> float:
    """The smallest 1, 2 or 5 x 10^n step (at least 1: the charts count whole requests and tokens) that covers
    `peak` in at most `ticks` steps."""
    raw = max(peak, 1.0) / ticks
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= raw:
            return max(1.0, float(factor * magnitude))
    return max(1.0, 10.0 * magnitude)  # pragma: no cover - the loop always returns


def y_ticks(peak: float, ticks: int = 4) -> list[float]:
    """0, step, 2 step, ... up to the first multiple of the step at or above `peak`."""
    step = nice_step(peak, ticks)
    top = max(1, math.ceil(peak / step))
    return [step * i for i in range(top + 1)]


def x_label_indexes(count: int, most: int = MAX_X_LABELS) -> list[int]:
    """Which buckets get an axis label: evenly spaced, always the first and the last."""
    if count <= most:
        return list(range(count))
    step = math.ceil((count - 1) / (most - 1))
    picked = list(range(0, count - 1, step))
    if count - 1 - picked[-1] < step / 2:
        picked.pop()
    return [*picked, count - 1]


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def bucket_summary(series: Sequence[Series], label: str, i: int) -> str:
    """The tooltip of one bucket: its label, then each series' value there."""
    values = "; ".join(f"{s.name}: {fmt(s.values[i])}" for s in series if i < len(s.values))
    return f"{label} — {values}" if values else f"{label} — no data"


def line_chart(series: Sequence[Series], labels: Sequence[str], *, title: str, height: int = 220) -> Markup:
    """`labels` name the x buckets (every series has one value per label)."""
    width = WIDTH
    left, right, top, bottom = 52, 14, 12, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    ticks = y_ticks(max((v for s in series for v in s.values), default=0.0))
    ceiling = ticks[-1]
    n = max(len(labels), 2)

    def x(i: float) -> float:
        return left + plot_w * i / (n - 1)

    def y(v: float) -> float:
        return top + plot_h * (1 - v / ceiling)

    parts = [
        f'<div class="chart-wrap"><svg class="chart" viewBox="0 0 {width} {height}" width="{width}" '
        f'role="group" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg" '
        f'font-size="{FONT_SIZE}"><title>{escape(title)}</title>'
    ]
    for tick in ticks:
        gy = y(tick)
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{gy:.1f}" y2="{gy:.1f}"/>')
        parts.append(f'<text x="{left - 6}" y="{gy + 4:.1f}" text-anchor="end">{fmt(tick)}</text>')
    parts.append(f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}"/>')
    for i in x_label_indexes(len(labels)):
        anchor = "end" if i == len(labels) - 1 else ("start" if i == 0 else "middle")
        parts.append(f'<text x="{x(i):.1f}" y="{height - 8}" text-anchor="{anchor}">{escape(labels[i])}</text>')
    for index, s in enumerate(series):
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(s.values))
        parts.append(f'<polyline fill="none" stroke="{color(index)}" stroke-width="2" points="{points}"/>')
    column = plot_w / (n - 1)
    for i, label in enumerate(labels):
        tip = escape(bucket_summary(series, label, i))
        start = max(left, x(i) - column / 2)
        end = min(width - right, x(i) + column / 2)
        parts.append(
            f'<rect class="hit" x="{start:.1f}" y="{top}" width="{end - start:.1f}" height="{plot_h}" tabindex="0" '
            f'role="img" aria-label="{tip}" data-tip="{tip}"><title>{tip}</title></rect>'
        )
    parts.append("</svg></div>")
    return Markup("".join(parts))


def legend(series: Sequence[Series]) -> Markup:
    items = "".join(f'<span><i style="background:{color(i)}"></i>{escape(s.name)}</span>' for i, s in enumerate(series))
    return Markup(f'<div class="legend">{items}</div>')
