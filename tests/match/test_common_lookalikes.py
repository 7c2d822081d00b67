"""Common segments in a large library: chance look-alikes of single audio windows must not read as
recurring content (match/common.py ``Support``).

An audio window is a 5 s summary of MFCCs, so in a library of many videos each window of a query
finds some unrelated videos that sound alike at match level, and the more videos the library
holds the more of them (docs/scaling.md measured it on 10k and 100k libraries). Counted as they
were, those look-alikes marked most windows of real queries common and masked them, frames with
them, out of every copy's evidence. The library built here is that hostile case in small: every
other window of one video has look-alikes in ten unrelated videos, each at a random place. The
same library holds a soundtrack jingle that twelve videos with different pictures open with,
which must still be found as common audio.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from astradup.catalog import Catalog
from astradup.config import load_config
from astradup.features.audio import vector_dim
from astradup.records import VideoFeatures
from astradup.search import Query, Searcher
from tests.synthetic_vectors import SizeOnlyEmbedder, noisy, walk

D, SECONDS, WINDOWS = 64, 16, 12  # frames at 1 fps; 5 s audio windows every 1 s
LOOKALIKES, JINGLE_VIDEOS, JINGLE_WINDOWS = 10, 12, 7
HZ = 4.0


def _video(rng, vid: str, emb: np.ndarray, audio: np.ndarray) -> VideoFeatures:
    starts = np.arange(len(audio), dtype=np.float32)
    return VideoFeatures(vid, f"/lib/{vid}.mp4", np.arange(len(emb), dtype=np.float32), emb,
                         rng.integers(0, 256, (len(emb), 32), dtype=np.uint8),
                         np.stack([starts, starts + 5.0], axis=1), audio,
                         rng.integers(0, 2 ** 32, int(SECONDS * HZ), dtype=np.uint32), HZ,
                         {"duration": float(len(emb)), "width": 320, "height": 240, "fps": 25.0})


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    root = tmp_path_factory.mktemp("lookalikes")
    rng = np.random.default_rng(11)
    da = vector_dim(13)
    frames = lambda: walk(rng, SECONDS, D, 0.85)  # noqa: E731
    sound = lambda: walk(rng, WINDOWS, da, 0.3)  # noqa: E731 (windows far apart in sound)
    src = _video(rng, "source", frames(), sound())
    feats = [src]
    # the index keeps every 2nd window (vectors.audio_stride), so look-alikes sit at even places
    for w in range(0, WINDOWS, 2):
        for j in range(LOOKALIKES):
            audio = sound()
            audio[2 * rng.integers(0, WINDOWS // 2)] = noisy(rng, src.audio_vectors[w], 0.1)
            feats.append(_video(rng, f"like_w{w:02d}_{j}", frames(), audio))
    jingle = sound()[:JINGLE_WINDOWS]
    for j in range(JINGLE_VIDEOS):
        audio = sound()
        audio[:JINGLE_WINDOWS] = noisy(rng, jingle, 0.1)
        feats.append(_video(rng, f"jingle_{j:02d}", frames(), audio))
    copy = dataclasses.replace(src, video_id="copy", uri="/q/copy.mp4", embeddings=noisy(rng, src.embeddings, 0.15),
                               audio_vectors=noisy(rng, src.audio_vectors, 0.1))
    cfg = load_config(overrides={"data_dir": str(root / "data"), "vectors": {"projection": "none"},
                                 "pipeline": {"dashboard": False}})
    cat = Catalog(cfg, embedder=SizeOnlyEmbedder(D))
    cat.write(feats)
    yield {"searcher": Searcher(cfg, cat), "copy": copy, "feats": {f.video_id: f for f in feats}}
    cat.vectors.close()


def _without_support(s: Searcher) -> Searcher:
    return Searcher(dataclasses.replace(s.cfg, common=dataclasses.replace(s.cfg.common, audio_support=0.0)),
                    s.catalog)


def test_lookalikes_of_single_windows_are_not_common_and_the_copy_keeps_its_evidence(library):
    s, copy = library["searcher"], library["copy"]
    # the control: counting every match, the look-alikes make the copy's windows common
    _, loose = _without_support(s).search_common(Query(copy, None), top=5)
    assert loose and all("audio" in c.modalities for c in loose), loose
    assert sum(c.q_end - c.q_start for c in loose) >= 5.0, loose
    matches, common = s.search_common(Query(copy, None), top=5)
    assert common == [], common
    assert matches and matches[0].source_id == "source", matches
    m = matches[0]
    assert m.label in ("duplicate", "near-duplicate"), m
    assert m.segments and max(sg.q_end for sg in m.segments) - min(sg.q_start for sg in m.segments) >= SECONDS - 3


def test_a_jingle_that_many_videos_open_with_is_still_common_audio(library):
    s = library["searcher"]
    f = library["feats"]["jingle_00"]
    matches, common = s.search_common(Query(f, None), top=20, exclude=f.video_id)
    assert len(common) == 1, common
    c = common[0]
    assert c.modalities == ("audio",) and c.videos >= JINGLE_VIDEOS - 2, c
    # windows centred 2.5 .. 8.5 s are the jingle's; each stands for its second
    assert c.q_start <= 3.0 and c.q_end >= 8.0, c
    for m in matches:  # the other jingle videos share only the jingle: not copies
        assert m.label == "none" and not m.segments, m


def test_rows_of_chance_lookalikes_ask_no_deeper_knn(library, monkeypatch):
    """The deeper request for the common count (common.search_k neighbours) goes only to windows
    where some match is supported: none here, where the control sends one for every window whose
    look-alikes reach the floor."""
    s, copy = library["searcher"], library["copy"]
    vs = s.catalog.vectors
    asked: list[tuple[int, int]] = []
    real = vs.search_audio

    def spy(vectors, k, exclude=None):
        asked.append((len(vectors), k))
        return real(vectors, k, exclude=exclude)

    monkeypatch.setattr(vs, "search_audio", spy)
    s.knn(Query(copy, None))
    assert asked and all(k < s.cfg.common.search_k for _, k in asked), asked
    asked.clear()
    _without_support(s).knn(Query(copy, None))
    deep = [n for n, k in asked if k == s.cfg.common.search_k]
    assert deep and deep[0] >= WINDOWS // 2, asked
