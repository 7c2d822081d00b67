"""Whether an audio piece is the same recording: Chromaprint codes compared along its line.

An audio piece is found from window vectors (features/audio.py): code histograms and MFCC timbre
pooled over 5 s, which tell music from speech and one piece from another well, but not two tracks
of one soundtrack. On the hard benchmark another track of the same game's music matched a query's
bed at 0.62-0.64 (through the pitch readings), while copies under noise, a tempo change and a pitch
shift scored 0.60-0.63: no floor on the pooled score separates them. The codes themselves do: a
copy's Chromaprint items, read along the piece's line (source time = slope x query time + offset),
disagree with its source's in 4-26% of their bits (the best reading of a pitch-shifted copy: 13-24%),
while unrelated music of the same kind disagrees in 29% and more as it is, and in 22% and more at
the best of the 16 pitch readings (hard benchmark seeds 5-9 and 11, every audio piece aligned;
docs/performance.md). The bit error rate (BER) is a second, independent witness: a piece it
confirms is reported (``confirmed``), one it does not confirm keeps its score, so a copy the codes
cannot see (a tempo change that re-times the items, heavy noise) loses nothing. A copy the sound
alone found also ends where its codes stop agreeing (``bounded_by_codes``), which the 1 s window
grid and the cell threshold place only roughly.

Pure numpy: the codes come from the features (the track's own and the query's pitch readings).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from astradup.match.piece import Piece
from astradup.records import CodeReading

# A reading of the query at another pitch is one of 16 tries at a match: the best of them reaches
# lower on unrelated music than the track as it is (hard benchmark: 22-33% against 29% and up), so
# its bit error rate counts this much more, as match/scoring.PITCH_MARGIN does for the vectors.
# Seeds 5-9 and 11: 0.06 and 0.08 reported the same copies, 0.045 one false piece, 0.03 two.
PITCH_BER_MARGIN = 0.08
JITTER_S = 0.5  # the line is fitted on source windows 1 s apart: its offset is tried half a step either way
MIN_ITEMS = 16  # items (about 2 s) a comparison needs before its rate means anything
_BYTE_BITS = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def _bits(x: np.ndarray) -> np.ndarray:
    """Set bits per uint32."""
    b = np.ascontiguousarray(x, np.uint32).view(np.uint8).reshape(-1, 4)
    return _BYTE_BITS[b].sum(axis=1)


def _item_step(s: CodeReading) -> float | None:
    """The source's item spacing (s), None when its times cannot give one (too few, damaged)."""
    step = float(np.median(np.diff(s.times))) if len(s.times) >= 2 else np.nan
    return step if np.isfinite(step) and step > 0 else None


def _nearest_items(times: np.ndarray, target: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """(index of the item nearest each target time, whether it lies within half an item of it)."""
    j = np.clip(np.searchsorted(times, target), 1, len(times) - 1)
    j = np.where(np.abs(times[j - 1] - target) <= np.abs(times[j] - target), j - 1, j)
    return j, np.abs(times[j] - target) <= step / 2 + 1e-9


def bit_error_rate(q: CodeReading, s: CodeReading, slope: float, offset: float, q0: float, q1: float
                   ) -> float:
    """The least share of differing bits between the query's items in [q0, q1] and the source's
    items where the line puts them, over offsets within ``JITTER_S``; 1.0 when fewer than
    ``MIN_ITEMS`` items meet a source item."""
    return line_fit(q, s, slope, offset, q0, q1)[0]


def line_fit(q: CodeReading, s: CodeReading, slope: float, offset: float, q0: float, q1: float
             ) -> tuple[float, float]:
    """(``bit_error_rate``, the offset shift within ``JITTER_S`` that gave it; 0.0 with no rate)."""
    sel = np.flatnonzero((q.times >= q0) & (q.times <= q1))
    step = _item_step(s)
    if len(sel) < MIN_ITEMS or step is None:
        return 1.0, 0.0
    qt, qc = q.times[sel], np.asarray(q.codes, np.uint32)[sel]
    jitters = np.arange(-JITTER_S, JITTER_S + 1e-9, step / 2)
    j, ok = _nearest_items(s.times, slope * qt[None, :] + offset + jitters[:, None], step)  # [offsets, items]
    wrong = _bits(qc[None, :] ^ np.asarray(s.codes, np.uint32)[j]).reshape(j.shape)
    met = ok.sum(axis=1)
    rates = np.where(met >= MIN_ITEMS, np.where(ok, wrong, 0).sum(axis=1) / np.maximum(met, 1) / 32.0, np.inf)
    k = int(np.argmin(rates))
    return (float(rates[k]), float(jitters[k])) if np.isfinite(rates[k]) else (1.0, 0.0)


def best_fit(p: Piece, readings: tuple[CodeReading, ...], s: CodeReading
             ) -> tuple[float, CodeReading | None, float]:
    """(the piece's bit error rate at its best reading, a shifted reading's counted
    ``PITCH_BER_MARGIN`` higher; that reading; ``line_fit``'s offset shift there), or
    (1.0, None, 0.0) without readings."""
    best: tuple[float, CodeReading | None, float] = (1.0, None, 0.0)
    for r in readings:
        rate, shift = line_fit(r, s, p.slope, p.offset, p.q_start, p.q_end)
        rate += PITCH_BER_MARGIN if r.shifted else 0.0
        if best[1] is None or rate < best[0]:
            best = (rate, r, shift)
    return best


def best_error(p: Piece, readings: tuple[CodeReading, ...], s: CodeReading) -> float:
    """``best_fit``'s bit error rate."""
    return best_fit(p, readings, s)[0]


# A piece the codes confirm fully scores at least this: a reported copy, below what sight and sound
# found together reach, so the codes place a piece among the reported without reordering the pieces
# the vectors already scored higher (dev40: a soundtrack two library videos share, confirmed in
# both, would tie with the source the query took it from).
CONFIRMED_CEILING = 0.9


def confirmed(p: Piece, readings: tuple[CodeReading, ...], s: CodeReading | None, none: float, full: float,
              floor: float) -> Piece:
    """``p`` scored at least ``floor`` (the reporting floor) where its codes agree better than
    ``none`` (bit error rate), rising to ``CONFIRMED_CEILING`` at ``full``; ``p`` itself without
    codes, without agreement, or with ``none <= full`` (off)."""
    top = max(CONFIRMED_CEILING, floor)
    if s is None or not readings or none <= full or not len(s.codes) or p.score >= top:
        return p  # (a piece at the ceiling already has nothing to gain: its codes are not read)
    c = float(np.clip((none - best_error(p, readings, s)) / (none - full), 0.0, 1.0))
    if c <= 0:
        return p
    return dataclasses.replace(p, score=max(p.score, floor + (top - floor) * c))


def resloped(p: Piece, readings: tuple[CodeReading, ...], s: CodeReading | None, none: float, full: float,
             slopes: Sequence[float]) -> Piece:
    """``p`` on the line its codes agree on where they confirm it (best reading under ``none``):
    their offset within ``JITTER_S`` and, unless the track as it is already agrees along ``p``
    under ``full``, their slope (``_code_line``); its query span kept; ``p`` itself otherwise.

    A picture sampled once a second places a copy to about half a second, and hardly tells slope
    1 from 1.1 over a 10 s copy (the line means differ by about 0.01), so a sped-up copy is often
    reported at slope 1, a second short in the source. A copy that kept its sound carries 8 code
    items a second, which drift apart within a second or two off the true line. Hard seeds 5-9 and
    11 and dev40: the slopes bounded 9 copies better (IoU +0.01 to +0.10) and one 0.02 worse; the
    offsets then (with ``bounded_by_codes``') 29 better (up to +0.15) and 23 worse by at most 0.02 (exact
    copies moved by an item's jitter). Taking only shifts past 0.15-0.35 s gave the same within
    0.001. Reading every pitch reading at every slope cost +15% of alignment time on dev40."""
    if s is None or not readings or not len(s.codes):
        return p
    q, (rate, shift) = p, line_fit(readings[0], s, p.slope, p.offset, p.q_start, p.q_end)
    if rate >= full:  # the track as it is does not settle it: other readings and slopes are read
        q, rate, r, shift = _code_line(p, readings, s, slopes)
        if r is None:
            return p
    if rate >= none:
        return p
    return q.on_line(q.slope, q.offset + shift)


# Where the same recording goes on past an audio-only copy's ends: its items' errors, averaged over
# EXTEND_ITEMS (1.5 s), stay under EXTEND_BER (a copy reads 0.05-0.3 there, other audio 0.5 with a
# spread of 0.04 over that many items). Window vectors stop matching where part of a window is
# copied, and noise or a tempo change can leave a copy's first seconds under the cell threshold
# (hard seed 6: a 10 s copy found as its last 5 s). Hard seeds 5-9 and 11, widening up to
# segments.audio_pad: LCT 0.840 -> 0.844, segment micro-AP 0.851 -> 0.862; 8 or 16 items, 0.35 or
# 0.45 within 0.001 of that; dev40 unchanged. Reaching a whole window (5 s) out, along the slope the
# codes agree on (``_code_line``), took seeds 5-8 from 0.866 to 0.871 (seed 6's 10 s copy under
# speed and noise, found at slope 1 as 92-97 s: now 87-97 s at 1.1); 4 s gave the same within 0.002.
# Narrowing a piece to its codes' own run lost more than it gained while the sound's lag was not
# taken out (audio-found copies' IoU 0.77 -> 0.69). Since copies found by sound alone are moved
# earlier by it (match/modalities.py ``HEARD_LAG_S``), an end moves in too where the codes stop
# agreeing inside the piece: on dev40 and hard seeds 5-9 and 11, 5 copies whose windows put an end
# 0.3-2 s out came in (seed 6: 19-32 s for a copy of 19-30 s) and one start went 0.6 s late; seeds
# 5-8 0.884 -> 0.887, dev40 0.997 -> 0.998, seeds 9 and 11 unchanged.
EXTEND_ITEMS = 12
EXTEND_BER = 0.40


def _line_errors(q: CodeReading, s: CodeReading, slope: float, offset: float, q0: float, q1: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(times, bit-error shares) of the query's items in [q0, q1] against the source items the line
    puts within half an item; 0.5 (a coin toss) where it puts none."""
    sel = np.flatnonzero((q.times >= q0) & (q.times <= q1))
    step = _item_step(s)
    if not len(sel) or step is None:
        return q.times[sel], np.full(len(sel), 0.5)
    j, ok = _nearest_items(s.times, slope * q.times[sel] + offset, step)
    wrong = _bits(np.asarray(q.codes, np.uint32)[sel] ^ np.asarray(s.codes, np.uint32)[j]) / 32.0
    return q.times[sel], np.where(ok, wrong, 0.5)


def _code_line(p: Piece, readings: tuple[CodeReading, ...], s: CodeReading, slopes: Sequence[float]
               ) -> tuple[Piece, float, CodeReading | None, float]:
    """(``p`` on the slope whose codes agree best over its span, turned about its middle; then
    ``best_fit`` there). The pooled window vectors hardly change with tempo, so a 10% speed-up is
    often aligned at slope 1, along which its items drift apart from the source's within seconds;
    along its true slope they agree throughout (hard seeds 5, 6 and 9: 0.17-0.26 there)."""
    rate, r, shift = best_fit(p, readings, s)
    best = (p, rate, r, shift)
    if r is None:
        return best
    mid, margin = (p.q_start + p.q_end) / 2, PITCH_BER_MARGIN if r.shifted else 0.0
    # the other slopes are read on the reading the piece's own line chose: every reading at every
    # slope gave the same lines at +20% of alignment time (dev40), this +1-3%
    for slope in slopes:
        if slope > 0 and slope != p.slope:
            q = dataclasses.replace(p, slope=float(slope), offset=p.offset + (p.slope - slope) * mid)
            rate, shift = line_fit(r, s, q.slope, q.offset, q.q_start, q.q_end)
            if rate + margin < best[1]:
                best = (q, rate + margin, r, shift)
    return best


def bounded_by_codes(p: Piece, readings: tuple[CodeReading, ...], s: CodeReading | None, none: float,
                     reach: float, slopes: Sequence[float] = ()) -> Piece:
    """An audio-only piece whose codes confirm it (best reading under ``none``), its query bounds
    moved to where that reading's codes stop agreeing with the source along the line they agree
    best on (its own or one of ``slopes``): out by at most ``reach`` seconds, or in where they stop
    agreeing inside it and the reading goes on disagreeing there (an end that the reading's first
    or last items reach stays: nothing there says the copy stops); ``p`` itself otherwise.

    Where the codes reach more than a second past the windows, the slope is read again over that
    span, and the bounds with it: over a short piece slopes 1.1 and 1.15 agree alike, and along the
    wrong one a sped copy's first seconds drift apart (hard seed 9: a copy of 26-36 s found as
    30.5-35 s was widened along 1.15 to 27.5 s only; along 1.1, read over 27.5-36 s, to 26.7 s)."""
    if s is None or not readings or reach <= 0 or not len(s.codes):
        return p
    window = (p.q_start - reach, p.q_end + reach)
    run = _code_run(p, readings, s, none, slopes, window)
    if run is None:
        return p
    line, q0, q1 = run
    if q1 - q0 > p.q_end - p.q_start + REREAD_S:
        again = _code_run(line.on_line(line.slope, line.offset, q0, q1), readings, s, none, slopes, window)
        if again is not None:
            line, q0, q1 = again
    return line.on_line(line.slope, line.offset, q0, q1)


REREAD_S = 1.0  # seconds the codes must reach past the windows before their slope is read again


def _code_run(p: Piece, readings: tuple[CodeReading, ...], s: CodeReading, none: float, slopes: Sequence[float],
              window: tuple[float, float]) -> tuple[Piece, float, float] | None:
    """(``p`` on the line its codes agree on, the query bounds of their agreeing run around its
    middle within ``window``), or None where they do not confirm it (best reading under ``none``)."""
    p, rate, r, shift = _code_line(p, readings, s, slopes)
    if r is None or rate >= none:
        return None
    # measured on the offset the codes agree best at (the line is fitted on 1 s windows), where a
    # bounded piece is reported
    p = dataclasses.replace(p, offset=p.offset + shift)
    t, err = _line_errors(r, s, p.slope, p.offset, *window)
    if len(t) < EXTEND_ITEMS:
        return None
    # averaged over the items there are: zeros past the ends of the span read would count as agreement
    ones = np.ones(EXTEND_ITEMS)
    good = np.convolve(err, ones, mode="same") / np.convolve(np.ones(len(err)), ones, mode="same") < EXTEND_BER
    i = int(np.argmin(np.abs(t - (p.q_start + p.q_end) / 2)))
    if not good[i]:
        return None
    bad = np.flatnonzero(~good)
    before, after = bad[bad < i], bad[bad > i]
    q0 = float(t[before.max() + 1]) if len(before) else min(p.q_start, float(t[0]))
    q1 = float(t[after.min() - 1]) if len(after) else max(p.q_end, float(t[-1]))
    return p, q0, q1
