"""`astradup report`: the duplicate groups of the index as an HTML page and a CSV, for people.

`astradup dedup` answers on a terminal; a librarian deciding what to delete wants to *see* the
copies. This module takes exactly the groups and pairs that ``dedup`` computes
(:func:`astradup.dedup.results.dedup_groups`: the dedup job's pairs, grouped by its union-find),
adds a few frames of every grouped video (ffmpeg, from the uri the index recorded, local or s3),
and writes::

    <out>/report.html   one page, no script, no network: groups, thumbnails, scores, intervals,
                        and per pair a timeline (astradup.timeline) with frames at the matched moments
    <out>/report.csv    one row per duplicate pair (spreadsheets, scripts)
    <out>/thumbs/       <video_id>_<k>.jpg frames spread over each video and <video_id>_at<ds>.jpg
                        frames at the start of copied intervals (ds: tenths of a second), which the
                        page shows (or inlined with embed_thumbs)

Frames at matched moments are bounded per pair (:data:`MOMENTS_PER_PAIR` intervals, both sides), so
a report over thousands of pairs takes a bounded number of pictures; a moment shared by several
pairs of one video is taken once.

A video whose file is no longer where it was indexed still appears, with a placeholder that says
so: the index remembers it, and "the copy is already gone" is useful to the reader. Reviewers'
verdicts are dedup's (``astradup.reviews.Verdicts``): a rejected pair is not in the report, a
confirmed one says so (the ``decision`` column, a "confirmed" badge).
"""
from __future__ import annotations

import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from astradup.config import Config
from astradup.progress import Tick
from astradup.report.data import collect
from astradup.report.page import is_audio_copy, render_html
from astradup.report.table import csv_text
from astradup.report.thumbs import (MAX_MOMENTS_PER_PAIR, MOMENTS_PER_PAIR, THUMBS_PER_VIDEO, make_thumbs,
                                    plan_moments)
from astradup.reviews import CONFIRMED


def _atomic_write(path: Path, text: str) -> None:
    """Write via a temp file + rename, so a reader (or a browser refresh) never sees half a report."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def write_report(cfg: Config, out_dir: str | Path, min_label: str = "near-duplicate", *,
                 thumbs_per_video: int = THUMBS_PER_VIDEO, embed_thumbs: bool = False, searcher=None,
                 workers: int | None = None, moments_per_pair: int = MOMENTS_PER_PAIR,
                 tick_join: Tick | None = None, tick_thumbs: Tick | None = None) -> dict[str, Any]:
    """Compute the groups, make the thumbnails, write report.html + report.csv; returns a summary.
    ``tick_join`` follows the dedup job when it runs, ``tick_thumbs`` the videos whose frames are taken."""
    if thumbs_per_video < 0:
        raise ValueError(f"thumbs per video must be >= 0, got {thumbs_per_video}")
    if not 0 <= moments_per_pair <= MAX_MOMENTS_PER_PAIR:
        raise ValueError(f"moments per pair must be 0 to {MAX_MOMENTS_PER_PAIR}, got {moments_per_pair}")
    t0 = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = collect(cfg, min_label, searcher, tick=tick_join)
    plan_moments(data, moments_per_pair)
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    thumb = lambda v, d: make_thumbs(v, d, cfg.s3_endpoint, thumbs_per_video, embed=embed_thumbs)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="astradup-thumbs-") as tmp:
        thumbs_dir = Path(tmp) / "thumbs" if embed_thumbs else out / "thumbs"
        if thumbs_per_video or any(v.moment_times for v in data.videos.values()):
            with ThreadPoolExecutor(max_workers=workers) as pool:  # ffmpeg processes do the work; threads wait
                n_videos = len(data.videos)
                if tick_thumbs is not None:
                    tick_thumbs(0, n_videos)
                for done, _ in enumerate(pool.map(lambda v: thumb(v, thumbs_dir), data.videos.values()), 1):
                    if tick_thumbs is not None:
                        tick_thumbs(done, n_videos)
    html_path, csv_path = out / "report.html", out / "report.csv"
    _atomic_write(html_path, render_html(data))
    _atomic_write(csv_path, csv_text(data))
    return {"html": str(html_path), "csv": str(csv_path), "thumbs_dir": None if embed_thumbs else str(thumbs_dir),
            "min_label": data.min_label, "indexed_videos": data.indexed, "groups": len(data.groups),
            "pairs": len(data.pairs), "grouped_videos": len(data.videos),
            "confirmed_pairs": sum(p.match.decision == CONFIRMED for p in data.pairs),
            "thumbnails": sum(len(v.thumbs) for v in data.videos.values()),
            "moment_thumbnails": sum(len(v.moments) for v in data.videos.values()),
            "missing_files": [{"video_id": v.video_id, "uri": v.uri, "reason": v.missing}
                              for v in data.videos.values() if v.missing],
            "partial_copies": len(data.partial),
            "audio_copies": sum(is_audio_copy(sg) for _, sg in data.partial), "seconds": round(time.time() - t0, 2)}
