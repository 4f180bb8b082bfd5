"""The report's two charts as geometry for hand-built SVG: the latency
histogram (log-scale R10 bins, successes and failures stacked) and the
per-phase timings (p50/p90/p99 bars per phase). The template draws the
shapes; nothing here is markup, and every text is escaped where it is drawn.

Hand-built SVG rather than a chart library: two fixed charts need ~150
lines; a library (pygal, or a JavaScript one inlined) would add a
dependency and hundreds of KB to every file, and SVG drawn on the server
shows without scripts, prints, and is text that a test can read.

May import: `report.aggregate` and the standard library.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from asyncecho.report.aggregate import Bin, PhaseTiming


@dataclass(frozen=True, slots=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    css: str  # class: the colour
    title: str  # tooltip


@dataclass(frozen=True, slots=True)
class Text:
    x: float
    y: float
    text: str
    anchor: str = "middle"
    css: str = "axis"


@dataclass(frozen=True, slots=True)
class Line:
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass
class Chart:
    width: int
    height: int
    label: str  # aria-label: what the chart shows, in words
    rects: list[Rect] = field(default_factory=list)
    texts: list[Text] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)


def ms_text(value: float) -> str:
    if value >= 1000.0:
        return f"{value / 1000.0:.3g} s"
    if value >= 100.0:
        return f"{value:.0f} ms"
    if value >= 1.0:
        return f"{value:.3g} ms"
    return f"{value:.2g} ms"


def _nice_ceiling(value: int) -> int:
    """1, 2 or 5 times a power of ten, at least `value`."""
    if value <= 1:
        return 1
    power: int = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power  # pragma: no cover - the loop always returns


def histogram(bins: list[Bin], *, width: int = 760, height: int = 240) -> Chart:
    left, right, top, bottom = 56, 12, 12, 40
    chart = Chart(
        width,
        height,
        "Histogram of total time per target, log scale: successes and failures stacked",
    )
    if not bins:
        return chart
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = _nice_ceiling(max(b.ok + b.failed for b in bins))
    step = plot_w / len(bins)
    base = top + plot_h
    chart.lines.append(Line(left, base, left + plot_w, base))
    chart.lines.append(Line(left, top, left, base))
    for fraction in (0.0, 0.5, 1.0):
        y = base - fraction * plot_h
        chart.texts.append(Text(left - 6, y + 4, f"{round(peak * fraction):,}", "end"))
        if fraction:
            chart.lines.append(Line(left - 3, y, left, y))
    for i, b in enumerate(bins):
        x = left + i * step
        span = f"{ms_text(b.low)} to {ms_text(b.high)}"
        y = base
        for count, css, what in ((b.ok, "ok", "succeeded"), (b.failed, "failed", "failed")):
            if count:
                h = count / peak * plot_h
                y -= h
                chart.rects.append(
                    Rect(
                        round(x + 1, 2),
                        round(y, 2),
                        round(max(step - 2, 1), 2),
                        round(h, 2),
                        css,
                        f"{span}: {count:,} {what}",
                    )
                )
        # label the edges a person reads: 1, 2 and 5 of each decade
        mantissa = b.low / 10 ** math.floor(math.log10(b.low)) if b.low > 0 else 0
        if round(mantissa, 2) in (1.0, 2.0, 5.0) or i == 0:
            chart.texts.append(Text(round(x, 2), base + 16, ms_text(b.low)))
            chart.lines.append(Line(x, base, x, base + 4))
    chart.texts.append(Text(left + plot_w / 2, height - 4, "total time per target (log scale)"))
    return chart


def phases(timings: list[PhaseTiming], *, width: int = 760) -> Chart:
    left, right, top, row_h = 90, 300, 8, 30
    height = top + row_h * max(len(timings), 1) + 24
    chart = Chart(
        width,
        height,
        "Per-phase time of successes: p50, p90 and p99 bars for each phase",
    )
    if not timings:
        return chart
    plot_w = width - left - right
    scale = max(t.p99 for t in timings) or 1.0
    for i, t in enumerate(timings):
        y = top + i * row_h
        chart.texts.append(Text(left - 8, y + row_h / 2 + 4, t.phase, "end", "label"))
        for value, css in ((t.p99, "p99"), (t.p90, "p90"), (t.p50, "p50")):
            chart.rects.append(
                Rect(
                    left,
                    y + 5,
                    round(max(value / scale * plot_w, 1), 2),
                    row_h - 10,
                    css,
                    f"{t.phase} {css}: {ms_text(value)} ({t.count:,} timed)",
                )
            )
        chart.texts.append(
            Text(
                left + plot_w + 8,
                y + row_h / 2 + 4,
                f"p50 {ms_text(t.p50)} · p90 {ms_text(t.p90)} · p99 {ms_text(t.p99)}",
                "start",
                "label",
            )
        )
    base = top + row_h * len(timings)
    chart.lines.append(Line(left, base, left + plot_w, base))
    chart.texts.append(Text(left, base + 16, "0", "start"))
    chart.texts.append(Text(left + plot_w, base + 16, ms_text(scale), "end"))
    return chart
