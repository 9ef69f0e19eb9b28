"""Inline SVG charts, drawn here with no plotting library: the page needs no network and no
script to show them.

Each function returns one ``<svg>`` element as text. x is time (epoch seconds) over the run's
span, so every chart of the page lines up; NaN breaks a line. Coordinates are rounded to
whole pixels, which keeps a page of a few hundred charts to a few megabytes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape

import numpy as np

WIDTH = 760
LEFT, RIGHT, TOP, BOTTOM = 58, 10, 8, 20
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b")
ALARM = "#d62728"
COMMAND = "#9467bd"
FAULT = "#ff7f0e"

#: Values along x or y: a list or a numpy array (NaN for none).
Values = Sequence[float] | np.ndarray


@dataclass(frozen=True)
class Line:
    """A series: ``xs`` in epoch seconds, ``ys`` its values (NaN for none)."""

    name: str
    xs: Values
    ys: Values
    color: str = PALETTE[0]
    dashed: bool = False


@dataclass(frozen=True)
class Band:
    """A shaded range between ``lo`` and ``hi`` (an envelope or an interval)."""

    xs: Values
    lo: Values
    hi: Values
    color: str = PALETTE[0]


@dataclass(frozen=True)
class Span:
    """A time range shaded over the whole height (an alarm), with a tooltip."""

    x0: float
    x1: float
    label: str
    color: str = ALARM


@dataclass(frozen=True)
class Mark:
    """A vertical line at one time (a command, a fault's onset or failure), with a tooltip."""

    x: float
    label: str
    color: str = COMMAND
    dashed: bool = False


@dataclass(frozen=True)
class Chart:
    """What one time chart shows."""

    title: str
    lines: list[Line] = field(default_factory=list)
    bands: list[Band] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    hlines: list[tuple[float, str, str]] = field(default_factory=list)  # value, label, color
    height: int = 130


def _finite(values: Values) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def nice_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    """About ``n`` round values between ``lo`` and ``hi``.

    >>> nice_ticks(0.0, 97.0)
    [0.0, 25.0, 50.0, 75.0]
    """
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


_TIME_STEPS = (60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800)


def time_ticks(lo: float, hi: float, n: int = 6) -> list[tuple[float, str]]:
    """Round times between ``lo`` and ``hi`` with their labels (UTC)."""
    step = next((s for s in _TIME_STEPS if (hi - lo) / s <= n), _TIME_STEPS[-1])
    fmt = "%H:%M" if hi - lo <= 2 * 86400 else "%m-%d %H:%M"
    first = math.ceil(lo / step) * step
    out: list[tuple[float, str]] = []
    t = float(first)
    while t <= hi:
        out.append((t, datetime.fromtimestamp(t, UTC).strftime(fmt)))
        t += step
    return out


def _anchor(x: float) -> str:
    """A time label's anchor: its end near the right edge, so it is not cut off."""
    return "end" if x > WIDTH - RIGHT - 16 else "middle"


def _fmt(v: float) -> str:
    if v == 0 or 0.01 <= abs(v) < 1e5:
        return f"{v:.4g}"
    return f"{v:.2g}"


class _Frame:
    """Maps data to pixels for one chart."""

    def __init__(self, span: tuple[float, float], ylo: float, yhi: float, height: int) -> None:
        self.t0, self.t1 = span
        self.ylo, self.yhi = ylo, yhi
        self.h = height
        self.pw = WIDTH - LEFT - RIGHT
        self.ph = height - TOP - BOTTOM

    def x(self, t: float) -> float:
        return LEFT + (t - self.t0) / (self.t1 - self.t0) * self.pw

    def y(self, v: float) -> float:
        return TOP + (1 - (v - self.ylo) / (self.yhi - self.ylo)) * self.ph

    def xs(self, ts: Values) -> np.ndarray:
        a = np.asarray(ts, dtype=float)
        return np.clip(np.round(LEFT + (a - self.t0) / (self.t1 - self.t0) * self.pw), -9, WIDTH)

    def ys(self, vs: Values) -> np.ndarray:
        a = np.asarray(vs, dtype=float)
        return np.round(TOP + (1 - (a - self.ylo) / (self.yhi - self.ylo)) * self.ph)


def _path(xs: np.ndarray, ys: np.ndarray) -> str:
    """SVG path data through the points, broken where one is NaN. Steps are relative
    (``l dx dy``, repeated implicitly): about half the bytes of absolute coordinates.

    >>> _path(np.array([10.0, 12.0, 14.0, 16.0]), np.array([5.0, 6.0, np.nan, 4.0]))
    'M10 5l2 1M16 4'
    """
    parts: list[str] = []
    last: tuple[float, float] | None = None
    for x, y in zip(xs, ys, strict=True):
        if not (math.isfinite(x) and math.isfinite(y)):
            last = None
            continue
        if last is None:
            parts.append(f"M{x:.0f} {y:.0f}")
        else:
            parts.append(
                f"{'l' if parts[-1][0] == 'M' else ' '}{x - last[0]:.0f} {y - last[1]:.0f}"
            )
        last = (x, y)
    return "".join(parts)


def _y_range(chart: Chart) -> tuple[float, float]:
    vals: list[float] = []
    for line in chart.lines:
        vals += _finite(line.ys)
    for band in chart.bands:
        vals += _finite(band.lo) + _finite(band.hi)
    vals += _finite([h[0] for h in chart.hlines])
    if not vals:
        return (0.0, 1.0)
    lo, hi = min(vals), max(vals)
    pad = (hi - lo) * 0.06 or abs(hi) * 0.06 or 1.0
    return (lo - pad, hi + pad)


def time_chart(chart: Chart, span: tuple[float, float]) -> str:
    """One time chart as SVG: bands, lines, threshold lines, shaded spans and marks."""
    ylo, yhi = _y_range(chart)
    f = _Frame(span, ylo, yhi, chart.height)
    out = [_open(chart.height, chart.title)]
    for s in chart.spans:
        x0, x1 = max(f.x(s.x0), LEFT), min(f.x(s.x1), WIDTH - RIGHT)
        if x1 > x0 - 1:
            out.append(
                f'<rect class="span" x="{x0:.0f}" y="{TOP}" width="{max(x1 - x0, 2):.0f}" '
                f'height="{f.ph}" fill="{s.color}" opacity="0.15">'
                f"<title>{escape(s.label)}</title></rect>"
            )
    out += _axes(f)
    for b in chart.bands:
        xs = f.xs(b.xs)
        top, bottom = f.ys(b.hi), f.ys(b.lo)
        ok = np.isfinite(top) & np.isfinite(bottom)
        if ok.any():
            ring_x = np.concatenate([xs[ok], xs[ok][::-1]])
            ring_y = np.concatenate([top[ok], bottom[ok][::-1]])
            d = _path(ring_x, ring_y)
            out.append(f'<path d="{d}Z" fill="{b.color}" opacity="0.18"/>')
    for value, label, color in chart.hlines:
        if math.isfinite(value):
            y = f.y(value)
            out.append(
                f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.0f}" y2="{y:.0f}" '
                f'stroke="{color}" stroke-dasharray="5 3"><title>{escape(label)}</title></line>'
            )
    for line in chart.lines:
        d = _path(f.xs(line.xs), f.ys(line.ys))
        if d:
            dash = ' stroke-dasharray="6 3"' if line.dashed else ""
            out.append(
                f'<path class="series" d="{d}" fill="none" stroke="{line.color}" '
                f'stroke-width="1.3"{dash}><title>{escape(line.name)}</title></path>'
            )
    for m in chart.marks:
        x = f.x(m.x)
        if LEFT <= x <= WIDTH - RIGHT:
            dash = ' stroke-dasharray="2 2"' if m.dashed else ""
            out.append(
                f'<line class="mark" x1="{x:.0f}" x2="{x:.0f}" y1="{TOP}" y2="{TOP + f.ph}" '
                f'stroke="{m.color}" stroke-width="1.5"{dash}><title>{escape(m.label)}</title>'
                "</line>"
            )
    out.append(_legend(chart))
    out.append("</svg>")
    return "".join(out)


def _open(height: int, title: str) -> str:
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" role="img" aria-label="{escape(title)}">'
    )


def _axes(f: _Frame) -> list[str]:
    out = [f'<rect x="{LEFT}" y="{TOP}" width="{f.pw}" height="{f.ph}" fill="none" stroke="#ccc"/>']
    for v in nice_ticks(f.ylo, f.yhi):
        y = f.y(v)
        out.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.0f}" y2="{y:.0f}" stroke="#eee"/>'
            f'<text x="{LEFT - 4}" y="{y + 3:.0f}" text-anchor="end">{_fmt(v)}</text>'
        )
    out += _time_labels(f, tick=True)
    return out


def _time_labels(f: _Frame, tick: bool = False) -> list[str]:
    """The time axis's labels under a chart (with a tick mark on the plot's edge)."""
    out = []
    for t, label in time_ticks(f.t0, f.t1):
        x = f.x(t)
        text = f'<text x="{x:.0f}" y="{f.h - 5}" text-anchor="{_anchor(x)}">{label}</text>'
        if tick:
            text += (
                f'<line x1="{x:.0f}" x2="{x:.0f}" y1="{TOP + f.ph}" y2="{TOP + f.ph + 3}" '
                'stroke="#999"/>'
            )
        out.append(text)
    return out


def _legend(chart: Chart) -> str:
    items = [(line.name, line.color) for line in chart.lines]
    items += [(label, color) for _v, label, color in chart.hlines]
    text, x = [], LEFT + 6
    for name, color in items:
        text.append(
            f'<text x="{x}" y="{TOP + 12}" fill="{color}" class="legend">{escape(name)}</text>'
        )
        x += 8 + 6 * len(name)
    return "".join(text)


def heatmap(
    title: str,
    span: tuple[float, float],
    starts: Values,
    ends: Values,
    rows: Sequence[str],
    values: np.ndarray,
) -> str:
    """A grid of ``values[row, column]`` over time columns ``[starts, ends)``, coloured from
    light (the chart's smallest value) to dark (its largest); NaN is left white. The range is
    in the chart's tooltip (cells carry none: they are most of a page's bytes)."""
    height = TOP + BOTTOM + 16 * len(rows) + 4
    f = _Frame(span, 0.0, 1.0, height)
    out = [_open(height, title)]
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    out.append(f"<title>{escape(title)}: {_fmt(lo)} (light) to {_fmt(hi)} (dark)</title>")
    for i, name in enumerate(rows):
        y = TOP + 16 * i
        out.append(f'<text x="{LEFT - 4}" y="{y + 12}" text-anchor="end">{escape(name)}</text>')
        for j, (s, e) in enumerate(zip(starts, ends, strict=True)):
            v = values[i, j]
            if not math.isfinite(v):
                continue
            x0, x1 = f.x(s), f.x(e)
            shade = (v - lo) / (hi - lo) if hi > lo else 0.5
            out.append(
                f'<rect x="{x0:.0f}" y="{y}" width="{max(x1 - x0, 1):.0f}" height="15" '
                f'fill="{_blue(shade)}"/>'
            )
    out += _time_labels(f)
    out.append("</svg>")
    return "".join(out)


def _blue(shade: float) -> str:
    """From pale yellow (0) to dark blue (1)."""
    a, b = (255, 247, 188), (8, 48, 107)
    c = [round(a[k] + (b[k] - a[k]) * min(max(shade, 0.0), 1.0)) for k in range(3)]
    return f"rgb({c[0]},{c[1]},{c[2]})"


def lanes(
    title: str,
    span: tuple[float, float],
    rows: Sequence[str],
    spans: dict[str, list[Span]],
    marks: dict[str, list[Mark]],
) -> str:
    """One lane per row (twin) with its shaded spans (alarms) and marks (commands, faults)."""
    height = TOP + BOTTOM + 14 * len(rows) + 4
    f = _Frame(span, 0.0, 1.0, height)
    out = [_open(height, title)]
    for i, name in enumerate(rows):
        y = TOP + 14 * i
        out.append(
            f'<text x="{LEFT - 4}" y="{y + 11}" text-anchor="end">{escape(name)}</text>'
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y + 7}" y2="{y + 7}" stroke="#eee"/>'
        )
        for s in spans.get(name, []):
            x0, x1 = max(f.x(s.x0), LEFT), min(f.x(s.x1), WIDTH - RIGHT)
            out.append(
                f'<rect class="span" x="{x0:.0f}" y="{y + 2}" width="{max(x1 - x0, 2):.0f}" '
                f'height="10" fill="{s.color}" opacity="0.6"><title>{escape(s.label)}</title>'
                "</rect>"
            )
        for m in marks.get(name, []):
            x = f.x(m.x)
            if LEFT <= x <= WIDTH - RIGHT:
                out.append(
                    f'<line class="mark" x1="{x:.0f}" x2="{x:.0f}" y1="{y}" y2="{y + 14}" '
                    f'stroke="{m.color}" stroke-width="2"><title>{escape(m.label)}</title></line>'
                )
    out += _time_labels(f)
    out.append("</svg>")
    return "".join(out)
