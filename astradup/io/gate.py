"""The one gate between untrusted bytes and a demuxer: every reader of media opens it through here.

libavformat, left to itself, guesses a file's format from its content and some of the formats it
can guess (DASH and HLS manifests, ffconcat scripts, image sequences, ...) open *other* files or
URLs named inside it. A "video" that is really such a manifest makes ffprobe or ffmpeg read a file
of the server's choosing on the attacker's behalf. So nothing here lets libavformat guess:

* :func:`sniff` names the container from the file's own first bytes (never its name or a client's
  Content-Type), and only the containers in :class:`Container`, none of which opens another resource;
* every open forces that container's demuxer, allows only it (``format_whitelist``: a demuxer that
  tried to open a nested one is refused) and only the ``file`` protocol: :meth:`Admitted.ffmpeg_input`
  for ffmpeg/ffprobe command lines, :meth:`Admitted.open_pyav` for PyAV;
* decord takes no options, so :func:`decord_reader` first lets PyAV's libavformat guess the format
  with only the sniffed demuxer allowed: a file whose content would make a guessing demuxer pick
  anything else is refused before decord sees it;
* the file handed on is an absolute path of a regular file (no FIFO, device or ``proto:`` prefix).

Refusals are :class:`MediaError` with a fixed reason that names no path, so a client cannot learn
from the text what exists on the server. The limits that bound a decode's memory and time before
it starts (pixels, frame rate) are checked by :func:`check_limits` on the probe's answer.
"""
from __future__ import annotations

import os
import stat
import struct
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any

from astradup.config import DecodeConfig
from astradup.errors import MediaError

HEAD_BYTES = 1024  # enough for every signature below (MPEG-TS needs three 188-byte packets)
PROTOCOLS = "file"  # the only protocol an input may use (outputs to a pipe are not inputs)

NOT_A_VIDEO = ("not a media file: not a video container we read (its first bytes match none of "
               "MP4/MOV, Matroska/WebM, AVI, MPEG-TS/PS, FLV, ASF, Ogg)")
DISAGREES = ("not a media file: not a video container we read (its content does not parse as the "
             "container its first bytes name)")
AUDIO_ONLY = "not a video: no video stream (an audio-only MP4/M4A file)"
NOT_A_FILE = "not a regular file"
UNREADABLE = "cannot be read"


class Container(Enum):
    """The containers AstraDup reads, each with the facts every reader needs.

    ``demuxer`` is libavformat's full demuxer name (what ``format_whitelist`` matches), ``forced``
    the name given to ``-f`` / PyAV's ``format=``, ``suffix`` what a temporary copy is called.
    """

    MP4 = ("mov,mp4,m4a,3gp,3g2,mj2", "mov", ".mp4")
    MATROSKA = ("matroska,webm", "matroska", ".mkv")
    AVI = ("avi", "avi", ".avi")
    MPEGTS = ("mpegts", "mpegts", ".ts")
    MPEGPS = ("mpeg", "mpeg", ".mpg")
    FLV = ("flv", "flv", ".flv")
    ASF = ("asf", "asf", ".wmv")
    OGG = ("ogg", "ogg", ".ogv")

    def __init__(self, demuxer: str, forced: str, suffix: str) -> None:
        self.demuxer = demuxer
        self.forced = forced
        self.suffix = suffix


# ISO BMFF (MP4/MOV/3GP/M4V) files start with a box: 4-byte size, then its type. "ftyp" is the
# norm; old QuickTime files may start with another top-level atom.
_QT_ATOMS = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")
_AUDIO_ONLY_BRANDS = (b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B ")


def sniff(head: bytes, total: int | None = None) -> Container | None:
    """The container named by a file's first bytes, or None when it is none we read.

    ``total`` (the file's size, when known) lets an MP4's first box be checked for a size that fits
    in the file: text that happens to carry an atom name at bytes 4-8 (``<!--free-->``) does not.
    """
    if len(head) >= 12 and head[4:8] in _QT_ATOMS and _plausible_box(head, total):
        if head[4:8] == b"ftyp" and head[8:12] in _AUDIO_ONLY_BRANDS:
            return None
        return Container.MP4
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: Matroska and WebM
        return Container.MATROSKA
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX"):
        return Container.AVI
    if _ts_sync(head, 188, 0) or _ts_sync(head, 192, 4):  # MPEG-TS, or M2TS with a 4-byte time code
        return Container.MPEGTS
    if head[:4] == b"\x00\x00\x01\xba":  # MPEG program stream pack header
        return Container.MPEGPS
    if head[:3] == b"FLV" and len(head) >= 4 and head[3] == 1:
        return Container.FLV
    if head[:16] == bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c"):  # ASF header GUID (WMV)
        return Container.ASF
    if head[:4] == b"OggS":
        return Container.OGG
    return None


def _plausible_box(head: bytes, total: int | None) -> bool:
    """A first box whose size is 0 (to the end), 1 (a 64-bit size follows) or 8..file size."""
    size = struct.unpack(">I", head[:4])[0]
    if size == 1:
        if len(head) < 16:
            return False
        size = struct.unpack(">Q", head[8:16])[0]
        return size >= 16 and (total is None or size <= total)
    return size == 0 or (size >= 8 and (total is None or size <= total))


# Pictures renamed as videos are common enough to deserve their own reason.
_IMAGES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
           (b"BM", "BMP"))


def refusal(head: bytes) -> str:
    """Why a head that :func:`sniff` refused is refused, as a user would want it said."""
    if len(head) >= 12 and head[4:8] == b"ftyp" and head[8:12] in _AUDIO_ONLY_BRANDS:
        return AUDIO_ONLY
    for magic, name in _IMAGES:
        if head.startswith(magic):
            return f"a still image ({name}), not a video"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a still image (WebP), not a video"
    return NOT_A_VIDEO


def _ts_sync(head: bytes, packet: int, offset: int) -> bool:
    """Three sync bytes (0x47) a packet apart: one 0x47 alone is far too common to mean anything."""
    idx = [offset + i * packet for i in range(3)]
    return len(head) > idx[-1] and all(head[i] == 0x47 for i in idx)


@dataclass(frozen=True)
class Admitted:
    """A regular local file whose first bytes name a container we read: the only thing a demuxer sees."""

    path: str  # absolute
    container: Container
    size: int

    def ffmpeg_input(self, max_pixels: int = 0) -> list[str]:
        """The ffmpeg/ffprobe input options and ``-i``: demuxer forced and alone allowed, file protocol
        only, and (``max_pixels`` > 0) decoders refusing pictures larger than that."""
        c = self.container
        args = ["-protocol_whitelist", PROTOCOLS, "-format_whitelist", c.demuxer, "-f", c.forced]
        if max_pixels > 0:
            args += ["-max_pixels", str(int(max_pixels))]
        return [*args, "-i", "file:" + self.path]

    def pyav_options(self) -> dict[str, str]:
        return {"protocol_whitelist": PROTOCOLS, "format_whitelist": self.container.demuxer}

    def open_pyav(self, **kw: Any) -> Any:
        """``av.open`` of this file with its demuxer forced (a PyAV InputContainer; use it in ``with``)."""
        import av

        return av.open(self.path, format=self.container.forced, options=self.pyav_options(), **kw)


def admit(path: str) -> Admitted:
    """The gate: MediaError (a reason naming no path) unless ``path`` is a regular file of a known
    container. Cheap (one stat and a 1 KB read), so every reader calls it rather than trusting that
    some earlier step did."""
    given = os.fspath(path)  # errors name the file as the caller named it
    path = os.path.abspath(given)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        raise MediaError(given, UNREADABLE) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise MediaError(given, NOT_A_FILE)
        head = os.read(fd, HEAD_BYTES)
    except OSError:
        raise MediaError(given, UNREADABLE) from None
    finally:
        os.close(fd)
    if not head:
        raise MediaError(given, "empty file (0 bytes)")
    container = sniff(head, st.st_size)
    if container is None:
        raise MediaError(given, refusal(head))
    return Admitted(path, container, int(st.st_size))


def confirm_guess(gated: Admitted) -> None:
    """MediaError unless libavformat, guessing the format from the content as decord's copy will,
    lands on the sniffed demuxer (only that one allowed, file protocol only)."""
    try:
        import av
    except ImportError:  # no PyAV: nothing can confirm the guess, so decord may not run (a
        # RuntimeError, not a refusal: the ffmpeg reader, which forces the demuxer, takes over)
        raise RuntimeError("PyAV is missing: decord is not used without the gate's format check") from None
    try:
        with av.open(gated.path, options=gated.pyav_options(), metadata_errors="replace") as c:
            name = c.format.name
    except Exception:  # noqa: BLE001 - whatever libavformat says, the guess did not land safely
        raise MediaError(gated.path, DISAGREES) from None
    if name != gated.container.demuxer:
        raise MediaError(gated.path, DISAGREES)


def decord_reader(path: str, **kw: Any) -> Any:
    """A ``decord.VideoReader`` on a file that passed the gate and whose guessed format is the
    sniffed one (decord's libavformat always guesses; it takes no demuxer options)."""
    import decord

    gated = admit(path)
    confirm_guess(gated)
    return decord.VideoReader(gated.path, **kw)


# ---------------------------------------------------------------- limits known before decoding

def check_limits(meta: dict[str, Any], limits: DecodeConfig, path: str = "") -> None:
    """MediaError naming the setting when the probed picture size or frame rate is over its limit
    (``decode.max_pixels``, ``decode.max_fps``; 0 = none)."""
    w, h = int(meta.get("width") or 0), int(meta.get("height") or 0)
    if limits.max_pixels > 0 and w * h > limits.max_pixels:
        raise MediaError(path, f"picture {w}x{h} is over the limit of {limits.max_pixels} pixels "
                               f"(decode.max_pixels)")
    fps = float(meta.get("fps") or 0.0)
    if limits.max_fps > 0 and fps > limits.max_fps:
        raise MediaError(path, f"frame rate {fps:g} is over the limit of {limits.max_fps:g} fps "
                               f"(decode.max_fps)")


class Deadline:
    """A decode's time budget: readers call :meth:`check` between pieces of work and hand
    :meth:`remaining` to a child process as its timeout."""

    def __init__(self, seconds: float, path: str = "") -> None:
        self.seconds = float(seconds)
        self.path = path
        self.at = time.monotonic() + self.seconds if self.seconds > 0 else None

    def expired(self) -> bool:
        return self.at is not None and time.monotonic() > self.at

    def remaining(self) -> float | None:
        return None if self.at is None else max(0.0, self.at - time.monotonic())

    def check(self) -> None:
        if self.expired():
            raise self.error()

    def error(self) -> MediaError:
        return MediaError(self.path, f"decoding took longer than its budget of {self.seconds:g} s "
                                     f"(decode.max_decode_seconds)")


NO_DEADLINE = Deadline(0.0)
