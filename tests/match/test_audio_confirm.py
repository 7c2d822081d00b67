"""match/audio_confirm.py: Chromaprint codes along an audio piece's line tell the same recording from
music that only sounds alike, on hand-made codes and on real Chromaprint of synthetic music."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from astradup.config import SegmentConfig, load_config
from astradup.features.audio import audio_features
from astradup.features.chromaprint import item_times
from astradup.features.pitch_variants import pitch_variants
from astradup.match import audio_confirm
from astradup.match.align import align_pair
from astradup.match.audio_confirm import (CONFIRMED_CEILING, PITCH_BER_MARGIN, REREAD_S, best_error, bit_error_rate,
                                         bounded_by_codes, confirmed, resloped)
from astradup.match.piece import Piece
from astradup.records import CodeReading
from tests.media import synth_music

RNG = np.random.default_rng(5)
HZ = 8.0
CFG = SegmentConfig()


def random_codes(n: int, rng=RNG) -> np.ndarray:
    return rng.integers(0, 2 ** 32, n, dtype=np.uint64).astype(np.uint32)


def flip_bits(codes: np.ndarray, share: float, rng=RNG) -> np.ndarray:
    """``codes`` with each bit flipped with probability ``share`` (noise, a re-encode)."""
    bits = np.unpackbits(codes.astype(">u4").view(np.uint8))
    bits ^= (rng.random(bits.shape) < share).astype(np.uint8)
    return np.packbits(bits).view(">u4").astype(np.uint32)


def reading(codes: np.ndarray, shifted: bool = False, scale: float = 1.0) -> CodeReading:
    return CodeReading(codes, np.arange(len(codes)) / HZ * scale, shifted)


def copied(source: np.ndarray, s0: float, q0: float, q_len: float, q_total: float, share: float,
           speed: float = 1.0) -> np.ndarray:
    """A query of ``q_total`` s of unrelated codes whose [q0, q0 + q_len] is source time s0 on,
    played ``speed`` times faster, with ``share`` of its bits flipped."""
    q = random_codes(int(q_total * HZ))
    t = np.arange(len(q)) / HZ
    inside = (t >= q0) & (t < q0 + q_len)
    j = np.round((s0 + (t[inside] - q0) * speed) * HZ).astype(int)
    q[inside] = flip_bits(source[j], share)
    return q


def test_a_copy_reads_few_differing_bits_along_its_line_and_other_music_half():
    src = random_codes(40 * 8)
    q = copied(src, 10.0, 5.0, 8.0, 30.0, share=0.1)
    assert bit_error_rate(reading(q), reading(src), 1.0, 5.0, 5.0, 13.0) == pytest.approx(0.1, abs=0.03)
    assert bit_error_rate(reading(q), reading(src), 1.0, 5.0, 15.0, 23.0) > 0.4  # not copied there
    assert bit_error_rate(reading(q), reading(random_codes(40 * 8)), 1.0, 5.0, 5.0, 13.0) > 0.4
    # the line from 1 s source windows may sit a quarter second off; items within the jitter still line up
    assert bit_error_rate(reading(q), reading(src), 1.0, 5.25, 5.0, 13.0) < 0.15
    sped = copied(src, 10.0, 5.0, 8.0, 30.0, share=0.1, speed=1.1)  # source = 1.1 * query - 0.5
    assert bit_error_rate(reading(sped), reading(src), 1.1, 4.5, 5.0, 13.0) < 0.15


def test_too_few_items_or_damaged_times_read_as_no_agreement():
    src = random_codes(40 * 8)
    q = copied(src, 10.0, 5.0, 8.0, 30.0, share=0.0)
    assert bit_error_rate(reading(q), reading(src), 1.0, 5.0, 5.0, 6.0) == 1.0  # 1 s: 8 items
    broken = CodeReading(src, np.full(len(src), np.nan))
    assert bit_error_rate(reading(q), broken, 1.0, 5.0, 5.0, 13.0) == 1.0
    assert bit_error_rate(reading(q), reading(src[:1]), 1.0, 5.0, 5.0, 13.0) == 1.0


def _piece(score: float) -> Piece:
    return Piece(5.0, 13.0, 10.0, 18.0, score, 1.0, 5.0)


def test_agreeing_codes_report_a_weak_piece_and_never_lower_or_reorder_a_strong_one():
    src = random_codes(40 * 8)
    q = reading(copied(src, 10.0, 5.0, 8.0, 30.0, share=0.05))
    lifted = confirmed(_piece(0.6), (q,), reading(src), 0.27, 0.12, CFG.min_score)
    assert CFG.min_score < lifted.score <= CONFIRMED_CEILING
    assert confirmed(_piece(0.97), (q,), reading(src), 0.27, 0.12, CFG.min_score).score == 0.97
    other = reading(random_codes(30 * 8))
    assert confirmed(_piece(0.6), (other,), reading(src), 0.27, 0.12, CFG.min_score).score == 0.6
    # off, or nothing to compare with
    assert confirmed(_piece(0.6), (q,), reading(src), 0.12, 0.12, CFG.min_score).score == 0.6
    assert confirmed(_piece(0.6), (), reading(src), 0.27, 0.12, CFG.min_score).score == 0.6
    assert confirmed(_piece(0.6), (q,), None, 0.27, 0.12, CFG.min_score).score == 0.6


def test_a_pitch_reading_counts_its_margin_more_than_the_track_as_it_is():
    """The best of 16 readings of unrelated music reaches lower than one: the same agreement read
    through a shifted reading must clear the floor by PITCH_BER_MARGIN more."""
    src = random_codes(40 * 8)
    q = copied(src, 10.0, 5.0, 8.0, 30.0, share=0.22)
    plain, shifted = best_error(_piece(0.6), (reading(q),), reading(src)), \
        best_error(_piece(0.6), (reading(q, shifted=True),), reading(src))
    assert shifted == pytest.approx(plain + PITCH_BER_MARGIN)
    assert confirmed(_piece(0.6), (reading(q),), reading(src), 0.27, 0.12, CFG.min_score).score > 0.6
    assert confirmed(_piece(0.6), (reading(q, shifted=True),), reading(src), 0.27, 0.12, CFG.min_score).score == 0.6


def _audio_pair(q_codes: np.ndarray, s_codes: np.ndarray):
    """An audio-only pair whose window vectors match q 5-13 s to s 10-18 s at 0.74 (a copy under
    noise scores so, and so does another track of the same soundtrack) and its code readings."""
    qw = np.stack([np.arange(0, 26, 0.5), np.arange(0, 26, 0.5) + 5.0], axis=1)
    sw = np.stack([np.arange(0, 36, 1.0), np.arange(0, 36, 1.0) + 5.0], axis=1)
    qc, sc = qw.mean(axis=1), sw.mean(axis=1)
    sim = RNG.uniform(0.0, 0.3, (len(qw), len(sw)))
    for i, c in enumerate(qc):
        if 7.5 <= c <= 10.5:
            sim[i, int(np.argmin(np.abs(sc - (c + 5.0))))] = 0.74
    return dict(q_windows=qw, s_windows=sw, audio_sim=sim,
                codes=((reading(q_codes),), reading(s_codes)))


def test_a_weak_audio_copy_is_reported_when_its_codes_agree_and_a_sound_alike_is_not():
    src = random_codes(40 * 8)
    args = _audio_pair(copied(src, 10.0, 5.0, 8.0, 30.0, share=0.15), src)

    def run(codes):
        return align_pair("q", "s", np.zeros(0), np.zeros(0), None, args["q_windows"], args["s_windows"],
                          args["audio_sim"], CFG, codes=codes)

    assert run(None) == []  # the vectors alone score it under min_score
    (m,) = run(args["codes"])
    assert m.modalities == ("audio",) and m.score >= CFG.min_score
    assert m.q_start == pytest.approx(5.0, abs=1.0) and m.s_start == pytest.approx(10.0, abs=1.0)
    alike = (args["codes"][0], reading(random_codes(40 * 8)))  # same vectors, another recording
    assert run(alike) == []


@pytest.fixture(scope="module")
def cfg():
    return load_config(None, {})


def test_real_chromaprint_tells_a_noisy_or_pitch_shifted_copy_from_other_music(cfg):
    """Chromaprint of synthetic music (tests/media.py): an excerpt under noise, and one played
    two semitones faster read back through the -2 reading, agree with their source; another
    piece of music of the same make does not, through any reading."""
    sr = 11025
    src = synth_music(30, sr, seed=11)
    noisy = src[5 * sr:25 * sr] + 0.05 * np.random.default_rng(1).normal(size=20 * sr).astype(np.float32)
    factor = 2 ** (2 / 12)
    n = int(20 * sr / factor)
    tape = np.interp(np.arange(n) * factor, np.arange(20 * sr), src[5 * sr:25 * sr]).astype(np.float32)

    def codes(pcm):
        f = audio_features(pcm, sr, cfg.audio)
        return CodeReading(f["chromaprint"], item_times(len(f["chromaprint"]), f["chromaprint_hz"]))

    s = codes(src)
    line = Piece(2.0, 15.0, 7.0, 20.0, 0.6, 1.0, 5.0)
    assert best_error(line, (codes(noisy),), s) < 0.2
    other = synth_music(20, sr, seed=12)
    windows = audio_features(other, sr, cfg.audio, step=0.5)["windows"]
    _, other_reads = pitch_variants(other, sr, cfg.audio, windows)
    assert best_error(line, (codes(other), *other_reads), s) > cfg.segments.audio_confirm_none
    _, tape_reads = pitch_variants(tape, sr, cfg.audio, audio_features(tape, sr, cfg.audio, step=0.5)["windows"])
    sped = dataclasses.replace(line, q_start=1.0, q_end=10.0, slope=factor)
    assert best_error(sped, (codes(tape),), s) > cfg.segments.audio_confirm_none
    assert best_error(sped, tape_reads, s) < cfg.segments.audio_confirm_none


def test_an_audio_copy_is_bounded_where_its_codes_stop_agreeing():
    """Query 2-13 s is source 10-21 s; the windows found only 6-10. Its codes take it out to where
    they stop agreeing, at most ``reach`` further; a piece the windows found too wide comes in to
    them, except at an end the reading's items reach; a sound-alike stays."""
    src = random_codes(40 * 8)
    q = reading(copied(src, 10.0, 2.0, 11.0, 30.0, share=0.1))
    p = Piece(6.0, 10.0, 14.0, 18.0, 0.7, 1.0, 8.0)
    w = bounded_by_codes(p, (q,), reading(src), 0.27, 2.5)
    assert w.q_start == pytest.approx(3.5, abs=0.2)  # the reach, not the copy's start, stops it
    assert w.q_end == pytest.approx(12.5, abs=0.2)  # and at the end too
    assert (w.s_start, w.s_end) == pytest.approx((w.q_start + 8.0, w.q_end + 8.0))
    far = bounded_by_codes(p, (q,), reading(src), 0.27, 10.0)  # the copy's own bounds, within the 1.5 s average
    assert far.q_start == pytest.approx(2.0, abs=0.8) and far.q_end == pytest.approx(13.0, abs=0.8)
    wider = Piece(4.0, 17.0, 12.0, 25.0, 0.7, 1.0, 8.0)
    narrowed = bounded_by_codes(wider, (q,), reading(src), 0.27, 2.5)
    # out to the copy's start, in to its end, within the 1.5 s average
    assert narrowed.q_start == pytest.approx(2.0, abs=0.8) and narrowed.q_end == pytest.approx(13.0, abs=0.8)
    assert (narrowed.s_start, narrowed.s_end) == pytest.approx((narrowed.q_start + 8.0, narrowed.q_end + 8.0))
    # the query's first items agree: nothing before them says where the copy starts
    from_start = Piece(0.0, 16.0, 8.0, 24.0, 0.7, 1.0, 8.0)
    q_from_start = reading(copied(src, 8.0, 0.0, 13.0, 30.0, share=0.1))
    edge = bounded_by_codes(from_start, (q_from_start,), reading(src), 0.27, 2.5)
    assert edge.q_start == 0.0 and edge.q_end == pytest.approx(13.0, abs=0.8)
    assert bounded_by_codes(p, (reading(random_codes(30 * 8)),), reading(src), 0.27, 2.5) == p
    assert bounded_by_codes(p, (q,), reading(src), 0.27, 0.0) == p and bounded_by_codes(p, (q,), None, 0.27, 2.5) == p


def test_disagreeing_items_at_the_end_of_the_span_read_are_not_averaged_with_nothing():
    """Query 2-13 s is source 10-21 s; read out to 1 s, the span holds one second of unrelated
    items before the copy. Averaged with zeros past the span's end they had passed for agreement,
    widening the copy to 1 s."""
    src = random_codes(40 * 8)
    q = reading(copied(src, 10.0, 2.0, 11.0, 30.0, share=0.1))
    w = bounded_by_codes(Piece(6.0, 10.0, 14.0, 18.0, 0.7, 1.0, 8.0), (q,), reading(src), 0.27, 5.0)
    assert w.q_start == pytest.approx(2.0, abs=0.5) and w.q_end == pytest.approx(13.0, abs=0.8)


def test_a_sped_copy_found_at_slope_one_is_widened_along_the_slope_its_codes_agree_on():
    """Query 2-13 s is source 10-22.1 s played 10% faster; the tempo-blind windows found 6-10 s at
    slope 1. Along slope 1 the items drift apart within a second or two of the piece's middle;
    along 1.1 they agree throughout, so the copy is widened to its own ends, on that slope."""
    src = random_codes(40 * 8)
    q = reading(copied(src, 10.0, 2.0, 11.0, 30.0, share=0.1, speed=1.1))
    p = Piece(6.0, 10.0, 14.6, 18.6, 0.7, 1.0, 8.6)  # slope 1 through the copy's line at 8 s
    flat = bounded_by_codes(p, (q,), reading(src), 0.27, 5.0)
    w = bounded_by_codes(p, (q,), reading(src), 0.27, 5.0, slopes=(0.91, 1.0, 1.1))
    assert w.slope == pytest.approx(1.1) and flat.slope == 1.0
    assert w.q_start == pytest.approx(2.0, abs=0.8) and w.q_end == pytest.approx(13.0, abs=0.8)
    assert (w.s_start, w.s_end) == pytest.approx((10.0 + 1.1 * (w.q_start - 2), 10.0 + 1.1 * (w.q_end - 2)), abs=0.2)
    assert w.q_end - w.q_start > flat.q_end - flat.q_start + 3.0
    # a sound-alike is not moved to another slope either
    assert bounded_by_codes(p, (reading(random_codes(30 * 8)),), reading(src), 0.27, 5.0, slopes=(0.91, 1.1)) == p


def test_the_codes_slope_is_read_again_over_the_span_they_reach(monkeypatch):
    """Over a short piece slopes 1.1 and 1.15 read alike (hard seed 9: a sped copy found as 4.5 s
    was widened along 1.15 and stopped 1.5 s short, where that line drifts off); once the codes
    reach more than ``REREAD_S`` past the windows, the slope is read again over what they reach,
    and the bounds with it. Here the windows found 6-10 s of a copy of 2-13 s."""
    src = random_codes(40 * 8)
    q = reading(copied(src, 10.0, 2.0, 11.0, 30.0, share=0.1))
    read_over = []
    real = audio_confirm._code_line

    def spy(p, *args):
        read_over.append((p.q_start, p.q_end))
        return real(p, *args)

    monkeypatch.setattr(audio_confirm, "_code_line", spy)
    w = bounded_by_codes(Piece(6.0, 10.0, 14.0, 18.0, 0.7, 1.0, 8.0), (q,), reading(src), 0.27, 5.0,
                         slopes=(0.91, 1.1))
    assert read_over[0] == (6.0, 10.0) and len(read_over) == 2
    assert read_over[1][0] < 6.0 - REREAD_S and read_over[1][1] > 12.0  # the span the codes reached
    assert w.q_start == pytest.approx(2.0, abs=0.8) and w.q_end == pytest.approx(13.0, abs=0.8)
    read_over.clear()  # codes that reach no further than the windows are not read again
    bounded_by_codes(Piece(1.5, 13.5, 9.5, 21.5, 0.7, 1.0, 8.0), (q,), reading(src), 0.27, 5.0, slopes=(1.1,))
    assert len(read_over) == 1


def test_align_pair_widens_a_copy_found_by_sound_alone_but_not_one_the_picture_bounded():
    src = random_codes(40 * 8)
    args = _audio_pair(copied(src, 7.0, 2.0, 11.0, 30.0, share=0.05), src)  # q 2-13 is s 7-18
    (m,) = align_pair("q", "s", np.zeros(0), np.zeros(0), None, args["q_windows"], args["s_windows"],
                      args["audio_sim"], CFG, codes=args["codes"])
    assert m.modalities == ("audio",) and m.q_start < 5.0 and m.q_end >= 12.0


def test_a_sped_copy_the_picture_placed_at_slope_one_is_put_on_the_slope_its_codes_agree_on():
    """Query 2-13 s is source 10-22.1 s played 10% faster; the picture found all of it, at slope 1
    (source 10.5-21.5 s). Its codes agree along 1.1: the query span stays, the source span becomes
    10-22.1 s. Codes that do not confirm the copy (another recording) leave it as it was."""
    src = random_codes(40 * 8)
    q = reading(copied(src, 10.0, 2.0, 11.0, 30.0, share=0.1, speed=1.1))
    p = Piece(2.0, 13.0, 10.5, 21.5, 0.95, 1.0, 8.5)
    m = resloped(p, (q,), reading(src), 0.27, 0.12, (0.91, 1.0, 1.1))
    assert (m.q_start, m.q_end) == (2.0, 13.0) and m.slope == pytest.approx(1.1)
    assert (m.s_start, m.s_end) == pytest.approx((10.0, 22.1), abs=0.3)
    assert m.score == p.score
    assert resloped(p, (reading(random_codes(30 * 8)),), reading(src), 0.27, 0.12, (0.91, 1.1)) == p
    assert resloped(p, (q,), reading(src), 0.27, 0.12, ()) == p and resloped(p, (q,), None, 0.27, 0.12, (1.1,)) == p


def test_a_copy_the_picture_placed_half_a_second_off_is_put_where_its_codes_agree():
    """Query 2-13 s is source 10-21 s; frames a second apart put it at source 10.45-21.45 s. Its codes
    (as the track is, so no other slope is read) agree best 0.45 s earlier: it is moved there, its
    query span and slope kept."""
    src = random_codes(40 * 8)
    q = reading(copied(src, 10.0, 2.0, 11.0, 30.0, share=0.1))
    p = Piece(2.0, 13.0, 10.45, 21.45, 0.95, 1.0, 8.45)
    m = resloped(p, (q,), reading(src), 0.27, 0.12, (0.91, 1.0, 1.1))
    assert (m.q_start, m.q_end, m.slope) == (2.0, 13.0, 1.0)
    assert m.offset == pytest.approx(8.0, abs=1 / HZ) and m.s_start == pytest.approx(10.0, abs=1 / HZ)
