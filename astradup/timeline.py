"""A matched pair as a picture: two bars (video A, video B) with the copied intervals drawn on both.

A list of "12.0-20.0 s <- 0.0-8.0 s" lines says where a copy is; two bars to scale say at a
glance how much of each video it is, whether it is one stretch or many, and whether the order was
kept. Interval ``i`` has the same colour on A and on B (and a band joins the two), and each shape
carries an SVG ``<title>`` with its seconds, so a hover gives the numbers. Pure string building:
no Ray, no I/O, no script; the web page (serve/static/app.js) draws the same picture in the
browser with the same :data:`PALETTE`.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

# Colour i links interval i on A to interval i on B; distinguishable, and readable on white.
PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324",
           "#469990", "#800000")
MAX_DRAWN = 64  # intervals per pair: an SVG over thousands of pairs stays bounded
MIN_WIDTH_PX = 2.0  # a 0.1 s interval on a 2 h video must still be visible
WIDTH_PX = 560
MARGIN_PX = 2.0
BAR_H = 14
LABEL_H = 16  # room for the label above A and below B
GAP_H = 30  # between the bars, where the bands joining A to B run


@dataclass(frozen=True)
class Span:
    """Seconds ``[a_start, a_end]`` of video A are seconds ``[b_start, b_end]`` of video B."""

    a_start: float
    a_end: float
    b_start: float
    b_end: float
    score: float | None = None


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _finite(*xs: float) -> bool:
    return all(isinstance(x, (int, float)) and math.isfinite(x) for x in xs)


def clean_spans(spans: Iterable[Span]) -> list[Span]:
    """Spans with finite numbers only, starts >= 0 and ends >= starts (a record may be damaged)."""
    out = []
    for s in spans:
        if not _finite(s.a_start, s.a_end, s.b_start, s.b_end):
            continue
        a0, b0 = max(0.0, float(s.a_start)), max(0.0, float(s.b_start))
        out.append(Span(a0, max(a0, float(s.a_end)), b0, max(b0, float(s.b_end)),
                        s.score if s.score is None or _finite(s.score) else None))
    return out


def bar_length(duration: float | None, ends: Iterable[float]) -> float:
    """The duration when it is known; else the furthest interval end (the bar must hold them all)."""
    if duration is not None and _finite(duration) and duration > 0:
        return float(duration)
    return max((e for e in ends), default=0.0) or 1.0


def moments(spans: Sequence[Span], n: int) -> list[int]:
    """Indices of the ``n`` spans worth a picture (best score first, then earliest), in time order:
    at most ``n`` frames per side however many intervals a pair has."""
    if n <= 0:
        return []
    order = sorted(range(len(spans)), key=lambda i: (-(spans[i].score or 0.0), spans[i].a_start, i))
    return sorted(order[:n], key=lambda i: (spans[i].a_start, i))


def _e(s: object) -> str:
    return html.escape(str(s), quote=True)


def _x(t: float, scale: float) -> float:
    return round(MARGIN_PX + t * scale, 2)


def _w(t0: float, t1: float, scale: float) -> float:
    return round(max(MIN_WIDTH_PX, (t1 - t0) * scale), 2)


def span_title(i: int, s: Span, a_label: str, b_label: str) -> str:
    score = "" if s.score is None else f" (score {s.score:.2f})"
    return (f"interval {i + 1}: {a_label} {s.a_start:.1f}\u2013{s.a_end:.1f} s \u2194 "
            f"{b_label} {s.b_start:.1f}\u2013{s.b_end:.1f} s{score}")


def timeline_svg(a_duration: float | None, b_duration: float | None, spans: Iterable[Span], *,
                 a_label: str = "A", b_label: str = "B", width: int = WIDTH_PX) -> str:
    """Inline ``<svg>`` of one pair: bar A on top, bar B below, lengths proportional to durations
    (the longer video spans ``width``), interval ``i`` in :func:`colour` ``(i)`` on both bars.

    Meant to sit inline in an HTML page (so no ``xmlns``: the page fetches nothing, not even a
    namespace URL). Labels are user data (file names): escaped. Intervals are clamped into their bar; at most
    :data:`MAX_DRAWN` are drawn and the caption says how many were left out.
    """
    spans = clean_spans(spans)
    left_out = max(0, len(spans) - MAX_DRAWN)
    spans = spans[:MAX_DRAWN]
    da = bar_length(a_duration, (s.a_end for s in spans))
    db = bar_length(b_duration, (s.b_end for s in spans))
    width = max(40, int(width))
    scale = (width - 2 * MARGIN_PX) / max(da, db)
    ya, yb = LABEL_H, LABEL_H + BAR_H + GAP_H
    height = yb + BAR_H + LABEL_H
    more = f" \u00b7 {left_out} more interval(s) not drawn" if left_out else ""
    parts = [f'<svg class="timeline" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(a_label)} and {_e(b_label)}: '
             f'{len(spans)} copied interval(s)">',
             f'<text x="{MARGIN_PX}" y="{ya - 4}" font-size="11" fill="#1d2330">{_e(a_label)} \u00b7 '
             f'{da:.1f} s{_e(more)}</text>',
             f'<rect class="track track-a" x="{MARGIN_PX}" y="{ya}" width="{round(da * scale, 2)}" '
             f'height="{BAR_H}" rx="3" fill="#dfe3ec"><title>{_e(a_label)}: 0\u2013{da:.1f} s</title></rect>',
             f'<rect class="track track-b" x="{MARGIN_PX}" y="{yb}" width="{round(db * scale, 2)}" '
             f'height="{BAR_H}" rx="3" fill="#dfe3ec"><title>{_e(b_label)}: 0\u2013{db:.1f} s</title></rect>',
             f'<text x="{MARGIN_PX}" y="{yb + BAR_H + LABEL_H - 4}" font-size="11" fill="#1d2330">'
             f'{_e(b_label)} \u00b7 {db:.1f} s</text>']
    for i, s in enumerate(spans):
        a0, a1 = min(s.a_start, da), min(s.a_end, da)
        b0, b1 = min(s.b_start, db), min(s.b_end, db)
        xa, wa, xb, wb = _x(a0, scale), _w(a0, a1, scale), _x(b0, scale), _w(b0, b1, scale)
        c, title = colour(i), f"<title>{_e(span_title(i, s, a_label, b_label))}</title>"
        parts.append(f'<polygon class="band" data-index="{i}" points="{xa},{ya + BAR_H} {xa + wa},{ya + BAR_H} '
                     f'{xb + wb},{yb} {xb},{yb}" fill="{c}" fill-opacity="0.22">{title}</polygon>')
        parts.append(f'<rect class="iv iv-a" data-index="{i}" x="{xa}" y="{ya}" width="{wa}" height="{BAR_H}" '
                     f'fill="{c}">{title}</rect>')
        parts.append(f'<rect class="iv iv-b" data-index="{i}" x="{xb}" y="{yb}" width="{wb}" height="{BAR_H}" '
                     f'fill="{c}">{title}</rect>')
    parts.append("</svg>")
    return "".join(parts)
