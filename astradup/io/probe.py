"""Container metadata of a media file: PyAV in-process, ffprobe as the reference.

Probing is the first thing done to every file, so it is also where a bad file is recognised and
turned into a :class:`MediaError` whose reason a user can act on (empty, truncated, not a video...).
ffprobe defines the answer, but starting it costs ~80 ms of CPU per file, while reading the same
fields through PyAV in-process costs 5-10 ms (20 dev20 sources: 8.4 ms against 87 on average). So
PyAV answers for the files where it provably gives ffprobe's dict (known containers and codecs, a
plain or right-angle rotation read from the container), and everything else, errors included, goes
to ffprobe: a bad file always gets ffprobe's reason, whatever PyAV's FFmpeg thinks of it.
How much two videos' metadata agree is features/metadata.py's job.
"""
from __future__ import annotations

import json
import math
import os
import re
import struct
import subprocess
from typing import Any, Callable

from astradup.errors import MediaError
from astradup.io.gate import Admitted, admit
from astradup.io.mp4_boxes import looks_like_mp4, mvhd_duration_us

FFPROBE_TIMEOUT_S = 60.0

# Demuxers ffprobe uses for a single picture; such a "video" has one frame and no duration.
_IMAGE_FORMATS = re.compile(r"(_pipe$|^image2$|^gif$|^webp$|^apng$)")


def _ratio(text: str | None) -> float:
    """'30000/1001' -> 29.97; '0/0' or junk -> 0.0."""
    if not text:
        return 0.0
    try:
        if "/" in text:
            num, den = text.split("/", 1)
            d = float(den)
            return float(num) / d if d else 0.0
        return float(text)
    except ValueError:
        return 0.0


def finite_float(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _int(value: Any) -> int | None:
    f = finite_float(value)
    return int(f) if f is not None else None


def _clean_ffprobe_message(stderr: str, path: str) -> str:
    """ffprobe's first message line, plus its closing 'path: error' line when that differs.

    Both are kept because the first is specific ("moov atom not found") while the last is the
    plain verdict ("Invalid data found when processing input"); prefixes are stripped.
    """
    lines: list[str] = []
    for line in stderr.splitlines():
        line = re.sub(r"^\[[^\]]*@ 0x[0-9a-f]+\]\s*", "", line.strip())
        for name in ("file:" + path, path):
            if line.startswith(name + ":"):
                line = line[len(name) + 1:].strip()
                break
        if line and line not in lines:
            lines.append(line)
    if not lines:
        return "unknown error"
    return lines[0] if len(lines) == 1 else f"{lines[0]}; {lines[-1]}"


def _rotation(stream: dict[str, Any]) -> int:
    """Display rotation in degrees, counter-clockwise as ffprobe's display matrix gives it, in 0..359.

    Old files carry a clockwise 'rotate' tag instead; it is negated so both read the same way.
    """
    for sd in stream.get("side_data_list") or []:
        r = finite_float(sd.get("rotation"))
        if r is not None:
            return int(round(r)) % 360
    r = finite_float((stream.get("tags") or {}).get("rotate"))
    return int(round(-r)) % 360 if r is not None else 0


def _run_ffprobe(gated: Admitted) -> dict[str, Any]:
    path = gated.path
    cmd = ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
           *gated.ffmpeg_input()]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=FFPROBE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise MediaError(path, f"ffprobe timed out after {FFPROBE_TIMEOUT_S:.0f} s") from None
    stderr = proc.stderr.decode("utf-8", "replace")
    try:
        info = json.loads(proc.stdout.decode("utf-8", "replace") or "{}")
    except json.JSONDecodeError:
        info = {}
    if proc.returncode != 0 or not info.get("format"):
        msg = _clean_ffprobe_message(stderr, path)
        if "moov atom not found" in stderr and looks_like_mp4(path):
            raise MediaError(path, f"truncated or incomplete MP4 (ffprobe: {msg})")
        raise MediaError(path, f"not a media file (ffprobe: {msg})")
    return info


def probe(path: str) -> dict[str, Any]:
    """Describe a video file; raise MediaError if it is not something we can index."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MediaError(path, "file not found")
    if os.path.isdir(path):
        raise MediaError(path, "is a directory, not a file")
    if os.path.getsize(path) == 0:
        raise MediaError(path, "empty file (0 bytes)")
    gated = admit(path)  # every reader below opens the file through the gate's forced demuxer
    meta = probe_pyav(gated)
    return meta if meta is not None else probe_ffprobe(gated)


def _gated(path: str | Admitted) -> Admitted:
    return path if isinstance(path, Admitted) else admit(path)


def probe_ffprobe(path: str | Admitted) -> dict[str, Any]:
    """probe()'s dict from ffprobe's JSON: the reference, and the only path that raises."""
    gated = _gated(path)
    path = gated.path
    size = gated.size
    info = _run_ffprobe(gated)
    fmt = info.get("format") or {}
    streams = info.get("streams") or []
    # Cover art in an .m4a/.mp3 shows up as a one-frame video stream flagged attached_pic.
    videos = [s for s in streams if s.get("codec_type") == "video"
              and not (s.get("disposition") or {}).get("attached_pic")]
    audios = [s for s in streams if s.get("codec_type") == "audio"]
    container = str(fmt.get("format_name") or "")
    if not videos:
        raise MediaError(path, "no video stream (audio-only or data file)")
    v = videos[0]

    duration = finite_float(fmt.get("duration"))
    if duration is None or duration <= 0:
        duration = finite_float(v.get("duration"))
    # An image demuxer with no duration (or a single frame) is a picture; an animated GIF/WebP
    # has a duration and frames, and is decoded like any video.
    if _IMAGE_FORMATS.search(container) and (duration is None or duration <= 0
                                             or _int(v.get("nb_frames")) in (None, 0, 1)):
        raise MediaError(path, f"a still image ({container}), not a video")
    if duration is None or duration <= 0:
        raise MediaError(path, "unreadable duration")

    a = audios[0] if audios else None
    return _meta(duration=duration, fps=_ratio(v.get("avg_frame_rate")) or _ratio(v.get("r_frame_rate")),
                 width=int(v.get("width") or 0), height=int(v.get("height") or 0), rotation=_rotation(v),
                 vcodec=v.get("codec_name"), acodec=a.get("codec_name") if a else None, container=container,
                 size=size, bit_rate=_int(fmt.get("bit_rate")),
                 audio_sample_rate=_int(a.get("sample_rate")) if a else None, has_audio=a is not None)


def _meta(*, duration: float, fps: float, width: int, height: int, rotation: int, vcodec: str | None,
          acodec: str | None, container: str, size: int, bit_rate: int | None,
          audio_sample_rate: int | None, has_audio: bool) -> dict[str, Any]:
    """probe()'s dict, whichever reader filled it: width and height as displayed (a 90/270 degree
    rotation swaps the coded ones)."""
    if rotation in (90, 270):
        width, height = height, width
    return {
        "duration": float(duration),
        "fps": float(fps),
        "width": width,
        "height": height,
        "rotation": rotation,
        "vcodec": vcodec,
        "acodec": acodec,
        "container": container,
        "size": int(size),
        "bit_rate": bit_rate,
        "has_audio": has_audio,
        "audio_sample_rate": audio_sample_rate,
    }


# --- the in-process fast path --------------------------------------------------------------------

# PyAV bundles a newer FFmpeg than the system's ffprobe, and the two must describe a file alike. These
# demuxers and codecs are old and stable in both (tests/io/test_inprocess_decode.py compares the dicts);
# anything else, e.g. a codec or container the older ffprobe does not know, is left to ffprobe.
_PYAV_CONTAINERS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "flv", "mpegts",
                              "mpeg", "asf", "ogg"})
_PYAV_VCODECS = frozenset({"h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "mpeg2video", "mpeg1video",
                           "mjpeg", "h263", "msmpeg4v2", "msmpeg4v3", "wmv1", "wmv2", "wmv3", "vc1",
                           "theora", "flv1", "prores", "dnxhd", "rawvideo"})
_PYAV_ACODECS = frozenset({"aac", "mp3", "mp2", "ac3", "eac3", "opus", "vorbis", "flac", "alac",
                           "wmav1", "wmav2", "amr_nb", "amr_wb", "pcm_s16le", "pcm_s16be", "pcm_s24le",
                           "pcm_f32le", "pcm_u8", "pcm_mulaw", "pcm_alaw", "dts"})
# The rotation is read off the first decoded picture (PyAV has no reader for a stream's side data).
# Past this size that saves nothing: measured per file, 4K H.264 in-process 23-26 ms against
# ffprobe's 93-141; 8K 122-175 ms against 133-153. Larger pictures go to ffprobe.
_PYAV_MAX_PIXELS = 3840 * 2160
# Packets read looking for the first picture before giving up (to ffprobe).
_PYAV_FIRST_FRAME_PACKETS = 64
# A display matrix is trusted only from these containers, whose matrix (ISO-BMFF tkhd) both FFmpeg
# versions read the same way; newer FFmpeg also derives matrices elsewhere (e.g. Matroska projection).
_PYAV_MATRIX_CONTAINERS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2"})


def _fmt_seconds(ts: int, num: int, den: int) -> float:
    """ffprobe's printed duration, read back: ts x av_q2d(time_base) printed with %f."""
    return float("%f" % (ts * (num / den)))


def probe_pyav(path: str | Admitted) -> dict[str, Any] | None:
    """probe()'s dict read in-process through PyAV, or None when ffprobe must answer instead.

    None is the answer to anything unexpected: PyAV missing, an error of any kind, a container,
    codec or value outside what has been checked to match ffprobe, a rotation in doubt.
    """
    try:
        import av
    except Exception:  # noqa: BLE001 - no PyAV: ffprobe it is
        return None
    try:
        gated = _gated(path)
        with gated.open_pyav(metadata_errors="replace") as c:
            return _describe_pyav(c, gated.path, av, gated.container.demuxer)
    except Exception:  # noqa: BLE001 - whatever went wrong, ffprobe gives the reference answer
        return None


def pyav_video_stream(c: Any, av: Any) -> Any | None:
    """The first video stream of an open PyAV container that is not cover art (an attached
    picture, as probe_ffprobe leaves out), or None: the stream probe() describes and the PyAV
    frame sampler (io/pyav_sampler.py) decodes."""
    cover = int(av.stream.Disposition.attached_pic)
    return next((s for s in c.streams.video if not int(s.disposition) & cover), None)


def _describe_pyav(c: Any, path: str, av: Any, container: str) -> dict[str, Any] | None:
    """``container``: the demuxer's full name (a forced open reports only the name it was given)."""
    if container not in _PYAV_CONTAINERS:
        return None
    v = pyav_video_stream(c, av)
    if v is None:
        return None  # ffprobe says which of "no video stream" / a still image
    cc = v.codec_context
    vcodec = cc.codec.canonical_name if cc is not None else None
    if vcodec not in _PYAV_VCODECS:
        return None
    audios = list(c.streams.audio)
    a = audios[0] if audios else None
    acodec = None
    if a is not None:
        acodec = a.codec_context.codec.canonical_name if a.codec_context is not None else None
        if acodec not in _PYAV_ACODECS:
            return None

    size = os.path.getsize(path)
    duration_us, bit_rate = _reference_timing(c, container, path, size)
    if duration_us is None:
        return None
    duration = _fmt_seconds(duration_us, 1, 1000000)
    fps = float(v.average_rate or 0) or float(v.base_rate or 0)
    width, height = int(cc.width or 0), int(cc.height or 0)
    if width <= 0 or height <= 0 or width * height > _PYAV_MAX_PIXELS or "rotate" in (v.metadata or {}):
        return None
    sample_rate = int(a.codec_context.sample_rate or 0) if a is not None else None
    if a is not None and not sample_rate:
        return None
    rotation = _pyav_rotation(c, v, container, av)
    if rotation is None:
        return None
    return _meta(duration=duration, fps=fps, width=width, height=height, rotation=rotation, vcodec=vcodec,
                 acodec=acodec, container=container, size=size, bit_rate=bit_rate,
                 audio_sample_rate=sample_rate, has_audio=a is not None)


def _reference_timing(c: Any, container: str, path: str, size: int) -> tuple[int | None, int | None]:
    """(format duration in microseconds, format bit rate) as the system's ffprobe reports them, or
    (None, None) when that cannot be told for sure.

    The two FFmpeg versions differ here: for MP4/MOV the older one (ffprobe 5.1) keeps the movie
    header's duration (mvhd, milliseconds rounded up by most muxers), the newer one takes the longest
    stream (5.534 vs 5.533333 s), so for that family the mvhd is read here the way 5.1 reads it. Both
    then derive the bit rate from the file size and that duration, which is checked on PyAV's own
    numbers before being redone with the reference duration.
    """
    ours = c.duration
    if ours is None or ours <= 0:
        return None, None  # no container duration: ffprobe's fallback to the stream's is its call
    if container == "mov,mp4,m4a,3gp,3g2,mj2":
        ref = mvhd_duration_us(path)
        # A reference far from PyAV's reading means something this code does not model: ask ffprobe.
        if ref is None or ref <= 0 or abs(ref - ours) > 500_000:
            return None, None
    else:  # the other allowed demuxers set it alike in both versions (checked on generated files)
        ref = ours
    if not c.bit_rate or c.bit_rate != _size_bit_rate(size, ours):
        return None, None
    return ref, _size_bit_rate(size, ref)


def _size_bit_rate(size: int, duration_us: int) -> int:
    """libavformat's format bit rate from the file size (update_stream_timings), in C's arithmetic."""
    return int(float(size) * 8.0 * 1000000 / float(duration_us)) if size > 0 and duration_us > 0 else 0


# The four display matrices (a, b, c, d in 16.16 fixed point) of a pure turn by a multiple of 90
# degrees, no flip and no scaling: the only ones read in-process.
_RIGHT_ANGLE_MATRICES = frozenset({(1, 0, 0, 1), (0, 1, -1, 0), (-1, 0, 0, -1), (0, -1, 1, 0)})


def _display_matrix(frame: Any, av: Any) -> tuple[int, ...] | None:
    """The 3x3 display matrix (9 int32) a decoded frame carries, or None."""
    sd = frame.side_data.get(av.sidedata.sidedata.Type.DISPLAYMATRIX)
    if sd is None:
        return None
    raw = bytes(sd)
    if len(raw) < 36:
        return ()
    return struct.unpack("<9i", raw[:36])


def _first_frame(packets: Any, decode: Callable[[Any], list]) -> tuple[Any, list]:
    """(first decoded frame, the packets fed to get it) within _PYAV_FIRST_FRAME_PACKETS packets."""
    fed = []
    for pkt in packets:
        if len(fed) >= _PYAV_FIRST_FRAME_PACKETS:
            break
        fed.append(pkt)
        frames = decode(pkt)
        if frames:
            return frames[0], fed
    return None, fed


def _pyav_rotation(c: Any, v: Any, container: str, av: Any) -> int | None:
    """ffprobe's rotation (_rotation) for stream ``v``, or None when it cannot be told for sure.

    PyAV 18 reads no stream side data, but the decoder attaches the container's display matrix to
    every picture it outputs, so the first picture shows it. A codec may also carry an orientation
    in the bitstream (an H.264/HEVC SEI, JPEG EXIF), which a picture shows the same way while
    ffprobe's stream-level value ignores it; so a matrix only counts when the same packets decoded
    by a bare decoder (one that knows nothing of the container) come out without one.
    """
    cc = v.codec_context
    cc.thread_count = 1  # one picture: threads would only add start-up and frame delay
    frame, fed = _first_frame(c.demux(v), cc.decode)
    if frame is None:
        return None
    m = _display_matrix(frame, av)
    if m is None:
        return 0
    if container not in _PYAV_MATRIX_CONTAINERS or len(m) != 9:
        return None
    unit = max(abs(m[0]), abs(m[1]))
    if unit <= 0 or any(x % unit for x in (m[0], m[1], m[3], m[4])) or m[2] or m[5] \
            or (m[0] // unit, m[1] // unit, m[3] // unit, m[4] // unit) not in _RIGHT_ANGLE_MATRICES:
        return None
    rotation = int(frame.rotation) % 360
    if rotation % 90:
        return None
    bare = av.CodecContext.create(cc.codec.name, "r")
    bare.extradata = cc.extradata
    bare.thread_count = 1
    if cc.type == "video":
        bare.width, bare.height = cc.width, cc.height
    for pkt in fed:  # the same packets, without the container's side data
        out = bare.decode(pkt)
        if out:
            return rotation if _display_matrix(out[0], av) is None else None
    return None
