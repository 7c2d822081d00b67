"""The media gate (astradup/io/gate.py): files crafted to make a demuxer read other files, and files
crafted to make decoding cost too much, are refused before any decoder runs, with reasons that
name no path and do not depend on what exists on the server."""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from astradup.config import DecodeConfig
from astradup.errors import MediaError
from astradup.io.probe import probe
from astradup.io import decode as D
from astradup.io.frames import DecordReader, FFmpegReader, PyAVReader
from astradup.io.pcm import AudioPipe
from astradup.io.sampling import sample_times
from astradup.io.gate import Container, Deadline, admit, confirm_guess, decord_reader, sniff
from astradup.records import VideoRef
from tests.media import make_broken, make_video, run_ffmpeg

CFG = DecodeConfig(fps=1.0, frame_size=64, sample_rate=11025)


def _mpd(base_url: str) -> str:
    """A DASH manifest whose only representation is the local file ``base_url``."""
    return ('<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-on-demand:2011" '
            'type="static" mediaPresentationDuration="PT3S" minBufferTime="PT1S"><Period>'
            '<AdaptationSet mimeType="video/mp4"><Representation id="1" bandwidth="1000" codecs="avc1.64000c" '
            f'width="160" height="120"><BaseURL>{base_url}</BaseURL></Representation></AdaptationSet>'
            '</Period></MPD>\n')


@pytest.fixture(scope="module")
def secret(tmp_path_factory) -> Path:
    """A video on the 'server's disk' that no upload may ever be matched against."""
    return make_video(tmp_path_factory.mktemp("server") / "secret.mp4", seconds=3, audio=None)


def _free_manifest(path: Path, target: str) -> Path:
    """The attack as found: an MPD starting with ``<!--free-->``, so bytes 4-8 read as an MP4 atom."""
    path.write_text("<!--free-->" + _mpd(target))
    return path


def _ftyp_manifest(path: Path, target: str) -> Path:
    """The same manifest behind a well-formed ftyp box: it passes any magic-byte sniff as MP4."""
    ftyp = struct.pack(">I", 24) + b"ftypisom" + struct.pack(">I", 512) + b"isomiso2"
    path.write_bytes(ftyp + _mpd(target).encode())
    return path


def _ts_manifest(path: Path, target: str) -> Path:
    """The manifest with 0x47 ('G') at bytes 0, 188 and 376: it sniffs as MPEG-TS."""
    body = bytearray(b"G<!--" + b"x" * 700 + b"-->" + _mpd(target).encode())
    for i in (0, 188, 376):
        body[i] = 0x47
    path.write_bytes(bytes(body))
    return path


def test_the_attack_is_real_without_the_gate(tmp_path, secret):
    """Guard for the tests below: left to guess, the system's ffprobe picks the dash demuxer (which
    opens the file named in BaseURL) for these files."""
    if not shutil.which("ffprobe"):
        pytest.skip("no ffprobe")
    for make in (_free_manifest, _ts_manifest):
        f = make(tmp_path / f"{make.__name__}.mp4", str(secret))
        proc = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=format_name", str(f)],
                              capture_output=True, text=True)
        assert "dash" in proc.stdout + proc.stderr, (make.__name__, proc.stdout, proc.stderr)


@pytest.mark.parametrize("make", [_free_manifest, _ftyp_manifest, _ts_manifest])
def test_manifests_never_reach_another_file(tmp_path, secret, make):
    """Probe, decode and the decord reader refuse each manifest, and the reason is the same whether
    the file it names exists or not (so it tells nothing about the server's disk)."""
    reasons = []
    for target in (str(secret), str(tmp_path / "no-such-file.mp4")):
        f = make(tmp_path / f"upload-{len(reasons)}.mp4", target)
        with pytest.raises(MediaError) as e:
            probe(str(f))
        reasons.append(e.value.reason)
        with pytest.raises(MediaError):
            D.decode_video(str(f), VideoRef("x", str(f), f.stat().st_size), CFG)
        with pytest.raises((MediaError, RuntimeError)):
            decord_reader(str(f))
        assert str(secret) not in e.value.reason and "secret" not in e.value.reason
        assert str(tmp_path) not in e.value.reason
    assert reasons[0] == reasons[1], reasons


def test_a_decoder_told_a_manifest_is_mp4_reads_nothing_else(tmp_path, secret):
    """Even past the sniff, every command line forces the demuxer: ffmpeg reads no frame."""
    f = _ftyp_manifest(tmp_path / "x.mp4", str(secret))
    gated = admit(str(f))
    assert gated.container is Container.MP4
    proc = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", *gated.ffmpeg_input(), "-f", "null", "-"],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "dash" not in proc.stderr
    with pytest.raises(MediaError):
        confirm_guess(gated)  # decord would guess for itself: refused


@pytest.mark.parametrize("text", [
    "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{target}\n#EXT-X-ENDLIST\n",
    "ffconcat version 1.0\nfile '{target}'\n",
    "file '{target}'\n",
])
def test_playlists_and_scripts_are_refused_at_the_sniff(tmp_path, secret, text):
    f = tmp_path / "playlist.mp4"
    f.write_text(text.format(target=secret))
    with pytest.raises(MediaError, match="not a media file"):
        admit(str(f))
    with pytest.raises(MediaError, match="not a media file"):
        probe(str(f))


def test_non_regular_files_are_refused(tmp_path):
    """By the gate, and by hashing, which comes before probing when indexing: a FIFO named like a
    video must not block an index job."""
    from astradup.config import Config
    from astradup.io.ids import content_id
    from astradup.decode_stage import decode_one

    fifo = tmp_path / "fifo.mp4"
    os.mkfifo(fifo)
    with pytest.raises(MediaError, match="not a regular file"):
        admit(str(fifo))
    with pytest.raises(MediaError, match="not a regular file"):
        admit(str(tmp_path))
    with pytest.raises(MediaError, match="not a regular file"):
        content_id(str(fifo))
    row = decode_one(str(fifo), 0, Config(), frozenset())
    assert row["status"] == "failed" and row["error"] == "not a regular file"


def test_sniff_known_containers_and_refusals(tmp_path):
    mp4 = make_video(tmp_path / "v.mp4", seconds=1, audio=None)
    assert sniff(mp4.read_bytes()[:1024]) is Container.MP4
    from tests.media import run_ffmpeg

    for ext, want in ((".mkv", Container.MATROSKA), (".webm", Container.MATROSKA), (".avi", Container.AVI),
                      (".ts", Container.MPEGTS), (".mpg", Container.MPEGPS), (".flv", Container.FLV)):
        out = tmp_path / f"v{ext}"
        codec = ["-c:v", "libvpx-vp9", "-b:v", "100k"] if ext == ".webm" else ["-c:v", "mpeg2video"] \
            if ext in (".mpg", ".ts") else ["-c:v", "flv"] if ext == ".flv" else ["-c:v", "mpeg4"]
        run_ffmpeg("-i", str(mp4), *codec, str(out))
        assert sniff(out.read_bytes()[:1024]) is want, ext
        confirm_guess(admit(str(out)))  # and libavformat, guessing, agrees
    not_video = make_broken("not_video", tmp_path / "t.mp4")
    image = make_broken("image", tmp_path / "i.mp4")
    m4a = make_broken("no_video_stream", tmp_path / "a.mp4")  # ftyp M4A: audio-only brand
    for p in (not_video, image, m4a):
        assert sniff(p.read_bytes()[:1024]) is None, p
    assert sniff(b"") is None
    assert sniff(b"\x47" + b"\x00" * 187) is None  # one sync byte alone is not MPEG-TS


def test_sniff_wants_a_first_box_that_fits_the_file():
    head = b"<!--free-->" + b" " * 40
    assert sniff(head) is Container.MP4 or sniff(head, total=len(head)) is None
    assert sniff(head, total=len(head)) is None
    good = struct.pack(">I", 24) + b"ftypisom" + b"\0" * 12
    assert sniff(good, total=1000) is Container.MP4


def test_real_videos_still_pass(tmp_path):
    v = make_video(tmp_path / "ok.mp4", seconds=2)
    dec = D.decode_video(str(v), VideoRef("x", str(v), v.stat().st_size), CFG)
    assert len(dec.frames) == 2 and dec.audio is not None
    confirm_guess(admit(str(v)))


# ------------------------------------------------------------------ decode bombs


def test_huge_pictures_are_refused_before_decoding(tmp_path):
    """9000x9000 (81 Mpx, over the 8K default of 35 Mpx) in a tiny MJPEG file: refused from the probe."""
    f = tmp_path / "huge.avi"
    run_ffmpeg("-f", "lavfi", "-i", "color=black:s=9000x9000:r=1", "-t", "1", "-c:v", "mjpeg", str(f))
    assert f.stat().st_size < 2_000_000
    with pytest.raises(MediaError, match="9000x9000 is over the limit"):
        D.decode_video(str(f), VideoRef("x", str(f), 0), CFG)


def test_frame_rate_and_pixel_limits_come_from_the_config(tmp_path):
    v = make_video(tmp_path / "v.mp4", seconds=1, size=(160, 120), fps=10, audio=None)
    with pytest.raises(MediaError, match=r"160x120 is over the limit of 10000 pixels \(decode.max_pixels\)"):
        D.decode_video(str(v), VideoRef("x", str(v), 0), DecodeConfig(frame_size=64, max_pixels=10_000))
    with pytest.raises(MediaError, match=r"frame rate 10 is over the limit of 5 fps"):
        D.decode_video(str(v), VideoRef("x", str(v), 0), DecodeConfig(frame_size=64, max_fps=5))
    fast = tmp_path / "fast.mp4"
    run_ffmpeg("-f", "lavfi", "-i", "testsrc2=size=32x32:rate=1000", "-t", "0.2", "-c:v", "libx264",
               "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(fast))
    with pytest.raises(MediaError, match="frame rate 1000 is over the limit of 240 fps"):
        D.decode_video(str(fast), VideoRef("x", str(fast), 0), CFG)


@pytest.mark.parametrize("decoder", ["decord", "pyav_fast", "ffmpeg", "audio"])
def test_a_decode_stops_at_its_time_budget(tmp_path, decoder):
    """Every reader gives up at the deadline instead of finishing the file."""
    v = make_video(tmp_path / "long.mp4", seconds=40, size=(320, 240), fps=30)
    times = sample_times(40.0, 1.0)
    deadline = Deadline(0.05, str(v))
    t0 = time.monotonic()
    with pytest.raises(MediaError, match="budget of 0.05 s"):
        if decoder == "decord":
            DecordReader().read(str(v), times, 64, deadline=deadline)
        elif decoder == "pyav_fast":
            PyAVReader().read(str(v), times, 64, deadline=deadline)
        elif decoder == "ffmpeg":
            time.sleep(0.06)
            FFmpegReader(1.0).read(str(v), times, 64, deadline)
        else:
            time.sleep(0.06)
            AudioPipe(str(v), 11025, 40.0, 0.0, deadline=deadline).result()
    assert time.monotonic() - t0 < 5.0


def test_decode_video_enforces_the_budget(tmp_path):
    v = make_video(tmp_path / "v.mp4", seconds=20, size=(320, 240), fps=30)
    cfg = DecodeConfig(frame_size=64, max_decode_seconds=0.01)
    with pytest.raises(MediaError, match="decode.max_decode_seconds"):
        D.decode_video(str(v), VideoRef("x", str(v), 0), cfg)
    ok = D.decode_video(str(v), VideoRef("x", str(v), 0), DecodeConfig(frame_size=64, max_decode_seconds=60))
    assert len(ok.frames) == 20 and np.isfinite(ok.audio).all()


def test_reasons_never_carry_a_path(tmp_path):
    """A decoder's message that names a file (its own temp copy or another) reaches a client path-free."""
    e = MediaError(str(tmp_path / "q.mp4"), f"Invalid data found when processing input: '{tmp_path}/q.mp4' "
                                            f"(at file:/etc/passwd, 30000/1001 fps)")
    assert "/etc" not in e.reason and str(tmp_path) not in e.reason
    assert "30000/1001" in e.reason and str(tmp_path) in str(e)  # the operator's text keeps its path
