"""The audio-copy flag (soundtrack re-used under other pictures): the pure rule on synthetic
evidence, its records (pair rows, old parts, partial copies, report), and the config checks.
The end-to-end search/dedup of real files is in test_audio_copy_e2e.py."""
from __future__ import annotations

import json

import numpy as np
import pytest

from astradup.config import AudioCopyConfig, FusionConfig, SegmentConfig, load_config
from astradup.dedup.pairs import match_to_row, row_to_match, with_all_columns
from astradup.dedup.results import partial_copies
from astradup.errors import ConfigError
from astradup.match.align import Piece
from astradup.match.fusion import fuse
from astradup.match.scoring import PairEvidence, audio_copy, pair_audio_copy
from astradup.records import AudioCopy, SegmentMatch, VideoFeatures, VideoMatch
from astradup.report.data import ReportData
from astradup.report.page import render_html

CFG = AudioCopyConfig()


def _piece(q0: float, q1: float, s0: float, s1: float) -> Piece:
    return Piece(q0, q1, s0, s1, 0.9, 1.0, s0 - q0)


@pytest.mark.parametrize("audio,visual,span,qd,sd,want", [
    # the whole soundtrack, other pictures: flagged, the padded ends clipped to the videos
    (0.95, 0.1, _piece(0.0, 31.0, 0.0, 31.0), 30.0, 30.0, (0.0, 30.0, 0.0, 30.0)),
    # the query (shorter) re-uses 20 s of a 60 s soundtrack from 25 s on: flagged on both axes
    (0.9, 0.3, _piece(0.0, 20.0, 25.0, 45.0), 20.0, 60.0, (0.0, 20.0, 25.0, 45.0)),
    # the source is the shorter video: coverage is measured on its axis
    (0.9, 0.0, _piece(10.0, 28.0, 0.0, 18.0), 60.0, 18.0, (10.0, 28.0, 0.0, 18.0)),
    (0.9, 0.0, _piece(10.0, 20.0, 0.0, 10.0), 60.0, 18.0, None),  # 10 of 18 s: a partial copy
    (0.95, 0.1, _piece(0.0, 12.0, 0.0, 12.0), 30.0, 30.0, None),  # a shared jingle, not the soundtrack
    (0.95, 0.6, _piece(0.0, 30.0, 0.0, 30.0), 30.0, 30.0, None),  # the picture is a copy too: fusion says
    (0.7, 0.1, _piece(0.0, 30.0, 0.0, 30.0), 30.0, 30.0, None),  # the sound is only alike
    (None, 0.1, _piece(0.0, 30.0, 0.0, 30.0), 30.0, 30.0, None),  # one side has no audio track
    (0.95, 0.1, None, 30.0, 30.0, None),  # nothing aligned
])
def test_rule(audio, visual, span, qd, sd, want):
    got = audio_copy(audio, visual, span, qd, sd, CFG)
    assert got == (pytest.approx(want) if want else None)


def test_thresholds_are_inclusive_where_documented():
    span = _piece(0.0, 24.0, 0.0, 24.0)  # exactly min_cover of 30 s
    assert audio_copy(CFG.min_audio, 0.0, span, 30.0, 30.0, CFG) is not None
    assert audio_copy(0.95, CFG.max_visual, span, 30.0, 30.0, CFG) is None
    assert audio_copy(0.95, 0.0, _piece(0.0, 23.9, 0.0, 23.9), 30.0, 30.0, CFG) is None


def _unit(rng: np.random.Generator, n: int, d: int = 32) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _features(vid: str, seconds: int, audio_vectors: np.ndarray, frames: np.ndarray) -> VideoFeatures:
    """Windows of 5 s every 1 s, as indexing makes them; ``audio_vectors`` one row per window."""
    starts = np.arange(len(audio_vectors), dtype=np.float32)
    return VideoFeatures(vid, f"/v/{vid}.mp4", np.arange(seconds, dtype=np.float32), frames,
                         np.zeros((seconds, 32), np.uint8), np.stack([starts, starts + 5.0], axis=1),
                         audio_vectors, np.ones(8, np.uint32), 8.0, {"duration": float(seconds)})


def _evidence(audio: float | None, visual: float) -> PairEvidence:
    return PairEvidence(visual, audio, 1.0, 0.3, 0.5, 0.9, 0.95, False)


def test_pair_flag_from_aligned_windows_with_interval():
    """The query's 20 s soundtrack is the source's 12-32 s: the alignment gives the interval."""
    rng = np.random.default_rng(0)
    src_audio = _unit(rng, 36)  # a 40 s source: windows starting at 0..35 s
    q = _features("q", 20, src_audio[12:28], _unit(rng, 20))
    s = _features("s", 40, src_audio, _unit(rng, 40))
    a = pair_audio_copy(q, s, _evidence(0.97, 0.05), SegmentConfig(), CFG)
    assert isinstance(a, AudioCopy) and a.modalities == ("audio",)
    assert (a.query_id, a.source_id) == ("q", "s")
    assert a.q_start == pytest.approx(0.0, abs=1.0) and a.q_end == pytest.approx(20.0, abs=1.0)
    assert a.s_start == pytest.approx(12.0, abs=1.0) and a.s_end == pytest.approx(32.0, abs=1.0)
    assert a.note().startswith("audio copy q 0.0-")

    other = _features("o", 20, _unit(rng, 16), _unit(rng, 20))  # unrelated sound
    assert pair_audio_copy(other, s, _evidence(0.97, 0.05), SegmentConfig(), CFG) is None
    assert pair_audio_copy(q, s, _evidence(0.97, 0.9), SegmentConfig(), CFG) is None  # same picture too


def test_fusion_and_label_are_untouched_but_the_match_is_kept():
    f = fuse({"visual": 0.0, "audio": 1.0, "metadata": 1.0}, FusionConfig())
    assert f.score == pytest.approx(0.35) and f.label == "none"
    a = AudioCopy("q", 0.0, 30.0, "s", 0.0, 30.0, 1.0, ("audio",))
    m = VideoMatch("s", "/v/s.mp4", {"visual": 0.0, "audio": 1.0, "metadata": 1.0}, f.score, f.confidence,
                   f.label, f.review, (a.note(),), (), a)
    plain = VideoMatch("s", "/v/s.mp4", {"visual": 0.0}, 0.1, 1.0, "none", False)
    assert m.reportable and not plain.reportable
    d = m.to_dict()
    assert d["label"] == "none" and d["audio_copy"] == {"q_start": 0.0, "q_end": 30.0, "s_start": 0.0,
                                                        "s_end": 30.0, "score": 1.0}
    assert "audio copy q 0.0-30.0 s = s 0.0-30.0 s" in d["notes"]
    assert plain.to_dict()["audio_copy"] is None
    json.dumps(d)


def _flagged(query_id: str = "q") -> VideoMatch:
    a = AudioCopy(query_id, 0.0, 20.0, "s", 12.0, 32.0, 0.97, ("audio",))
    segs = (SegmentMatch(query_id, 0.5, 19.5, "s", 12.5, 31.5, 0.8, ("audio",)),  # the same stretch
            SegmentMatch(query_id, 2.0, 8.0, "s", 30.0, 36.0, 0.7, ("visual",)))
    return VideoMatch("s", "/v/s.mp4", {"visual": 0.1, "audio": 0.97, "metadata": 0.9}, 0.4, 0.2, "none", False,
                      (a.note(),), segs, a)


def test_pair_rows_round_trip_and_old_rows_have_no_flag():
    import pyarrow as pa

    m = _flagged()
    row = match_to_row("q", m)
    back = row_to_match(row)
    assert back == m and isinstance(back.audio_copy, AudioCopy)
    plain = VideoMatch("s", "/v/s.mp4", {"visual": 0.9}, 0.9, 1.0, "near-duplicate", False)
    assert match_to_row("q", plain)["audio_copy"] is None and row_to_match(match_to_row("q", plain)) == plain
    old = {k: v for k, v in row.items() if k != "audio_copy"}  # a part written before the flag
    assert row_to_match(old).audio_copy is None
    t = with_all_columns(pa.Table.from_pylist([old]))
    assert t.column_names[-1] == "audio_copy" and t.to_pylist()[0]["audio_copy"] is None


def test_partial_copies_list_the_audio_copy_once():
    listed = partial_copies("q", _flagged())
    kinds = [type(sg).__name__ for _, sg in listed]
    assert kinds == ["AudioCopy", "SegmentMatch"]  # the sound-only segment is the audio copy itself
    assert listed[1][1].modalities == ("visual",)
    m = _flagged()
    unflagged = VideoMatch(m.source_id, m.source_uri, m.scores, m.fused, m.confidence, m.label, m.review,
                           (), m.segments)
    assert [sg for _, sg in partial_copies("q", unflagged)] == list(m.segments)


def test_report_shows_the_flag_in_partial_copies():
    partial = partial_copies("q", _flagged())
    data = ReportData("near-duplicate", [], [], {}, partial, {"q": "/v/q.mp4", "s": "/v/s.mp4"}, 2, "now")
    page = render_html(data)
    assert page.count('class="badge audio-copy"') == 1
    assert '<tr class="audio-copy"><td>q.mp4</td><td>0&ndash;20 s</td><td>s.mp4</td><td>12&ndash;32 s</td>' in page
    no_flag = ReportData("near-duplicate", [], [], {}, [partial[1]], data.uris, 2, "now")
    assert "audio-copy\"" not in render_html(no_flag).split("</style>")[1]


@pytest.mark.parametrize("key,value", [("min_audio", 1.5), ("max_visual", -0.1), ("min_cover", float("nan"))])
def test_config_rejects_thresholds_outside_unit_interval(key, value):
    with pytest.raises(ConfigError, match=f"audio_copy.{key}"):
        load_config(overrides={"audio_copy": {key: value}}, environ={})


def test_default_yaml_matches_the_dataclass():
    cfg = load_config(environ={})
    assert cfg.audio_copy == AudioCopyConfig()
    assert (cfg.fusion.visual, cfg.fusion.audio, cfg.fusion.metadata) == (0.65, 0.25, 0.10)
