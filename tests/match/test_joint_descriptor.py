"""The joined per-second descriptor (frame + the audio at that second) of the VSC22 descriptor track."""
from __future__ import annotations

import numpy as np
import pytest

from astradup.eval.metrics import vsc_descriptor_micro_ap
from astradup.match.joint_descriptor import JointBackground, audio_at, join, rows_of
from astradup.match.score_norm import fold, pad_refs, pair_scores
from astradup.records import VideoFeatures
from tests.synthetic_vectors import noisy, unit, walk

DA = 48
D = 64  # wide enough that chance pairs stay well apart, as 512-d frames and 218-d windows do


def _video(vid: str, frames: np.ndarray, audio: np.ndarray | None) -> VideoFeatures:
    t = np.arange(len(frames), dtype=np.float32) + 0.5
    if audio is None:
        win, av = np.zeros((0, 2), np.float32), np.zeros((0, DA), np.float32)
    else:  # 5 s windows every second, as the audio features cut them
        starts = np.arange(len(audio), dtype=np.float32)
        win, av = np.stack([starts, starts + 5], axis=1), audio
    return VideoFeatures(video_id=vid, uri=f"/x/{vid}.mp4", timestamps=t, embeddings=frames,
                         phash=np.zeros((len(t), 32), np.uint8), audio_windows=win, audio_vectors=av,
                         chromaprint=np.zeros(0, np.uint32), chromaprint_hz=0.0, meta={})


def test_audio_at_takes_the_nearest_window_centre_within_reach():
    win = np.array([[0, 5], [1, 6], [2, 7]], np.float32)  # centres 2.5, 3.5, 4.5
    vec = np.eye(3, dtype=np.float32)
    got = audio_at(np.array([0.0, 3.4, 3.6, 4.4, 7.4, 7.6]), win, vec, 3)
    assert got[:4].argmax(axis=1).tolist() == [0, 1, 1, 2]
    assert got[4].tolist() == [0, 0, 1] and not got[5].any()  # 7.6 is 3.1 s past the last centre
    # windows out of order are matched by their centres, not their positions
    assert audio_at(np.array([4.4]), win[::-1], vec[::-1], 3).argmax() == 2
    assert audio_at(np.array([1.0, 2.0]), np.zeros((0, 2)), np.zeros((0, 3)), 3).shape == (2, 3)
    assert not audio_at(np.array([1.0]), np.zeros((0, 2)), np.zeros((0, 3)), 3).any()
    with pytest.raises(ValueError, match="4-d"):
        audio_at(np.array([1.0]), win, np.zeros((3, 4), np.float32), 3)


def test_join_weighs_the_two_similarities_by_the_share():
    rng = np.random.default_rng(0)
    f, a = unit(rng.normal(size=(2, 16))), unit(rng.normal(size=(2, DA)))
    j = join(f, a, 0.4)
    assert j.shape == (2, 16 + DA)
    assert np.isclose(j[0] @ j[1], 0.6 * (f[0] @ f[1]) + 0.4 * (a[0] @ a[1]), atol=1e-6)
    assert np.allclose(np.linalg.norm(j, axis=1), 1.0, atol=1e-6)
    assert join(f, a, 0.0) is not None and np.array_equal(join(f, a, 0.0), f)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="audio share"):
            join(f, a, bad)


def test_rows_of_a_silent_video_have_zero_audio():
    rng = np.random.default_rng(1)
    fr, au = rows_of(_video("s", unit(rng.normal(size=(6, 16))), None), DA)
    assert fr.shape == (6, 16) and au.shape == (6, DA) and not au.any()


def _library(rng, n: int = 12, secs: int = 20):
    # Every library video shares one generic look (a common direction in picture and sound), so
    # unrelated pairs are far from orthogonal, as real footage and real music are.
    base_f, base_a = rng.normal(size=D), rng.normal(size=DA)
    return {f"r{i}": _video(f"r{i}", unit(walk(rng, secs, D) + 0.5 * unit(base_f)),
                            unit(walk(rng, secs, DA) + 0.5 * unit(base_a))) for i in range(n)}


def test_an_audio_only_copy_is_ranked_by_the_joined_descriptor_and_not_by_frames_alone():
    rng = np.random.default_rng(2)
    refs = _library(rng)
    r0 = refs["r0"]
    queries = {
        # the soundtrack of r0 under a picture of its own: a copy the frames cannot see
        "q_audio": _video("q_audio", unit(walk(rng, 20, D)), noisy(rng, r0.audio_vectors, 0.3)),
        # a re-encode of r1: both modalities agree
        "q_copy": _video("q_copy", noisy(rng, refs["r1"].embeddings, 0.3), noisy(rng, refs["r1"].audio_vectors, 0.3)),
    }
    queries.update({f"d{i}": _video(f"d{i}", unit(walk(rng, 20, D)), unit(walk(rng, 20, DA))) for i in range(6)})
    truth = {("q_audio", "r0"), ("q_copy", "r1")}

    def ap(share: float, beta: float) -> float:
        lib = {r: rows_of(f, DA) for r, f in refs.items()}
        qs = {}
        for q, f in queries.items():
            fr, au = rows_of(f, DA)
            rows = join(fr, au, share)
            if beta:
                bg = JointBackground(fr, au, k=2)
                for lf, la in lib.values():
                    bg.add(lf, la)
                rows = fold(rows, bg.value(share), beta)
            qs[q] = rows
        rs = {r: (pad_refs(join(*x, share)) if beta else join(*x, share)) for r, x in lib.items()}
        return vsc_descriptor_micro_ap(truth, pair_scores(qs, rs))

    frames_only = max(ap(0.0, 0.0), ap(0.0, 0.5))
    assert frames_only < 0.8  # the audio-only copy ranks among strangers: only the re-encode is found
    assert ap(0.4, 0.0) > frames_only  # joined: found, though under some chance pairs of generic sound
    assert ap(0.4, 0.5) == 1.0  # joined and normalised: both copies above every unrelated pair


def test_joint_background_is_per_modality_and_skips_silent_videos():
    rng = np.random.default_rng(3)
    qf, qa = unit(rng.normal(size=(4, 16))), unit(rng.normal(size=(4, DA)))
    bg = JointBackground(qf, qa, k=2)
    lib = [(unit(rng.normal(size=(5, 16))), unit(rng.normal(size=(5, DA)))) for _ in range(3)]
    for f, a in lib:
        bg.add(f, a)
    bg.add(qf, np.zeros((4, DA), np.float32))  # a silent copy of the picture: best frames, no audio
    second = lambda q, vids: np.sort(np.stack([(q @ v.T).max(axis=1) for v in vids]), axis=0)[-2]
    want_f = second(qf, [f for f, _ in lib] + [qf])
    want_a = second(qa, [a for _, a in lib])  # the silent video is not an audio background
    assert np.allclose(bg.value(0.4), 0.6 * want_f + 0.4 * want_a, atol=1e-6)
    assert np.allclose(bg.value(0.0), want_f, atol=1e-6)


def test_a_blank_picture_keeps_only_its_sound():
    """A copy of r0's soundtrack over a black picture: every black frame looks alike (here: one
    shared vector in every blank video), so its frames must not count, while its sound still does."""
    rng = np.random.default_rng(5)
    refs = _library(rng)
    black = unit(rng.normal(size=(1, D)))[0]
    dark = _video("r_dark", np.tile(black, (20, 1)), unit(walk(rng, 20, DA)))  # an unrelated black video
    dark.meta["blank_frames"] = list(range(20))
    refs["r_dark"] = dark
    q = _video("q_black", np.tile(black, (20, 1)), noisy(rng, refs["r0"].audio_vectors, 0.3))
    q.meta["blank_frames"] = list(range(20))
    assert q.blank_rows().all() and not refs["r0"].blank_rows().any()
    odd = _video("odd", unit(rng.normal(size=(6, D))), None)
    odd.meta["blank_frames"] = [-1, 3, 99]  # hostile metadata: indices outside the frames are ignored
    assert odd.blank_rows().tolist() == [False, False, False, True, False, False]
    fr, au = rows_of(q, DA, blank=q.blank_rows())
    assert not fr.any() and au.any() and q.embeddings.any()  # the record itself is left as it was

    def best(blanked: bool) -> str:
        def rows(f):
            return rows_of(f, DA, blank=f.blank_rows() if blanked else None)
        qf, qa = rows(q)
        bg = JointBackground(qf, qa, k=2)
        for f in refs.values():
            bg.add(*rows(f))
        qs = {"q_black": fold(join(qf, qa, 0.4), bg.value(0.4), 0.5)}
        sc = pair_scores(qs, {r: pad_refs(join(*rows(f), 0.4)) for r, f in refs.items()})
        return max(sc, key=sc.get)[1]

    assert best(False) == "r_dark"  # black matches black better than any sound matches
    assert best(True) == "r0"
