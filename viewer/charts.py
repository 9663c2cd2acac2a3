"""Charts as SVG written on the server: no script, no library, no network, so a page works
offline and under the viewer's Content-Security-Policy. Each chart is drawn 420 units wide and
scales to its box; at 900 px two sit side by side at about their drawn size, so 11-unit text
stays legible."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

import msgspec

WIDTH = 420
LABEL_WIDTH = 140  # a bar chart's labels, left of its bars
ROW = 20
FONT = 11
MAX_LABEL = 21  # characters of a label shown; the whole one is its tooltip


class Bar(msgspec.Struct, frozen=True):
    """One row of a bar chart: `share` in [0, 1] is the bar's length."""

    label: str
    share: float
    text: str  # what is written beside the bar
    href: str | None = None


class Bin(msgspec.Struct, frozen=True):
    """One column of a histogram: [low, high) holds `count`."""

    low: float
    high: float
    count: int


class Mark(msgspec.Struct, frozen=True):
    """A vertical line across a histogram at `at`, named by `label` (e.g. a pass threshold)."""

    at: float
    label: str


def _esc(value: object) -> str:
    return escape(str(value), quote=True)


def _short(label: str) -> str:
    return label if len(label) <= MAX_LABEL else label[: MAX_LABEL - 1] + "…"


def _svg(height: int, title: str, body: str) -> str:
    return (
        f"<svg class='chart' viewBox='0 0 {WIDTH} {height}' width='100%' role='img' "
        f"aria-label='{_esc(title)}' xmlns='http://www.w3.org/2000/svg' "
        f"font-family='system-ui, sans-serif' font-size='{FONT}'>{body}</svg>"
    )


def bars(title: str, rows: Sequence[Bar]) -> str:
    """Horizontal bars, one per row, in the order given, each labelled on its left and its
    figure written on its right."""
    if not rows:
        return f"<figure class='chart'><figcaption>{_esc(title)}</figcaption><p>none</p></figure>"
    span = WIDTH - LABEL_WIDTH - 90  # room for the figure right of the longest bar
    parts = []
    for index, row in enumerate(rows):
        y = index * ROW
        length = max(0.0, min(1.0, row.share)) * span
        item = (
            f"<g class='bar'><title>{_esc(row.label)}: {_esc(row.text)}</title>"
            f"<text x='{LABEL_WIDTH - 6}' y='{y + 14}' text-anchor='end'>"
            f"{_esc(_short(row.label))}</text>"
            f"<rect x='{LABEL_WIDTH}' y='{y + 4}' width='{span}' height='{ROW - 7}' "
            f"fill='#eef0f4'/>"
            f"<rect x='{LABEL_WIDTH}' y='{y + 4}' width='{length:.1f}' height='{ROW - 7}' "
            f"fill='#3a7d44'/>"
            f"<text x='{LABEL_WIDTH + span + 5}' y='{y + 14}'>{_esc(row.text)}</text></g>"
        )
        if row.href:
            item = f"<a href='{_esc(row.href)}'>{item}</a>"
        parts.append(item)
    height = len(rows) * ROW + 4
    return (
        f"<figure class='chart'><figcaption>{_esc(title)}</figcaption>"
        f"{_svg(height, title, ''.join(parts))}</figure>"
    )


def _ticks(low: float, high: float, whole: bool) -> list[float]:
    """About five round ticks (1, 2 or 5 times a power of ten apart) across [low, high]."""
    span = high - low
    if span <= 0:
        return [low]
    raw = span / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(f * magnitude for f in (1, 2, 5, 10) if f * magnitude >= raw)
    if whole:
        step = max(1, round(step))
    value = math.ceil(low / step) * step
    ticks = []
    while value <= high + 1e-9:
        ticks.append(round(value, 6) + 0.0)  # + 0.0: never "-0"
        value += step
    return ticks


def histogram(title: str, bins: Sequence[Bin], marks: Sequence[Mark] = (), *,
              whole: bool = False, caption: str = "") -> str:  # fmt: skip
    """Columns over a numeric axis, the tallest's count written above it, and `marks` drawn
    as dashed lines with their label (a threshold stands where the scores are cut)."""
    if not bins:
        return f"<figure class='chart'><figcaption>{_esc(title)}</figcaption><p>none</p></figure>"
    left, right, top, plot = 40, WIDTH - 10, 28, 120
    low, high = bins[0].low, bins[-1].high
    tallest = max(b.count for b in bins) or 1

    def x(value: float) -> float:
        return left + (value - low) / ((high - low) or 1) * (right - left)

    parts = [
        f"<line x1='{left}' y1='{top + plot}' x2='{right}' y2='{top + plot}' stroke='#888'/>",
        f"<text x='{left - 4}' y='{top + 4}' text-anchor='end'>{tallest:,}</text>",
        f"<text x='{left - 4}' y='{top + plot}' text-anchor='end'>0</text>",
    ]
    for item in bins:
        height = item.count / tallest * plot
        span = (
            f"{item.low:g}"
            if whole and item.high - item.low <= 1
            else (f"{item.low:g}–{item.high:g}")
        )
        parts.append(
            f"<rect x='{x(item.low) + 0.5:.1f}' y='{top + plot - height:.1f}' "
            f"width='{max(1.0, x(item.high) - x(item.low) - 1):.1f}' height='{height:.1f}' "
            f"fill='#4a6fa5'><title>{_esc(span)}: {item.count:,}</title></rect>"
        )
    for tick in _ticks(low, high - 1 if whole else high, whole):
        parts.append(
            f"<text x='{x(tick + (0.5 if whole else 0)):.1f}' y='{top + plot + 14}' "
            f"text-anchor='middle'>{tick:g}</text>"
        )
    for mark in marks:
        at = x(mark.at)
        parts.append(
            f"<line class='mark' x1='{at:.1f}' y1='{top - 6}' x2='{at:.1f}' y2='{top + plot}' "
            f"stroke='#b00' stroke-width='1.5' stroke-dasharray='4 3'/>"
            f"<text x='{at:.1f}' y='{top - 10}' text-anchor='middle' fill='#b00'>"
            f"{_esc(mark.label)}</text>"
        )
    note = f"<p class='note'>{_esc(caption)}</p>" if caption else ""
    return (
        f"<figure class='chart'><figcaption>{_esc(title)}</figcaption>"
        f"{_svg(top + plot + 20, title, ''.join(parts))}{note}</figure>"
    )
