"""The in-process fast paths give what the subprocess paths give.

probe() reads metadata through PyAV and the audio of an ordinary clip is decoded through PyAV, to
save starting ffprobe and an ffmpeg pipe per file. ffprobe / the pipe stay the reference: for every
file here the fast path either returns exactly the reference's answer or declines (None, an
exception) and the reference answers. The files are the odd ones too: a rotation, a VFR stream
whose duration the two FFmpeg versions compute differently, an orientation carried in the H.264
bitstream rather than the container, cover art, fragments, millisecond timestamps.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from astradup.config import DecodeConfig
from astradup.errors import MediaError
from astradup.io import probe as M
from astradup.io import decode as D
from astradup.io import pcm as P
from astradup.records import VideoRef
from tests import bad_media
from tests.bad_media import FAIL_REASONS
from tests.media import make_video, run_ffmpeg

SR = 11025


def _rotated(path: Path, degrees: int) -> Path:
    ref = bad_media.make_rotation_reference(path.with_name(f"ref{degrees}.mp4"))
    run_ffmpeg("-i", str(ref), "-c", "copy", "-metadata:s:v", f"rotate={degrees}", str(path))
    return path


def _cover(path: Path) -> Path:
    jpg = path.with_name("cover.jpg")
    run_ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x64", "-frames:v", "1", str(jpg))
    return jpg


def _audio_with_cover(path: Path) -> Path:
    """An .m4a song with cover art: its only video stream is an attached picture."""
    run_ffmpeg("-f", "lavfi", "-i", "sine=frequency=330:duration=2", "-i", str(_cover(path)),
               "-map", "0:a", "-map", "1:v", "-c:a", "aac", "-c:v", "mjpeg",
               "-disposition:v:0", "attached_pic", str(path))
    return path


def _video_with_cover(path: Path) -> Path:
    """A real video that also carries cover art (a second, attached-picture video stream)."""
    src = make_video(path.with_name("vc_src.mp4"), seconds=3, source="gradients", audio="sine", seed=3)
    run_ffmpeg("-i", str(src), "-i", str(_cover(path)), "-map", "0", "-map", "1", "-c", "copy",
               "-c:v:1", "mjpeg", "-disposition:v:1", "attached_pic", str(path))
    return path


def _stereo_48k(path: Path) -> Path:
    """29.97 fps (durations off the millisecond grid) with a 48 kHz stereo AAC track."""
    run_ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=30000/1001", "-f", "lavfi",
               "-i", "anoisesrc=color=pink:seed=4:sample_rate=48000:amplitude=0.4", "-t", "3.3",
               "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast",
               "-pix_fmt", "yuv420p", "-c:a", "aac", "-ac", "2", str(path))
    return path


def _sei_rotation(path: Path) -> Path:
    """An orientation in the H.264 bitstream (SEI) only: ffprobe's stream rotation is 0."""
    src = make_video(path.with_name("sei_src.mp4"), seconds=2, source="smptebars", audio="sine", seed=5)
    run_ffmpeg("-i", str(src), "-c", "copy", "-bsf:v", "h264_metadata=display_orientation=insert:rotate=90",
               str(path))
    return path


def _fragmented(path: Path) -> Path:
    src = make_video(path.with_name("frag_src.mp4"), seconds=3, source="boxes", audio="sine", seed=6)
    run_ffmpeg("-i", str(src), "-c", "copy", "-movflags", "+frag_keyframe+empty_moov", str(path))
    return path


# name -> (maker, whether the fast path must answer it itself: the common cases must not decline)
VALID = {
    "plain.mp4": (lambda p: make_video(p, seconds=4, fps=29.97, audio="noise", seed=1), True),
    "stereo48k.mp4": (_stereo_48k, True),
    "no_audio.mp4": (lambda p: make_video(p, seconds=3, source="mandelbrot", audio=None, seed=2), True),
    "rot90.mp4": (lambda p: _rotated(p, 90), True),
    "rot180.mp4": (lambda p: _rotated(p, 180), True),
    "rot270.mp4": (lambda p: _rotated(p, 270), True),
    "mkv_as.mp4": (bad_media.make_mkv_as_mp4, True),
    "webm_as.mp4": (bad_media.make_webm_as_mp4, True),
    "mp4_as.avi": (bad_media.make_mp4_as_avi, True),
    "vfr.mp4": (bad_media.make_vfr, True),  # mvhd 5.534 s (ffprobe 5.1) vs longest stream 5.533333 (FFmpeg 8)
    "video_with_cover.mp4": (_video_with_cover, True),
    "sei_rotation.mp4": (_sei_rotation, False),  # declined: the picture's matrix could be the bitstream's
    "fragmented.mp4": (_fragmented, False),  # declined: no mvhd duration to go by
}


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inproc")
    out = {}
    for name, (maker, _) in VALID.items():
        sub = root / name.replace(".", "_")
        sub.mkdir()
        out[name] = Path(maker(sub / name))
    return out


@pytest.mark.parametrize("name", list(VALID))
def test_fast_probe_equals_ffprobe(media, name):
    path = str(media[name])
    ref = M.probe_ffprobe(path)
    fast = M.probe_pyav(path)
    if VALID[name][1]:
        assert fast is not None, name
    if fast is not None:
        assert fast == ref, (name, {k: (fast[k], ref[k]) for k in ref if fast[k] != ref[k]})
    assert M.probe(path) == ref


def test_the_cases_that_matter_are_really_covered(media):
    rot = {d: M.probe_pyav(str(media[f"rot{d}.mp4"])) for d in (90, 180, 270)}
    assert {d: r["rotation"] for d, r in rot.items()} == {90: 90, 180: 180, 270: 270}
    assert (rot[90]["width"], rot[90]["height"]) == (180, 320)
    assert M.probe_ffprobe(str(media["sei_rotation.mp4"]))["rotation"] == 0
    vfr = M.probe_pyav(str(media["vfr.mp4"]))
    assert vfr["duration"] == 5.534  # ffprobe 5.1's reading; PyAV's own FFmpeg says 5.533333
    plain = M.probe_pyav(str(media["plain.mp4"]))
    assert plain["acodec"] == "aac" and plain["fps"] == pytest.approx(29.97) and plain["bit_rate"] > 0


def test_cover_art_alone_is_not_a_video(tmp_path):
    path = str(_audio_with_cover(tmp_path / "song.m4a"))
    assert M.probe_pyav(path) is None
    with pytest.raises(MediaError) as ei:
        M.probe(path)
    assert "no video stream" in ei.value.reason


@pytest.mark.parametrize("kind", ["zero_byte", "truncated", "audio_only", "text_renamed", "image_renamed"])
def test_bad_files_keep_ffprobes_reason(tmp_path, kind):
    path = str(bad_media.make(kind, tmp_path))
    if kind != "zero_byte":
        assert M.probe_pyav(path) is None
    with pytest.raises(MediaError) as ei:
        M.probe(path)
    assert FAIL_REASONS[kind] in ei.value.reason


def test_probe_without_or_with_a_broken_pyav_asks_ffprobe(media, monkeypatch):
    path = str(media["plain.mp4"])
    ref = M.probe_ffprobe(path)
    with monkeypatch.context() as mp:
        mp.setitem(sys.modules, "av", None)  # import av -> ImportError
        assert M.probe_pyav(path) is None and M.probe(path) == ref

    def boom(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(M, "_describe_pyav", boom)
    assert M.probe_pyav(path) is None and M.probe(path) == ref


# --- audio ----------------------------------------------------------------------------------------

def _pipe(path, seconds, max_seconds=0.0):
    return P.AudioPipe(str(path), SR, seconds, max_seconds).result()


AUDIO = ["plain.mp4", "stereo48k.mp4", "mkv_as.mp4", "webm_as.mp4", "mp4_as.avi", "rot90.mp4"]


@pytest.mark.parametrize("name", AUDIO)
def test_in_process_audio_equals_the_pipe(media, name):
    meta = M.probe(str(media[name]))
    ref = _pipe(media[name], meta["duration"])
    got = P.pcm_in_process(str(media[name]), SR, meta["duration"], 0.0)
    # Same decoder and resampler: measured equal length and at most ~2e-7 apart (float rounding).
    assert got.dtype == np.float32 and got.ndim == 1 and len(got) == len(ref)
    assert np.abs(got - ref).max() < 1e-5
    assert np.corrcoef(got, ref)[0, 1] > 0.9999 and np.abs(got).max() <= 1.0


@pytest.mark.parametrize("name", ["plain.mp4", "stereo48k.mp4", "mkv_as.mp4", "webm_as.mp4"])
@pytest.mark.parametrize("max_seconds", [1.23456789, 2.5])
def test_max_seconds_cuts_where_ffmpeg_t_cuts(media, name, max_seconds):
    meta = M.probe(str(media[name]))
    ref = _pipe(media[name], meta["duration"], max_seconds)
    assert len(ref) < meta["duration"] * SR - SR // 2  # a real cut
    got = P.decode_pcm(str(media[name]), SR, meta["duration"], max_seconds)
    assert len(got) == len(ref) and np.abs(got - ref).max() < 1e-5
    if name.endswith("as.mp4"):
        # Matroska's millisecond timestamps: ffmpeg -t cuts a few samples off the count, so the
        # in-process decoder refuses to guess and the pipe makes the cut.
        with pytest.raises(RuntimeError):
            P.pcm_in_process(str(media[name]), SR, meta["duration"], max_seconds)
    else:
        assert len(P.pcm_in_process(str(media[name]), SR, meta["duration"], max_seconds)) == len(ref)


class _Spy:
    """Counts AudioPipe starts (the ffmpeg pipe) while delegating to the real one."""

    def __init__(self, monkeypatch):
        self.calls = 0
        real = P.AudioPipe
        spy = self

        class Job(real):
            def __init__(self, *a, **k):
                spy.calls += 1
                super().__init__(*a, **k)

        monkeypatch.setattr(P, "AudioPipe", Job)


def _decode(path, cfg):
    return D.decode_video(str(path), VideoRef("x", str(path), 0), cfg)


@pytest.mark.parametrize("max_seconds", [0.0, 2.0])
def test_decode_video_uses_no_pipe_and_gives_the_same_result(media, monkeypatch, max_seconds):
    cfg = DecodeConfig(fps=1.0, frame_size=64, sample_rate=SR, max_seconds=max_seconds)
    path = media["stereo48k.mp4"]
    with monkeypatch.context() as m:  # the reference: every track by the ffmpeg pipe, every probe by ffprobe
        m.setattr(P, "INPROCESS_AUDIO_MAX_S", -1.0)
        m.setattr(M, "probe_pyav", lambda gated: None)
        ref = _decode(path, cfg)
    spy = _Spy(monkeypatch)
    got = _decode(path, cfg)
    assert spy.calls == 0
    assert got.meta == ref.meta and np.array_equal(got.frames, ref.frames)
    assert len(got.audio) == len(ref.audio) and np.abs(got.audio - ref.audio).max() < 1e-5
    if max_seconds:
        assert len(got.audio) == round(max_seconds * SR)


def test_pipe_takes_over_when_pyav_fails(media, monkeypatch):
    cfg = DecodeConfig(fps=1.0, frame_size=64, sample_rate=SR)
    path = media["plain.mp4"]
    ref = _decode(path, cfg)
    meta = M.probe(str(path))
    spy = _Spy(monkeypatch)
    with monkeypatch.context() as mp:
        mp.setitem(sys.modules, "av", None)  # import av -> ImportError inside the decoder
        got = D.decode_video(str(path), VideoRef("x", str(path), 0), cfg, meta=meta)
    assert spy.calls == 1 and "audio_error" not in got.meta
    assert len(got.audio) == len(ref.audio) and np.abs(got.audio - ref.audio).max() < 1e-5

    def boom(*a, **k):
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(P, "pcm_in_process", boom)
    got = D.decode_video(str(path), VideoRef("x", str(path), 0), cfg, meta=meta)
    assert spy.calls == 2 and np.abs(got.audio - ref.audio).max() < 1e-5


def test_long_tracks_and_decode_audio(media, monkeypatch):
    cfg = DecodeConfig(fps=1.0, frame_size=64, sample_rate=SR)
    path = media["plain.mp4"]
    ref = _pipe(path, 4.0)
    spy = _Spy(monkeypatch)
    audio = D.decode_audio(str(path), SR)
    assert spy.calls == 0 and len(audio) == len(ref) and np.abs(audio - ref).max() < 1e-5
    monkeypatch.setattr(P, "INPROCESS_AUDIO_MAX_S", 1.0)  # "long": back to the pipe, beside the frames
    got = _decode(path, cfg)
    assert spy.calls == 1 and len(got.audio) == len(ref)
    assert D.decode_audio(str(path), SR) is not None and spy.calls == 2
    assert D.decode_audio(str(media["no_audio.mp4"]), SR) is None


def test_broken_audio_stays_non_fatal(tmp_path, monkeypatch):
    """Both decoders failing leaves the pipe's error in meta['audio_error'], as before."""
    cfg = DecodeConfig(fps=1.0, frame_size=64, sample_rate=SR)
    path = make_video(tmp_path / "v.mp4", seconds=2, audio="sine")

    def boom(*a, **k):
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(P, "pcm_in_process", boom)
    meta = dict(M.probe(str(path)))
    got = D.decode_video(str(path), VideoRef("x", str(path), 0), cfg, meta={**meta, "has_audio": True})
    assert got.audio is not None  # the pipe still delivers
    video_only = make_video(tmp_path / "vo.mp4", seconds=2, audio=None)
    meta = dict(M.probe(str(video_only)), has_audio=True)  # claims a track that is not there
    got = D.decode_video(str(video_only), VideoRef("x", str(video_only), 0), cfg, meta=meta)
    assert got.audio is None and "matches no streams" in got.meta["audio_error"]
