"""The report's pictures: a few frames spread over every grouped video, and frames where each pair's
best copied intervals start (bounded per pair, shared between pairs on a tenth-of-a-second grid)."""
from __future__ import annotations

import base64
import os
from pathlib import Path

from astradup.io.sources import is_remote, local_copy, storage_options
from astradup.io.thumbs import jpeg_frame
from astradup.report.data import ReportData, VideoEntry
from astradup.timeline import moments

THUMBS_PER_VIDEO = 3
THUMB_WIDTH = 240
MOMENTS_PER_PAIR = 4  # copied intervals per pair with a frame on each side (the best-scored ones)
MAX_MOMENTS_PER_PAIR = 16
MOMENT_STEP = 0.1  # seconds: moments are taken per tenth of a second, so pairs share frames


def thumb_times(duration: float | None, n: int) -> list[float]:
    """``n`` times spread over the video (centres of n equal slices), so the strip shows its course."""
    if not duration or duration <= 0:
        return [0.0]
    return [round(duration * (i + 0.5) / n, 2) for i in range(n)]


def _gone_reason(uri: str, endpoint: str) -> str:
    """"" when the file is still there, else a sentence for the placeholder."""
    if not uri:
        return "no uri recorded for this video"
    try:
        if is_remote(uri):
            import fsspec

            proto = uri.split("://", 1)[0]
            fs = fsspec.filesystem(proto, **(storage_options(endpoint) if proto == "s3" else {}))
            return "" if fs.exists(uri) else "file gone: no longer at its indexed location"
        return "" if os.path.isfile(uri.removeprefix("file://")) else "file gone: no longer at its indexed location"
    except Exception as e:  # an unreachable store: the report is still worth having
        return f"file unreachable: {type(e).__name__}: {e}"


def moment_time(t: float) -> float:
    """``t`` on the MOMENT_STEP grid: two pairs asking for nearly the same frame share one."""
    return round(round(max(0.0, t) / MOMENT_STEP) * MOMENT_STEP, 1)


def plan_moments(data: ReportData, per_pair: int = MOMENTS_PER_PAIR) -> None:
    """Choose each pair's pictured intervals and tell both videos which frames they owe."""
    for p in data.pairs:
        spans = p.spans()
        p.moments = moments(spans, per_pair)
        q, s = p.query_id, p.match.source_id
        for i in p.moments:
            if q in data.videos:
                data.videos[q].moment_times.add(moment_time(spans[i].a_start))
            if s in data.videos:
                data.videos[s].moment_times.add(moment_time(spans[i].b_start))


def make_thumbs(video: VideoEntry, thumbs_dir: Path, endpoint: str = "", n: int = THUMBS_PER_VIDEO,
                width: int = THUMB_WIDTH, embed: bool = False) -> None:
    """Fill ``video.thumbs`` and ``video.moments`` (or ``video.missing``). A remote file is
    downloaded once for all its frames; a frame past the end falls back to an earlier time."""
    if n <= 0 and not video.moment_times:
        return  # no picture asked for (--thumbs 0, no interval to picture)
    video.missing = _gone_reason(video.uri, endpoint)
    if video.missing:
        return
    thumbs_dir.mkdir(parents=True, exist_ok=True)

    def take(out: Path, t: float) -> str | None:
        if not jpeg_frame(path, t, width, out):
            return None
        if embed:
            src = "data:image/jpeg;base64," + base64.b64encode(out.read_bytes()).decode()
            out.unlink()
            return src
        return f"{thumbs_dir.name}/{out.name}"

    try:
        with local_copy(video.uri, endpoint) as path:
            for k, t in enumerate(thumb_times(video.duration, n) if n > 0 else []):
                if (src := take(thumbs_dir / f"{video.video_id}_{k}.jpg", t)) is not None:
                    video.thumbs.append(src)
            for t in sorted(video.moment_times):
                if (src := take(thumbs_dir / f"{video.video_id}_at{int(round(t / MOMENT_STEP))}.jpg", t)) is not None:
                    video.moments[t] = src
    except FileNotFoundError:
        video.missing = "file gone: no longer at its indexed location"
        return
    except Exception as e:  # a read error on one video must not cost the whole report
        video.missing = f"file unreadable: {type(e).__name__}: {e}"
        return
    if not video.thumbs and not video.moments:
        video.missing = "ffmpeg could not extract a frame from this file"
