"""Decoding: the right number of frames at the right times, audio when there is some, and a clear
MediaError naming the file for everything that is not a decodable video."""
from __future__ import annotations

import io
import math

import numpy as np
import pytest

from astradup.config import DecodeConfig
from astradup.errors import MediaError
from astradup.features.metadata import metadata_similarity
from astradup.io.probe import probe
from astradup.io import decode as D
from astradup.io.frames import DecordReader, FFmpegReader
from astradup.io.ids import content_id
from tests.media import BROKEN_KINDS, make_broken, make_copy, make_video, run_ffmpeg

CFG = DecodeConfig(fps=1.0, frame_size=64, sample_rate=11025)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("dec") / "good.mp4", seconds=6, fps=10,
                      source="testsrc2", audio="noise")


@pytest.fixture(scope="module")
def silent(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("dec") / "silent.mp4", seconds=4, fps=10,
                      source="mandelbrot", audio=None)


def test_probe_good_file(good):
    m = probe(str(good))
    assert m["duration"] == pytest.approx(6.0, abs=0.1)
    assert m["fps"] == pytest.approx(10.0)
    assert (m["width"], m["height"], m["rotation"]) == (160, 120, 0)
    assert m["vcodec"] == "h264" and m["acodec"] == "aac" and m["has_audio"] is True
    assert m["audio_sample_rate"] == 44100 and "mp4" in m["container"]
    assert m["size"] == good.stat().st_size and m["bit_rate"] > 0


def test_probe_applies_rotation(tmp_path, good):
    rotated = tmp_path / "rot.mp4"
    run_ffmpeg("-i", str(good), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(rotated))
    m = probe(str(rotated))
    assert m["rotation"] in (90, 270)
    assert (m["width"], m["height"]) == (120, 160)


def test_decode_good_file(good):
    d = D.decode_path(str(good), CFG)
    n = math.ceil(6 * CFG.fps - 0.5)  # samples at 0.5, 1.5, ... 5.5 s
    assert d.frames.shape == (n, 64, 64, 3) and d.frames.dtype == np.uint8
    assert d.timestamps.dtype == np.float32
    np.testing.assert_allclose(d.timestamps, np.arange(n) + 0.5)
    assert d.frames.std() > 10  # real pictures, not a blank buffer
    assert d.audio is not None and d.audio.dtype == np.float32 and d.audio.ndim == 1
    assert abs(len(d.audio) - 6 * 11025) < 0.05 * 11025
    assert np.abs(d.audio).max() <= 1.0 and d.audio.std() > 0.01
    assert d.sample_rate == 11025
    assert d.ref.uri == str(good) and d.ref.video_id == content_id(good)
    assert d.ref.size == good.stat().st_size
    assert d.meta["decoder"] == "decord" and d.meta["has_audio"] is True


def test_frames_follow_the_video_in_time(tmp_path):
    """A clip whose brightness steps every second: each sample lands in its own second."""
    path = tmp_path / "steps.mp4"
    run_ffmpeg("-f", "lavfi", "-i", "color=c=black:size=64x64:rate=25", "-t", "5",
               "-vf", "geq=lum='min(255\\,floor(T)*60)':cb=128:cr=128",
               "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path))
    d = D.decode_path(str(path), DecodeConfig(fps=1.0, frame_size=32))
    levels = d.frames.reshape(len(d.frames), -1).mean(1)
    assert len(levels) == 5 and np.all(np.diff(levels) > 30), levels
    f = FFmpegReader(1.0).read(str(path), d.timestamps, 32)
    np.testing.assert_allclose(f.reshape(len(f), -1).mean(1), levels, atol=6)


def test_ffmpeg_fallback_matches_decord(good):
    d = D.decode_path(str(good), CFG)
    f = FFmpegReader(CFG.fps).read(str(good), d.timestamps, CFG.frame_size)
    assert f.shape == d.frames.shape
    assert np.abs(f.astype(int) - d.frames.astype(int)).mean() < 8


def test_fallback_is_used_when_decord_fails(good, monkeypatch):
    def boom(*_a, **_k):
        raise RuntimeError("decord cannot read this")
    monkeypatch.setattr(DecordReader, "chunks", boom)
    d = D.decode_path(str(good), CFG)
    assert d.meta["decoder"] == "ffmpeg" and "decord cannot read" in d.meta["decord_error"]
    assert d.frames.shape == (6, 64, 64, 3)


def test_no_frame_from_either_decoder_is_a_media_error(good, monkeypatch):
    monkeypatch.setattr(DecordReader, "chunks", lambda *a, **k: iter(()))  # no frame
    monkeypatch.setattr(FFmpegReader, "chunks", lambda *a, **k: iter(()))
    with pytest.raises(MediaError) as e:
        D.decode_path(str(good), CFG)
    assert str(good) in str(e.value) and "no decodable frame" in e.value.reason


def test_file_without_audio(silent):
    d = D.decode_path(str(silent), CFG)
    assert d.audio is None and d.meta["has_audio"] is False and d.meta["acodec"] is None
    assert len(d.frames) == 4


def test_max_seconds_limits_video_and_audio(good):
    d = D.decode_path(str(good), DecodeConfig(fps=2.0, frame_size=32, max_seconds=2.0))
    np.testing.assert_allclose(d.timestamps, [0.25, 0.75, 1.25, 1.75])
    assert d.audio is not None and abs(len(d.audio) - 2 * 11025) < 0.05 * 11025


def test_clip_shorter_than_one_period_gives_its_middle_frame(tmp_path):
    short = make_video(tmp_path / "short.mp4", seconds=0.4, fps=10, audio=None)
    d = D.decode_path(str(short), DecodeConfig(fps=1.0, frame_size=32))
    assert len(d.frames) == 1 and d.timestamps[0] == pytest.approx(0.2, abs=0.05)
    assert len(FFmpegReader(1.0).read(str(short), d.timestamps, 32)) == 1


def test_truncated_faststart_file_decodes_what_is_there(tmp_path):
    """With the index at the front, a cut file still opens: the frames before the cut come back."""
    full = make_video(tmp_path / "full.mp4", seconds=10, fps=10, source="life", audio="sine",
                      faststart=True)
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    d = D.decode_path(str(cut), CFG)
    assert 1 <= len(d.frames) < d.meta["frames_expected"] == 10
    np.testing.assert_allclose(d.timestamps, np.arange(len(d.frames)) + 0.5)


EXPECTED_REASON = {
    "zero_byte": "empty file (0 bytes)",
    "truncated": "truncated",
    "not_video": "not a media file",
    "no_video_stream": "no video stream",
    "image": "still image",
}


@pytest.mark.parametrize("kind", BROKEN_KINDS)
def test_broken_files_raise_media_error_with_path(tmp_path, kind):
    path = make_broken(kind, tmp_path / f"{kind}.mp4")
    with pytest.raises(MediaError) as e:
        D.decode_path(str(path), CFG)
    assert e.value.path == str(path) and str(path) in str(e.value)
    assert EXPECTED_REASON[kind] in e.value.reason, e.value.reason


def test_missing_file(tmp_path):
    with pytest.raises(MediaError, match="file not found"):
        D.decode_path(str(tmp_path / "nope.mp4"), CFG)
    with pytest.raises(MediaError, match="file not found"):
        probe(str(tmp_path / "nope.mp4"))


def test_content_id_is_stable_and_content_based(tmp_path, good):
    a = content_id(good)
    assert len(a) == 32 and int(a, 16) >= 0
    assert content_id(str(good)) == a
    with open(good, "rb") as f:
        assert content_id(f) == a
    copy = tmp_path / "renamed.bin"
    copy.write_bytes(good.read_bytes())
    assert content_id(copy) == a  # the name does not matter
    other = bytearray(good.read_bytes())
    other[-1] ^= 1
    assert content_id(io.BytesIO(bytes(other))) != a
    assert content_id(io.BytesIO(b"")) == content_id(io.BytesIO(b""))
    # Larger than one chunk, to cover the streaming loop.
    big = bytes(range(256)) * 9000
    assert content_id(io.BytesIO(big)) != content_id(io.BytesIO(big[:-1]))


def test_metadata_similarity(good, tmp_path):
    a = probe(str(good))
    assert metadata_similarity(a, a) == pytest.approx(1.0)
    half = make_copy(good, tmp_path / "half.mp4", vf="scale=80:60", seconds=3)
    b = probe(str(half))
    s = metadata_similarity(a, b)
    # Same aspect and fps, half the duration: (0.5 + 1 + 1) / 3.
    assert s == pytest.approx((0.5 + 1 + 1) / 3, abs=0.03)
    wide = {"duration": 6.0, "width": 1920, "height": 1080, "fps": 25.0}
    assert metadata_similarity(a, wide) < s
    assert metadata_similarity({}, a) == 0.0
    assert metadata_similarity({"duration": 6.0}, {"duration": 3.0}) == pytest.approx(0.5)
