"""What container an upload is, told from its first bytes (magic numbers), never from its name or
the client's Content-Type, which say whatever the client wants.

Only a cheap gate: a file that passes still has to decode; one that fails is refused before a
decoder ever sees it.
"""
from __future__ import annotations

HEAD_BYTES = 1024  # enough for every signature below (MPEG-TS needs three 188-byte packets)

# ISO BMFF (MP4/MOV/3GP/M4V) files start with a box: 4-byte size, then its type. "ftyp" is the
# norm; old QuickTime files may start with another top-level atom.
_QT_ATOMS = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")
_AUDIO_ONLY_BRANDS = (b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B ")

SUFFIX = {"mp4": ".mp4", "matroska": ".mkv", "avi": ".avi", "mpegts": ".ts", "mpegps": ".mpg",
          "flv": ".flv", "asf": ".wmv", "ogg": ".ogv"}


def sniff_container(head: bytes) -> str | None:
    """Container name for the first bytes of a file, or None when it is not a video container we read."""
    if len(head) >= 12 and head[4:8] in _QT_ATOMS:
        if head[4:8] == b"ftyp" and head[8:12] in _AUDIO_ONLY_BRANDS:
            return None
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: Matroska and WebM
        return "matroska"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX"):
        return "avi"
    if _ts_sync(head, 188, 0) or _ts_sync(head, 192, 4):  # MPEG-TS, or M2TS with a 4-byte time code
        return "mpegts"
    if head[:4] == b"\x00\x00\x01\xba":  # MPEG program stream pack header
        return "mpegps"
    if head[:3] == b"FLV" and len(head) >= 4 and head[3] == 1:
        return "flv"
    if head[:16] == bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c"):  # ASF header GUID (WMV)
        return "asf"
    if head[:4] == b"OggS":
        return "ogg"
    return None


def _ts_sync(head: bytes, packet: int, offset: int) -> bool:
    """Three sync bytes (0x47) a packet apart: one 0x47 alone is far too common to mean anything."""
    idx = [offset + i * packet for i in range(3)]
    return len(head) > idx[-1] and all(head[i] == 0x47 for i in idx)
