"""The Milvus copy's projection: fitting, reducing a record, loading and checking the builtin file."""
from __future__ import annotations

import numpy as np
import pytest

from astradup.config import load_config
from astradup.errors import ConfigError
from astradup.records import VideoFeatures
from astradup.store.projection import (BUILTIN, IndexProjection, ProjectedVectors, alike_runs, fit_basis,
                                      load_projection, project_rows, save)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _features(t: int = 9, w: int = 5, d: int = 64, da: int = 40) -> VideoFeatures:
    rng = np.random.default_rng(0)
    starts = np.arange(w, dtype=np.float32)
    return VideoFeatures(
        video_id="v", uri="/v.mp4", timestamps=np.arange(t, dtype=np.float32) + 0.5,
        embeddings=_unit(rng.normal(size=(t, d))), phash=rng.integers(0, 256, (t, 32), dtype=np.uint8),
        audio_windows=np.stack([starts, starts + 5], axis=1), audio_vectors=_unit(rng.normal(size=(w, da))),
        chromaprint=np.zeros(0, np.uint32), chromaprint_hz=0.0, meta={})


def test_fit_basis_finds_the_subspace_and_keeps_inner_products():
    rng = np.random.default_rng(1)
    basis = np.linalg.qr(rng.normal(size=(64, 8)))[0]
    x = _unit(rng.normal(size=(500, 8)) @ basis.T + 0.01 * rng.normal(size=(500, 64)))
    b = fit_basis(x, 8)
    assert b.shape == (64, 8)
    proj = IndexProjection(b, None)
    y = proj.query_frames(x)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, rtol=1e-5)
    assert np.abs(y @ y.T - x @ x.T).max() < 0.02
    with pytest.raises(ValueError):
        fit_basis(x[:4], 8)


def test_reduce_strides_and_projects_but_keeps_the_first_row():
    f = _features()
    rng = np.random.default_rng(2)
    p = IndexProjection(np.linalg.qr(rng.normal(size=(64, 16)))[0].astype(np.float32),
                        np.linalg.qr(rng.normal(size=(40, 8)))[0].astype(np.float32), 2, 3)
    r = p.reduce(f)
    np.testing.assert_array_equal(r.timestamps, f.timestamps[::2])
    assert r.embeddings.shape == (5, 16) and r.phash.shape == (5, 32)
    np.testing.assert_array_equal(r.audio_windows, f.audio_windows[::3])
    assert r.audio_vectors.shape == (2, 8)
    np.testing.assert_allclose(np.linalg.norm(r.embeddings, axis=1), 1.0, rtol=1e-5)
    short = IndexProjection(None, None, 4, 4).reduce(_features(t=1, w=1))
    assert len(short.timestamps) == 1 and len(short.audio_windows) == 1
    same = IndexProjection().reduce(f)  # identity
    np.testing.assert_array_equal(same.embeddings, f.embeddings)


def test_builtin_projection_matches_the_default_features():
    cfg = load_config()
    p = load_projection("builtin", 2, 2, embedder_kind=cfg.embedder.kind, embedder_model=cfg.embedder.model,
                        frame_dim=512, audio_dim=218)
    assert BUILTIN.exists() and p.frames_dim(512) == 32 and p.audio_dim(218) == 32
    # Fitted for SSCD: another embedder's frames go in whole; the audio basis does not depend on it.
    clip = load_projection("builtin", 2, 2, embedder_kind="open_clip", embedder_model="ViT-B-32",
                           frame_dim=512, audio_dim=218)
    assert clip.frame_basis is None and clip.audio_dim(218) == 32
    none = load_projection("none", 1, 1, embedder_kind="x", embedder_model="y", frame_dim=8, audio_dim=4)
    assert none.frame_basis is None and none.audio_basis is None


def test_a_projection_for_other_dims_is_a_config_error(tmp_path):
    path = tmp_path / "p.npz"
    save(path, np.eye(16, 4, dtype=np.float32), np.eye(10, 4, dtype=np.float32), {"kind": "k", "model": "m"})
    with pytest.raises(ConfigError, match="16-d"):
        load_projection(str(path), 1, 1, embedder_kind="k", embedder_model="m", frame_dim=512, audio_dim=10)
    with pytest.raises(ConfigError, match="not found"):
        load_projection(str(tmp_path / "missing.npz"), 1, 1, embedder_kind="k", embedder_model="m",
                        frame_dim=16, audio_dim=10)
    ok = load_projection(str(path), 1, 1, embedder_kind="k", embedder_model="m", frame_dim=16, audio_dim=10)
    assert ok.frames_dim(16) == 4 and ok.audio_dim(10) == 4


@pytest.mark.parametrize("bad, why", [
    (np.full((2, 34), np.nan, np.float32), "NaN"),
    (np.zeros((3, 34), np.float32), "shape"),
    (np.tile(np.linspace(1, 0, 34, dtype=np.float32), (2, 1)), "rise"),
    (np.tile(np.linspace(0, 5, 34, dtype=np.float32), (2, 1)), "outside"),
    (np.array([["a"] * 34] * 2), "numeric"),
])
def test_a_user_projection_with_broken_tail_tables_fails_at_load_naming_the_array(tmp_path, bad, why):
    """A hand-made or damaged file's tables are refused when the config is read, not at search time."""
    path = tmp_path / "p.npz"
    basis = {"frames": np.eye(16, 4, dtype=np.float32), "audio": np.eye(10, 4, dtype=np.float32)}
    np.savez(path, **basis, frame_tails=bad, info_kind=np.array("k"), info_model=np.array("m"))
    with pytest.raises(ConfigError, match=f"p.npz: frame_tails .*{why}"):
        load_projection(str(path), 1, 1, embedder_kind="k", embedder_model="m", frame_dim=16, audio_dim=10)


def test_a_file_that_is_not_a_projection_is_a_config_error(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    with pytest.raises(ConfigError, match="not a projection file"):
        load_projection(str(junk), 1, 1, embedder_kind="k", embedder_model="m", frame_dim=16, audio_dim=10)
    pickled = tmp_path / "obj.npz"
    np.savez(pickled, frames=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ConfigError, match="obj.npz"):
        load_projection(str(pickled), 1, 1, embedder_kind="k", embedder_model="m", frame_dim=16, audio_dim=10)


@pytest.mark.slow  # indexes through the pipeline, then reindexes
def test_changing_the_projection_needs_reindex_which_rebuilds_from_the_shards(tmp_path, monkeypatch):
    """An index built with full vectors does not open under a projected config (a clear error that
    names the fix), and `reindex` rebuilds the Milvus copy from the shards in the new layout."""
    from astradup.catalog import Catalog
    from astradup.pipeline import index
    from tests.media import make_video

    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(2):
        make_video(videos / f"v{i}.mp4", seconds=5, seed=i, audio="noise")
    full = load_config(overrides={"data_dir": str(tmp_path / "data"), "vectors": {"projection": "none",
                                  "frame_stride": 1, "audio_stride": 1}, "pipeline": {"dashboard": False}})
    cat = Catalog(full)
    assert index([str(videos)], full, catalog=cat).indexed == 2
    assert cat.vectors.count()["frames"] == 10
    cat.vectors.close()

    projected = load_config(overrides={"data_dir": str(tmp_path / "data"), "pipeline": {"dashboard": False}})
    with pytest.raises(ConfigError, match="astradup reindex"):
        Catalog(projected).vectors  # noqa: B018
    cat = Catalog(projected)
    assert cat.reindex() == 2
    feats = cat.shards.load_features(cat.vectors.video_ids())
    want = {k: sum(cat.vectors.stored_rows(f)[k] for f in feats.values()) for k in ("frames", "phash", "audio")}
    assert cat.vectors.count() == want and want["frames"] == 6  # 5 frames a video, every 2nd from the first
    cat.vectors.close()


def _videos(rng, n_videos: int, rows: int, d: int, shared: int) -> list[np.ndarray]:
    """Unrelated videos whose rows share a few strong directions (as real descriptors do): in a
    few dimensions that keep those directions, unrelated rows look closer than they are."""
    common = np.linalg.qr(rng.normal(size=(d, shared)))[0]
    return [_unit(rng.normal(size=(rows, shared)) @ common.T * 2.0 + rng.normal(size=(rows, d)))
            for _ in range(n_videos)]


def test_the_knn_floor_is_as_rare_for_unrelated_rows_as_the_full_floor():
    from astradup.store.projection import matching_floor, tail_table

    rng = np.random.default_rng(4)
    vids = _videos(rng, 12, 60, 64, 4)
    basis = fit_basis(np.concatenate(vids), 4)
    table = tail_table(vids, basis)
    assert table.shape[0] == 2 and np.all(np.diff(table[0]) >= 0)
    full = np.concatenate([(vids[0] @ v.T).ravel() for v in vids[1:]])
    proj = np.concatenate([(project_rows(vids[0], basis) @ project_rows(v, basis).T).ravel() for v in vids[1:]])
    floor = float(np.quantile(full, 0.99))
    knn = matching_floor(floor, table)
    assert knn > floor + 0.2  # projected rows are closer: the same rarity needs a higher bar
    assert abs((proj >= knn).mean() - (full >= floor).mean()) < 0.01
    assert (proj >= floor).mean() > 0.1  # read against the full floor, most pairs would "match"
    assert matching_floor(0.5, None) == 0.5
    assert tail_table(vids[:1], basis) is None and tail_table(vids, None) is None


def test_knn_floor_needs_the_basis_and_the_builtin_file_carries_tables(tmp_path):
    rng = np.random.default_rng(5)
    vids = _videos(rng, 6, 40, 64, 4)
    from astradup.store.projection import tail_table

    basis = fit_basis(np.concatenate(vids), 4)
    p = IndexProjection(basis, None, frame_tails=tail_table(vids, basis))
    assert p.knn_floor(0.3, "frames") > 0.3 and p.knn_floor(0.3, "audio") == 0.3
    save(tmp_path / "p.npz", basis, None, {"kind": "k", "model": "m"}, frame_tails=tail_table(vids, basis))
    loaded = load_projection(str(tmp_path / "p.npz"), 1, 1, embedder_kind="k", embedder_model="m",
                             frame_dim=64, audio_dim=8)
    assert loaded.knn_floor(0.3, "frames") == pytest.approx(p.knn_floor(0.3, "frames"))
    other = load_projection(str(tmp_path / "p.npz"), 1, 1, embedder_kind="k", embedder_model="other",
                            frame_dim=64, audio_dim=8)
    assert other.knn_floor(0.3, "frames") == 0.3  # frames go in whole: their floor is the full one
    cfg = load_config()
    builtin = load_projection("builtin", 2, 2, embedder_kind=cfg.embedder.kind, embedder_model=cfg.embedder.model,
                              frame_dim=512, audio_dim=218)
    assert builtin.knn_floor(0.55, "frames") > 0.7 and builtin.knn_floor(0.55, "audio") > 0.55


def test_the_unrelated_level_reads_the_tail_table_of_the_space_the_knn_searches():
    from astradup.features.basis import TAIL_PROBS

    full = np.linspace(0.1, 0.5, len(TAIL_PROBS))  # rarer share, higher similarity
    table = np.stack([full, full + 0.3])  # [full space, projected]
    basis = np.eye(8, 4, dtype=np.float32)
    projected = IndexProjection(basis, None, frame_tails=table)
    assert projected.unrelated_level(float(TAIL_PROBS[3]), "frames") == pytest.approx(full[3] + 0.3)
    assert projected.unrelated_level(0.05, "frames") < projected.unrelated_level(0.01, "frames")
    assert IndexProjection(None, None, frame_tails=table).unrelated_level(float(TAIL_PROBS[3]), "frames") \
        == pytest.approx(full[3])  # kept whole: the full-space side
    assert projected.unrelated_level(0.05, "audio") == 0.0  # no table: every hit counts
    cfg = load_config()
    builtin = load_projection("builtin", 2, 2, embedder_kind=cfg.embedder.kind, embedder_model=cfg.embedder.model,
                              frame_dim=512, audio_dim=218)
    assert 0.3 < builtin.unrelated_level(0.05, "frames") < builtin.knn_floor(0.55, "frames")


def _turning(n: int, step_deg: float) -> np.ndarray:
    """n unit rows in a plane, each ``step_deg`` on from the last (a slow pan)."""
    a = np.radians(step_deg) * np.arange(n)
    return np.stack([np.cos(a), np.sin(a), np.zeros(n)], axis=1).astype(np.float32)


def test_alike_rows_form_runs_that_a_slow_drift_cannot_stretch():
    shot = _turning(4, 1.0)  # one shot: every row within 3 degrees of the first
    cut = _unit(np.array([[0, 0, 1.0], [0, 0.1, 1.0]]))
    rows = np.concatenate([shot, cut])
    np.testing.assert_array_equal(alike_runs(rows, 0.95), [0, 0, 0, 0, 4, 4])
    np.testing.assert_array_equal(alike_runs(rows, 1.0), np.arange(6))  # 1 = every row its own
    pan = _turning(40, 5.0)  # each row 5 degrees on: alike to the previous (0.996), not to rows 20 on
    own = alike_runs(pan, 0.95)
    assert np.all(np.sum(pan * pan[own], axis=1) >= 0.95 - 1e-6)  # every row alike to its run's first
    assert len(np.unique(own)) >= 40 * 5 / 18.2 - 1  # runs of at most 18.2 degrees (cos 0.95)
    assert len(alike_runs(np.zeros((0, 3), np.float32), 0.95)) == 0


class _Store:
    """Answers each query row with one hit whose time is the row's first coordinate; counts rows."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    def search_frames(self, q: np.ndarray, k: int, exclude=None) -> list:
        self.asked.append(len(q))
        return [[("v", float(r[0]), 1.0)] for r in q]

    search_audio = search_frames


def test_a_run_of_alike_query_rows_is_searched_once_and_every_row_gets_its_neighbours():
    rows = np.concatenate([_turning(4, 1.0), _unit(np.array([[0, 0, 1.0], [0, 0.1, 1.0]]))])
    store = _Store()
    hits = ProjectedVectors(store, IndexProjection(), merge_rows=0.95).search_frames(rows, 10)
    assert store.asked == [2] and len(hits) == 6  # two runs searched, six rows answered
    assert all(h == hits[0] for h in hits[:4]) and hits[4] == hits[5] != hits[0]
    hits[1].append(("w", 0.0, 0.5))  # a row's list is its own: a caller may change it
    assert len(hits[0]) == 1
    whole = ProjectedVectors(store, IndexProjection(), merge_rows=1.0).search_audio(rows, 10)
    assert store.asked[-1] == 6 and [h[0][1] for h in whole] == pytest.approx(rows[:, 0].tolist())
