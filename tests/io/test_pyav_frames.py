"""decode.decoder = pyav_fast: the PyAV sampler (non-reference frames and the loop filter skipped)
samples the same times as decord, pictures close to decord's, upright, and hands over to decord
(then ffmpeg) whenever it fails; a decoder name that does not exist is a ConfigError.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from astradup.config import DecodeConfig, EmbedderConfig, load_config
from astradup.errors import ConfigError
from astradup.io import decode as D
from astradup.io import frames as F
from astradup.io.sampling import sample_times
from tests import bad_media
from tests.media import make_video, run_ffmpeg

DECORD = DecodeConfig(fps=1.0, frame_size=64)
FAST = dataclasses.replace(DECORD, decoder="pyav_fast")


@pytest.fixture(scope="module")
def bframes(tmp_path_factory):
    """x264's default preset: B-frames (a pyramid, so some are references), 25 fps, 8 s; content
    that changes every frame (a zoom), so a picture a few frames early really differs a little."""
    path = tmp_path_factory.mktemp("pyav") / "bframes.mp4"
    run_ffmpeg("-f", "lavfi", "-i", "mandelbrot=size=320x240:rate=25", "-t", "8",
               "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path))
    return path


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_same_times_and_close_frames_as_decord(bframes):
    ref = D.decode_path(str(bframes), DECORD)
    fast = D.decode_path(str(bframes), FAST)
    assert ref.meta["decoder"] == "decord" and fast.meta["decoder"] == "pyav_fast"
    assert "pyav_error" not in fast.meta
    assert fast.frames.shape == ref.frames.shape == (8, 64, 64, 3)
    np.testing.assert_array_equal(fast.timestamps, ref.timestamps)
    # Measured 0.9-2.8 per frame (a picture up to ~0.1 s early, no deblocking); another zoom
    # level than the sample's would be tens.
    assert _mad(fast.frames, ref.frames) < 4
    assert max(_mad(f, r) for f, r in zip(fast.frames, ref.frames)) < 6
    # Audio is untouched by the setting.
    assert fast.audio is None and ref.audio is None


def test_nothing_skipped_is_decords_picture(bframes):
    """With skipping off the sampler picks decord's very frames; what is left is the scaler's
    rounding (0.014 grey levels on the natural dev20 clips, ~1.5 on this synthetic picture)."""
    ref = D.decode_path(str(bframes), DECORD)
    plain = F.PyAVReader(skip_frame=None, skip_loop_filter=False).read(str(bframes), ref.timestamps, 64)
    assert plain.shape == ref.frames.shape
    assert _mad(plain, ref.frames) < 2.5
    # The skipped pictures: further from decord's than the plain decode, still close.
    fast = F.PyAVReader().read(str(bframes), ref.timestamps, 64)
    assert _mad(plain, ref.frames) < _mad(fast, ref.frames) < 4


def test_skipping_is_active_and_stops_after_the_last_sample(bframes):
    times = sample_times(8.0, 1.0)
    fast, plain = {}, {}
    F.PyAVReader(stats=fast).read(str(bframes), times, 64)
    F.PyAVReader(skip_frame=None, skip_loop_filter=False, stats=plain).read(str(bframes), times, 64)
    # Measured 95 of 191 pictures decoded (every non-reference B-frame left out) against 189.
    assert fast["decoded"] < 0.7 * fast["packets"]
    assert plain["decoded"] >= plain["packets"] - 3  # the decoder's delay: a few still inside
    # Only the first 2.5 s are needed: decoding stops well before the 200 packets of the file.
    F.PyAVReader(stats=fast).read(str(bframes), times[:2], 64)
    assert fast["packets"] < 100


def test_embeddings_match_decords(bframes):
    from astradup.features.embedder import make_embedder

    emb = make_embedder(EmbedderConfig(pca_dims=0, device="cpu"))
    cfg = dataclasses.replace(DECORD, frame_size=224)
    a = emb.embed(D.decode_path(str(bframes), cfg).frames)
    b = emb.embed(D.decode_path(str(bframes), dataclasses.replace(cfg, decoder="pyav_fast")).frames)
    cos = (a * b).sum(axis=1)
    assert cos.min() > 0.95, cos  # measured 0.969-0.998


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotated_file_comes_out_upright(tmp_path, degrees):
    ref = bad_media.make_rotation_reference(tmp_path / "ref.mp4")
    rot = tmp_path / "rot.mp4"
    run_ffmpeg("-i", str(ref), "-c", "copy", "-metadata:s:v", f"rotate={degrees}", str(rot))
    # At 224 px as tests/io/test_bad_media.py checks decord: the sampler resizes, then turns; decord
    # turns, then resizes, which on these sharp colour bars differs by 1.7 grey levels at 224 px
    # (5.8 at 64 px; decord's own turned frames are as far from its unturned ones turned).
    cfg = dataclasses.replace(DECORD, frame_size=224)
    want = D.decode_path(str(rot), cfg)
    got = D.decode_path(str(rot), dataclasses.replace(cfg, decoder="pyav_fast"))
    assert got.meta["decoder"] == "pyav_fast" and got.meta["rotation"] == want.meta["rotation"] != 0
    assert got.frames.shape == want.frames.shape
    assert _mad(got.frames, want.frames) < 4, degrees
    stored = D.decode_path(str(ref), cfg).frames
    assert _mad(got.frames, stored) > 40  # the stored pixels really are turned


def test_orientation_only_in_the_bitstream_is_ignored_like_decord(tmp_path):
    """An H.264 SEI orientation: probe() says 0 and decord does not turn the picture, nor does PyAV
    (which would show it on the frame's display matrix)."""
    ref = bad_media.make_rotation_reference(tmp_path / "ref.mp4")
    sei = tmp_path / "sei.mp4"
    run_ffmpeg("-i", str(ref), "-c", "copy", "-bsf:v", "h264_metadata=display_orientation=insert:rotate=90",
               str(sei))
    want = D.decode_path(str(sei), DECORD)
    got = D.decode_path(str(sei), FAST)
    assert got.meta["decoder"] == "pyav_fast" and got.meta["rotation"] == 0
    assert _mad(got.frames, want.frames) < 4


def test_vfr_is_sampled_by_timestamp(tmp_path):
    path = bad_media.make_vfr(tmp_path / "vfr.mp4")
    want = D.decode_path(str(path), DECORD)
    got = D.decode_path(str(path), FAST)
    assert got.meta["decoder"] == "pyav_fast" and len(got.frames) == len(want.frames) == 6
    np.testing.assert_array_equal(got.timestamps, want.timestamps)
    assert max(_mad(g, w) for g, w in zip(got.frames, want.frames)) < 4


def test_short_and_one_frame_files(tmp_path):
    one = bad_media.make_one_frame(tmp_path / "one.mp4")
    short = make_video(tmp_path / "short.mp4", seconds=0.4, fps=10, audio=None)
    for path in (one, short):
        want = D.decode_path(str(path), DECORD)
        got = D.decode_path(str(path), FAST)
        assert got.meta["decoder"] == "pyav_fast" and got.frames.shape == want.frames.shape == (1, 64, 64, 3)
        np.testing.assert_array_equal(got.timestamps, want.timestamps)
        assert _mad(got.frames, want.frames) < 4


def test_fallback_to_decord_when_pyav_fails(bframes, monkeypatch):
    ref = D.decode_path(str(bframes), DECORD)

    def boom(*_a, **_k):
        raise RuntimeError("PyAV cannot read this\nsecond line")
        yield  # a generator, as the real one

    monkeypatch.setattr(F, "pyav_samples", boom)
    d = D.decode_path(str(bframes), FAST)
    assert d.meta["decoder"] == "decord" and d.meta["pyav_error"] == "PyAV cannot read this"
    np.testing.assert_array_equal(d.frames, ref.frames)
    # Zero frames from PyAV: decord too, no error to record.
    monkeypatch.setattr(F.PyAVReader, "chunks", lambda *a, **k: iter(()))
    d = D.decode_path(str(bframes), FAST)
    assert d.meta["decoder"] == "decord" and "pyav_error" not in d.meta
    np.testing.assert_array_equal(d.frames, ref.frames)
    # Both failing: the ffmpeg pipe, as before.
    monkeypatch.setattr(F.DecordReader, "chunks", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("decord too")))
    d = D.decode_path(str(bframes), FAST)
    assert d.meta["decoder"] == "ffmpeg" and d.meta["decord_error"] == "decord too"
    assert len(d.frames) == 8


def test_damaged_file_falls_back(tmp_path):
    """A corrupt GOP makes PyAV raise; decord and ffmpeg then give what they gave before."""
    path = bad_media.make_corrupted_middle(tmp_path / "corrupt.mp4")
    want = D.decode_path(str(path), DECORD)
    got = D.decode_path(str(path), FAST)
    assert got.meta["decoder"] == want.meta["decoder"] and got.meta.get("pyav_error")
    assert got.frames.shape == want.frames.shape


def test_streamed_decode_uses_pyav(bframes):
    whole = D.decode_path(str(bframes), FAST)
    chunks: list[tuple[np.ndarray, np.ndarray]] = []
    meta = D.decode_streamed(str(bframes), FAST, lambda t, f: chunks.append((t, f.copy())), None, chunk=3)
    assert meta["decoder"] == "pyav_fast" and [len(f) for _, f in chunks] == [3, 3, 2]
    np.testing.assert_array_equal(np.concatenate([t for t, _ in chunks]), whole.timestamps)
    np.testing.assert_array_equal(np.concatenate([f for _, f in chunks]), whole.frames)


def test_streamed_decode_hands_over_to_decord_part_way(bframes, monkeypatch):
    """PyAV failing after two chunks: decord carries on from the first frame not delivered."""
    real = F.PyAVReader.chunks
    ref = D.decode_path(str(bframes), DECORD)

    def two_then_boom(*a, **k):
        for i, block in enumerate(real(*a, **k)):
            if i == 2:
                raise RuntimeError("damaged GOP")
            yield block

    monkeypatch.setattr(F.PyAVReader, "chunks", two_then_boom)
    chunks: list[np.ndarray] = []
    meta = D.decode_streamed(str(bframes), FAST, lambda t, f: chunks.append(f.copy()), None, chunk=3)
    assert meta["decoder"] == "pyav_fast+decord" and meta["pyav_error"] == "damaged GOP"
    frames = np.concatenate(chunks)
    assert frames.shape == ref.frames.shape
    np.testing.assert_array_equal(frames[6:], ref.frames[6:])  # decord's own pictures from frame 6
    assert _mad(frames[:6], ref.frames[:6]) < 4


def test_bad_decoder_is_a_config_error(bframes):
    with pytest.raises(ConfigError, match="decode.decoder"):
        load_config(overrides={"decode": {"decoder": "opencv"}})
    with pytest.raises(ConfigError, match="decode.decoder"):
        D.decode_path(str(bframes), dataclasses.replace(DECORD, decoder="PyAV"))
    assert load_config(overrides={"decode": {"decoder": "pyav_fast"}}).decode.decoder == "pyav_fast"
    assert load_config().decode.decoder == "decord"
