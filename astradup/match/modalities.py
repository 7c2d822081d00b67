"""One pair's visual and audio pieces made into one list: which modality places a copy, and how
much two modalities that found the same copy are worth together.

Pure functions over ``Piece`` records (match/piece.py) and, for ``seen_along``, the pair's frame
similarities; used by ``align.align_pair`` after each modality was aligned and checked on its own.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from astradup.match.piece import Piece

Merged = list[tuple[Piece, tuple[str, ...]]]


def overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def same_line(v: Piece, a: Piece, tol: float) -> bool:
    """Whether the two pieces' lines pass within ``tol`` seconds of source time of each other in
    the middle of their common query span: the same copy seen twice, not two places of a source
    that happen to overlap (a 5 s audio window overlaps a great deal)."""
    mid = (max(v.q_start, a.q_start) + min(v.q_end, a.q_end)) / 2
    return abs((v.slope * mid + v.offset) - (a.slope * mid + a.offset)) <= tol


def heard_line(p: Piece, audio: list[Piece], tol: float) -> tuple[float, float] | None:
    """(slope, offset) of the longest audio piece that found the copy ``p`` on its line
    (``same_line`` within ``tol``, overlapping it in the query), or None."""
    on = [a for a in audio if overlap(p.q_start, p.q_end, a.q_start, a.q_end) > 0 and same_line(p, a, tol)]
    a = max(on, key=lambda a: a.q_end - a.q_start, default=None)
    return None if a is None else (a.slope, a.offset)


def both_found(v: float, a: float) -> float:
    """Score of a copy that sight and sound found on the same line, each short of sure: the chance
    that not both are wrong, as if they erred independently. A look-alike picture rarely comes with
    a look-alike soundtrack at the same offset; a copy under stacked edits (a speed change, an
    overlay, added noise) often leaves each modality at 0.4-0.5 (hard benchmark seed 7: 0.47 and
    0.43 on the true line, 0.70 together)."""
    return 1.0 - (1.0 - max(v, 0.0)) * (1.0 - max(a, 0.0))


def merge_modalities(visual: list[Piece], audio: list[Piece], tol: float = 0.0,
                     min_score: float = 2.0, window: float = 0.0) -> Merged:
    """Visual pieces keep their (sharper) boundaries; an audio piece that agrees with one (same
    stretch of both videos) confirms it, one that does not is a copy found by sound alone.

    ``window``: the audio windows' length. An audio piece's ends are known only to within about a
    window (each matching window is partly copied), so the sound shows more copied than the picture
    only when it reaches past the picture by more than that: a 3 s copy (hard seed 5) matched 3 s
    of picture and 6.5 s of sound, and the sound's bounds cost it half its overlap.

    ``tol`` (> 0): an audio piece on the visual piece's line (``same_line``) lifts both to
    ``both_found``. ``min_score``: a visual piece that does not pass on its own while the
    agreeing audio does is placed in the source by the audio's line, the one that passed its checks
    (the picture's line failed them: on footage that looks alike for seconds it lands seconds off).
    The defaults leave both out."""
    out: Merged = []
    used = set()
    for v in visual:
        mods: tuple[str, ...] = ("visual",)
        alone = v.score  # two audio pieces of one soundtrack are one witness, not two: lift once
        for k, a in enumerate(audio):
            if overlap(v.q_start, v.q_end, a.q_start, a.q_end) > 0 and \
                    overlap(v.s_start, v.s_end, a.s_start, a.s_end) > 0:
                used.add(k)
                mods = ("visual", "audio")
                if tol > 0 and same_line(v, a, tol):
                    v = dataclasses.replace(v, score=max(both_found(alone, a.score), v.score))
                score = max(v.score, a.score)
                if _sound_reaches_past(a.q_end - a.q_start, v.q_end - v.q_start, window):
                    # the picture matched only a fragment of what the sound shows was copied
                    v = _piece(a, a.q_start, a.q_end, a.s_start, a.s_end, score)
                elif v.static or alone < min_score <= a.score:  # on its own: before the lift above
                    # still pictures give the query span but not where in the source: sound does
                    v = _piece(a, v.q_start, v.q_end, *a.source_span(v.q_start, v.q_end), score)
                else:
                    v = _piece(v, v.q_start, v.q_end, v.s_start, v.s_end, score)
        out.append((v, mods))
    out += [(a, ("audio",)) for k, a in enumerate(audio) if k not in used]
    return out


def _sound_reaches_past(a_len: float, v_len: float, window: float) -> bool:
    """Whether a heard copy of ``a_len`` s shows more copied than a picture of ``v_len`` s: half as
    long again, and longer by more than an audio window (its ends are known to within about one)."""
    return a_len > 1.5 * v_len and a_len - v_len > window


def seen_along(a: Piece, tq: np.ndarray, ts: np.ndarray, sim: np.ndarray, floor: float, tol: float,
               min_len: float, window: float, frame: float = 1.0,
               q_valid: np.ndarray | None = None) -> Piece | None:
    """An audio piece bounded by the picture along its own line, or None where the picture does
    not match there.

    A copy that kept its picture is sometimes found by sound alone: the picture's own line was
    drawn to a look-alike stretch and failed its checks (hard seed 6: 6 s of a source whose
    neighbouring shots match as well), so no visual piece confirms the audio one and its ends fall
    where 5 s windows and the codes put them, 2.5 s early there. Read along the sound's line, the
    frames match within the copy (0.58-0.65) and not a frame outside it (<= 0.02). The run of query
    frames (one missed frame bridged) whose source frame within ``tol`` of the line reaches
    ``floor`` (a cell the alignment counts), ``min_len`` long or more, lying half or more within
    the piece and not outreached by it (``_sound_reaches_past``), gives the copy's span, half a
    ``frame`` either side of its frames; a picture matching all along a still scene runs far past
    the piece and is not taken."""
    rows = np.flatnonzero((tq >= a.q_start - window) & (tq <= a.q_end + window))
    if not len(rows) or not len(ts):
        return None
    near = np.abs(ts[None, :] - (a.slope * tq[rows] + a.offset)[:, None]) <= tol
    hit = np.where(near, sim[rows], -np.inf).max(axis=1) >= floor
    if q_valid is not None:
        hit &= np.asarray(q_valid, bool)[rows]
    idx = np.flatnonzero(hit)
    hit[idx[:-1][np.diff(idx) == 2] + 1] = True
    edges = np.flatnonzero(np.diff(np.r_[0, hit.astype(np.int8), 0]))
    best: tuple[float, float, float] | None = None
    for i, j in zip(edges[::2], edges[1::2] - 1):
        t0, t1 = float(tq[rows[i]]) - frame / 2, float(tq[rows[j]]) + frame / 2
        inside = overlap(t0, t1, a.q_start, a.q_end)
        if t1 - t0 >= min_len and inside >= (t1 - t0) / 2 and (best is None or inside > best[2]) and \
                not _sound_reaches_past(a.q_end - a.q_start, t1 - t0, window):
            best = (t0, t1, inside)
    if best is None:
        return None
    t0, t1 = best[0], best[1]
    return _piece(a, t0, t1, *a.source_span(t0, t1), a.score)


# Seconds by which the sound places a copy late. An audio item's time is the middle of everything it
# depends on (features/chromaprint.py ``CP_ITEM_CENTRE_S``, 1.36 s in), which also places items in
# the indexed windows; but most of Chromaprint's classifiers read fewer than its 16 frames, starting
# from the first, so the sound an item reflects is centred earlier. Copies found by sound alone on
# the hard benchmark started about 0.4 s late and ended 0.4-0.5 s late (medians over 16); moving
# them 0.2-0.45 s earlier scored the same there, and 0.33 s left dev40's whole-soundtrack copies as
# they were (docs/performance.md).
HEARD_LAG_S = 0.33


def heard_earlier(a: Piece, q_extent: tuple[float, float], s_extent: tuple[float, float],
                  lag: float = HEARD_LAG_S) -> Piece:
    """An audio-only piece moved ``lag`` seconds earlier along its line, except an end at the
    first or last sound of its query or source (``q_extent``, ``s_extent``: first window start,
    last window end): nothing lies beyond it to have been heard late, and a whole-soundtrack copy
    ends where its video does."""
    if lag <= 0:
        return a
    at_start = a.q_start <= q_extent[0] or a.s_start <= s_extent[0]
    at_end = a.q_end >= q_extent[1] or a.s_end >= s_extent[1]
    q0 = a.q_start if at_start else max(a.q_start - lag, 0.0)
    q1 = a.q_end if at_end else a.q_end - lag
    s0, s1 = a.source_span(q0, q1)
    return dataclasses.replace(a, q_start=q0, q_end=q1, s_start=a.s_start if at_start else s0,
                               s_end=a.s_end if at_end else s1)


def _piece(line: Piece, q0: float, q1: float, s0: float, s1: float, score: float) -> Piece:
    """A merged piece on ``line``'s slope and offset; merged pieces are no longer still or
    length-scaled (``static``, ``full`` back to their defaults)."""
    return dataclasses.replace(line, q_start=q0, q_end=q1, s_start=s0, s_end=s1, score=score,
                               static=False, full=-1.0)


def merge_close(pieces: Merged, max_gap: float) -> Merged:
    """Join pieces of one line that a dropped stretch (an overlay, a fade) cut in two."""
    pieces = sorted(pieces, key=lambda p: p[0].q_start)
    out: Merged = []
    for p, mods in pieces:
        if out:
            last, lmods = out[-1]
            on_line = abs((p.s_start - last.s_end) - (p.q_start - last.q_end) * last.slope) <= max_gap
            if 0 <= p.q_start - last.q_end <= max_gap and on_line:
                w0, w1 = last.q_end - last.q_start, p.q_end - p.q_start
                out[-1] = (_piece(last, last.q_start, p.q_end, min(last.s_start, p.s_start),
                                  max(last.s_end, p.s_end), (last.score * w0 + p.score * w1) / (w0 + w1)),
                           tuple(sorted(set(lmods) | set(mods), key=("visual", "audio").index)))
                continue
        out.append((p, mods))
    return out
