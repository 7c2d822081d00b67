"""How the query's pitch variants vote in ``Searcher``'s KNN step: every PITCH_KNN_STRIDE-th window
asked, hits mapped back to their window, each window voting once with its best reading, a variant's
hit counted against the stricter level the best of several unrelated readings reaches."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import astradup.search as search_mod
from astradup.config import load_config
from astradup.records import VideoFeatures
from astradup.search import PITCH_KNN_STRIDE, VOTE_TAIL, Query, Searcher

LEVEL = {VOTE_TAIL: 0.40}  # the unrelated level at the votes' tail share; 0.50 at any smaller share


class _Projection:
    def unrelated_level(self, share: float, modality: str) -> float:
        return LEVEL.get(share, 0.50)

    def knn_floor(self, floor: float, modality: str) -> float:
        return floor


class _Vectors:
    projection = _Projection()

    def __init__(self, hit):
        self.asked: list[np.ndarray] = []
        self.hit = hit

    def beside(self, here, there):
        return here(), there()

    def search_audio(self, rows, k, exclude=None):
        self.asked.append(np.asarray(rows).copy())
        return [[self.hit(r)] for r in np.asarray(rows)]


def _query(n_var: int, n_win: int, dim: int = 4) -> Query:
    rng = np.random.default_rng(0)
    windows = np.stack([np.arange(n_win) * 0.5, np.arange(n_win) * 0.5 + 5.0], axis=1).astype(np.float32)
    f = VideoFeatures(video_id="q", uri="q.mp4", timestamps=np.zeros(0, np.float32),
                      embeddings=np.zeros((0, dim), np.float32), phash=np.zeros((0, 32), np.uint8),
                      audio_windows=windows, audio_vectors=rng.normal(size=(n_win, dim)).astype(np.float32),
                      chromaprint=np.zeros(0, np.uint32), chromaprint_hz=0.0, meta={})
    # variant v, window w holds (v, w) in its first two components, so a stub can tell the rows apart
    pitch = np.zeros((n_var, n_win, dim), np.float32)
    pitch[:, :, 0] = np.arange(n_var)[:, None]
    pitch[:, :, 1] = np.arange(n_win)[None, :]
    return Query(f, None, pitch)


def _searcher(vectors) -> Searcher:
    cfg = load_config(None, {"common": {"min_videos": 0}})
    return Searcher(cfg, SimpleNamespace(vectors=vectors))


def test_every_other_window_is_asked_and_hits_land_on_their_window():
    q = _query(n_var=2, n_win=5)
    vs = _Vectors(lambda r: (f"v{int(r[0])}w{int(r[1])}", 0.0, 5.0, 0.9))
    hits = _searcher(vs)._pitch_hits(q, 3, None)
    asked = vs.asked[0]
    assert PITCH_KNN_STRIDE == 2 and len(vs.asked) == 1
    assert [(int(a), int(b)) for a, b in asked[:, :2]] == [(0, 0), (0, 2), (0, 4), (1, 0), (1, 2), (1, 4)]
    assert len(hits) == 2 * 5
    for v in range(2):
        for w in range(5):
            row = hits[v * 5 + w]
            assert row == ([(f"v{v}w{w}", 0.0, 5.0, 0.9)] if w % 2 == 0 else []), (v, w, row)


def test_a_window_votes_once_with_its_best_reading(monkeypatch):
    n_var, n_win = 4, 6
    q = _query(n_var, n_win)
    seen = {}
    real_vote = search_mod.vote

    def spy(hits, weight=1.0, votes=None, floor=0.0):
        out = real_vote(hits, weight=weight, votes=votes, floor=floor)
        seen.update(out)
        return out

    monkeypatch.setattr(search_mod, "vote", spy)
    s = _searcher(_Vectors(lambda r: ("copied", 0.0, 5.0, 0.90)))
    base = [[("other", 0.0, 5.0, 0.60)] for _ in range(n_win)]
    extra = s._pitch_hits(q, 3, None)
    s._pick(q.features, np.zeros(0), [], [], base, False, extra)
    lift = 0.50 - 0.40  # the level at VOTE_TAIL / (1 + n_var) over the one at VOTE_TAIL
    asked = len(range(0, n_win, PITCH_KNN_STRIDE))
    w = search_mod.AUDIO_VOTE_WEIGHT
    # "copied" is hit by all four variants of every asked window, and counted once per window
    assert seen["copied"] == pytest.approx(w * asked * (0.90 - lift - 0.40))
    assert seen["other"] == pytest.approx(w * n_win * (0.60 - 0.40))


def test_without_variants_the_votes_are_the_plain_ones(monkeypatch):
    q = _query(0, 4)
    s = _searcher(_Vectors(lambda r: ("x", 0.0, 5.0, 0.9)))
    base = [[("other", 0.0, 5.0, 0.60)] for _ in range(4)]
    assert s._pick(q.features, np.zeros(0), [], [], base, False, []).candidates == ["other"]


def test_windows_heard_clearly_as_they_are_skip_their_pitch_variants():
    """A window whose own reading already has a neighbour at ``search.pitch_gate`` was not pitch
    shifted: its variants are not asked (they were most of a query's KNN rows); every other asked
    window's are, and their hits still land on their window."""
    n_var, n_win = 2, 8
    q = _query(n_var, n_win)
    q.features.audio_vectors[:, 0] = 100 + np.arange(n_win)  # plain rows told apart from variant rows
    clear = {0, 1, 2, 5}

    def hit(r):
        if r[0] >= 100:  # a plain window: heard clearly (0.95) or not (0.5)
            w = int(r[0]) - 100
            return ("src", 0.0, 5.0, 0.95 if w in clear else 0.5)
        return (f"v{int(r[0])}w{int(r[1])}", 0.0, 5.0, 0.8)

    vs = _Vectors(hit)
    s = _searcher(vs)
    assert s.cfg.search.pitch_gate == 0.9
    av = np.asarray(q.features.audio_vectors)
    plain, extra = s._audio_hits(q, av, 0.5, 3, None)
    assert [h[0][-1] for h in plain] == [0.95 if w in clear else 0.5 for w in range(n_win)]
    asked_windows = sorted({int(r[1]) for a in vs.asked[1:] for r in a})
    assert asked_windows == [4, 6]  # every 2nd window (0, 2, 4, 6) less those heard (0, 2)
    for v in range(n_var):
        for w in range(n_win):
            assert extra[v * n_win + w] == ([(f"v{v}w{w}", 0.0, 5.0, 0.8)] if w in (4, 6) else []), (v, w)

    # a gate no hit reaches asks every 2nd window, as before the gate
    s_all = Searcher(load_config(None, {"common": {"min_videos": 0}, "search": {"pitch_gate": 1.0}}),
                     SimpleNamespace(vectors=_Vectors(hit)))
    _, extra_all = s_all._audio_hits(q, av, 0.5, 3, None)
    assert [w for w in range(n_win) if extra_all[w]] == [0, 2, 4, 6]

    # every window heard: no variant request at all
    vs_clear = _Vectors(lambda r: ("src", 0.0, 5.0, 0.99))
    _, none = _searcher(vs_clear)._audio_hits(q, av, 0.5, 3, None)
    assert len(vs_clear.asked) == 1 and none == [[] for _ in range(n_var * n_win)]


@pytest.mark.parametrize("bad", [-0.1, 1.5, "high", float("nan")])
def test_a_pitch_gate_outside_0_1_is_refused_naming_the_key(bad):
    from astradup.errors import ConfigError
    with pytest.raises(ConfigError, match="pitch_gate"):
        load_config(None, {"search": {"pitch_gate": bad}})


def test_only_the_pitch_knn_shifts_ask_the_knn_and_their_hits_keep_their_windows():
    """The query reads its audio at every ``audio.query_pitch`` shift (the alignment takes the best),
    but only ``search.pitch_knn``'s readings are KNN rows: the fine shifts between them would
    multiply the query's KNN rows for candidates the coarse ones already bring."""
    vs = _Vectors(lambda r: (f"v{int(r[0])}w{int(r[1])}", 0.0, 5.0, 0.9))
    s = _searcher(vs)
    shifts, knn = s.cfg.audio.query_pitch, s.cfg.search.pitch_knn
    assert 0 < len(knn) < len(shifts) and set(knn) <= set(shifts)
    n_win = 4
    q = _query(len(shifts), n_win)
    hits = s._pitch_hits(q, 3, None)
    picked = [i for i, x in enumerate(shifts) if x in knn]
    assert sorted({int(r[0]) for r in vs.asked[0]}) == picked
    assert len(hits) == len(knn) * n_win
    for j, v in enumerate(picked):
        assert [h[0][0] if h else None for h in hits[j * n_win:(j + 1) * n_win]] == [f"v{v}w0", None, f"v{v}w2", None]

    # a fingerprint made under other settings (another count of readings) asks all of its own
    other = _query(3, n_win)
    vs.asked.clear()
    assert len(s._pitch_hits(other, 3, None)) == 3 * n_win and sorted({int(r[0]) for r in vs.asked[0]}) == [0, 1, 2]


def test_pitch_knn_shifts_must_be_readings_the_query_makes():
    from astradup.errors import ConfigError
    with pytest.raises(ConfigError, match=r"search.pitch_knn.*0.5 not in audio.query_pitch"):
        load_config(None, {"search": {"pitch_knn": [0.5, 1.0]}})
    assert load_config(None, {"search": {"pitch_knn": []}}).search.pitch_knn == ()
    assert load_config(None, {"audio": {"query_pitch": []}}).audio.query_pitch == ()  # all readings off
