"""VSC22 descriptor files (``.npz``) and the video ids AstraDup gives VSC22 tools.

Meta's Video Similarity Challenge code (facebookresearch/vsc2022, ``vsc/storage.py``) stores the
descriptors of many videos as one ``np.savez`` file of three row-aligned arrays:

=========== ================= ==========================================================
key         dtype, shape      meaning
=========== ================= ==========================================================
video_ids   unicode, [N]      the video each row belongs to (``Q100001``, ``R100001``...)
timestamps  float32, [N, 2]   (start, end) seconds of the stretch the row describes
features    float32, [N, D]   the row's descriptor (here: the frame embedding, L2-normalised)
=========== ================= ==========================================================

Rows of one video are contiguous and in time order. AstraDup samples frames at ``decode.fps``
(1 a second by default), so a row is one sampled frame and its interval runs from that frame's
time to the next sample's (the median spacing of the video's samples; the last row gets the same
length).

Ids. VSC22 names a video by its file's stem (``Q100001.mp4`` is ``Q100001``), and its ground
truth uses those names, so every id written for VSC22 tools (descriptor files and
``astradup search --format vsc``) is the stem of the file: the query's path, and the uri the
indexed video was read from. The stem is not unique across folders (the content hash is); the
caller checks for collisions where it matters (``export_descriptors`` refuses two videos of one
stem).

Memory stays bounded by one video whatever the library's size: rows are streamed to temporary
files and copied into the archive at the end (only the ids and row counts are held).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Iterable

import numpy as np

from astradup.errors import AstraDupError

KEYS = ("video_ids", "timestamps", "features")
MAX_DIM = 512  # the descriptor track's limit per row (DrivenData's VSC22 rules: float32, up to 512-d)
_COPY_CHUNK = 8 << 20


def vsc_id(path_or_uri: str) -> str:
    """A file's VSC22 id: its stem (``s3://b/refs/R100001.mp4`` -> ``R100001``)."""
    name = PurePosixPath(str(path_or_uri).replace("\\", "/")).name
    return Path(name).stem or name


def row_intervals(timestamps: np.ndarray, default_step: float) -> np.ndarray:
    """[T] sample times -> [T, 2] (start, end): each sample stands until the next one (the median
    spacing, so a dropped frame does not stretch one row), ``default_step`` for a lone sample."""
    t = np.asarray(timestamps, np.float64).reshape(-1)
    step = float(np.median(np.diff(np.sort(t)))) if len(t) > 1 else float(default_step)
    if not np.isfinite(step) or step <= 0:
        step = float(default_step)
    return np.stack([t, t + step], axis=1).astype(np.float32)


class DescriptorWriter:
    """Streams videos' rows into a VSC22 descriptor ``.npz`` (see the module doc for the layout).

    ``add`` each video, then ``close`` writes the archive; nothing appears at ``path`` before
    ``close`` succeeds (it is written next to it under a temporary name and renamed)."""

    def __init__(self, path: str | Path, default_step: float = 1.0) -> None:
        self.path = Path(path)
        self.default_step = default_step
        self._tmp = tempfile.TemporaryDirectory(prefix="astradup-vsc-")
        self._ts = open(os.path.join(self._tmp.name, "timestamps.raw"), "wb")
        self._feat = open(os.path.join(self._tmp.name, "features.raw"), "wb")
        self._ids: list[tuple[str, int]] = []
        self._seen: set[str] = set()
        self.dim: int | None = None
        self.rows = 0

    def add(self, video_id: str, timestamps: np.ndarray, embeddings: np.ndarray) -> None:
        emb = np.asarray(embeddings, "<f4")
        if len(emb) == 0:
            return  # a video without frames has no descriptor rows (VSC22 has no empty-video row)
        if emb.ndim != 2 or len(emb) != len(np.asarray(timestamps).reshape(-1)):
            raise AstraDupError(f"{video_id}: {emb.shape} embeddings do not match "
                                f"{len(np.asarray(timestamps).reshape(-1))} timestamps")
        if video_id in self._seen:
            raise AstraDupError(f"two videos have the VSC22 id {video_id!r} (ids are file stems): "
                                "rename one, or export them separately")
        if self.dim is None:
            self.dim = int(emb.shape[1])
        elif emb.shape[1] != self.dim:
            raise AstraDupError(f"{video_id}: {emb.shape[1]}-d embeddings, the file so far has {self.dim}-d "
                                "(videos indexed with other embedder settings)")
        order = np.argsort(np.asarray(timestamps, np.float64).reshape(-1), kind="stable")
        self._ts.write(np.ascontiguousarray(row_intervals(timestamps, self.default_step)[order], "<f4").tobytes())
        self._feat.write(np.ascontiguousarray(emb[order]).tobytes())
        self._seen.add(video_id)
        self._ids.append((video_id, len(emb)))
        self.rows += len(emb)

    def close(self) -> dict:
        """Write the archive; returns {"videos", "rows", "dim", "path"}."""
        try:
            self._ts.close()
            self._feat.close()
            width = max((len(v) for v, _ in self._ids), default=1)
            ids = np.repeat(np.asarray([v for v, _ in self._ids], dtype=f"<U{width}"),
                            [n for _, n in self._ids]) if self._ids else np.zeros((0,), "<U1")
            dim = self.dim or 0
            tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
            try:
                with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
                    with zf.open("video_ids.npy", "w", force_zip64=True) as f:
                        np.lib.format.write_array(f, ids, allow_pickle=False)
                    self._raw_member(zf, "timestamps.npy", "timestamps.raw", (self.rows, 2))
                    self._raw_member(zf, "features.npy", "features.raw", (self.rows, dim))
                os.replace(tmp, self.path)
            except OSError as e:
                tmp.unlink(missing_ok=True)
                raise AstraDupError(f"{self.path}: cannot write: {e.strerror or e}") from None
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            return {"videos": len(self._ids), "rows": self.rows, "dim": dim, "path": str(self.path)}
        finally:
            self._tmp.cleanup()

    def _raw_member(self, zf: zipfile.ZipFile, name: str, raw: str, shape: tuple[int, int]) -> None:
        """One float32 array member, its rows copied from the raw file written by ``add``."""
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")), "fortran_order": False,
                  "shape": shape}
        with zf.open(name, "w", force_zip64=True) as f, open(os.path.join(self._tmp.name, raw), "rb") as src:
            np.lib.format.write_array_header_2_0(f, header)
            shutil.copyfileobj(src, f, _COPY_CHUNK)


def export_descriptors(path: str | Path, videos: Iterable[tuple[str, np.ndarray, np.ndarray]],
                       default_step: float = 1.0) -> dict:
    """(vsc id, timestamps [T], embeddings [T, D]) per video -> a VSC22 descriptor ``.npz``."""
    w = DescriptorWriter(path, default_step)
    try:
        for vid, ts, emb in videos:
            w.add(vid, ts, emb)
    except BaseException:
        w._tmp.cleanup()
        raise
    return w.close()
