"""`astradup report`: the duplicate groups of the index as an HTML page and a CSV, for people.

`astradup dedup` answers on a terminal; a librarian deciding what to delete wants to *see* the
copies. This module takes exactly the groups and pairs that ``dedup`` computes
(:func:`astradup.dedup.dedup_groups`: the dedup job's pairs, grouped by its union-find),
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

import base64
import csv
import html
import io
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from astradup.config import Config
from astradup.io.sources import is_remote, local_copy, storage_options
from astradup.io.thumbs import jpeg_frame
from astradup.records import AudioCopy, Label, SegmentMatch, VideoMatch
from astradup.reviews import CONFIRMED, Verdicts
from astradup.timeline import Span, colour, moments, span_title, timeline_svg

Tick = Callable[[int, int], None]  # (done, total): a progress bar's update (astradup/progress.py)

LABELS = tuple(Label.reportable())
THUMBS_PER_VIDEO = 3
THUMB_WIDTH = 240
MOMENTS_PER_PAIR = 4  # copied intervals per pair with a frame on each side (the best-scored ones)
MAX_MOMENTS_PER_PAIR = 16
MOMENT_STEP = 0.1  # seconds: moments are taken per tenth of a second, so pairs share frames
CSV_FIELDS = ("group_id", "video_a_id", "video_a_uri", "video_b_id", "video_b_uri", "fused", "label",
              "confidence", "review", "decision", "visual", "audio", "metadata", "notes", "interval_query_id",
              "query_intervals", "source_intervals", "interval_scores")


def normalise_label(label: str) -> str:
    """``near_duplicate`` (shell-friendly) and ``near-duplicate`` (the fusion's label) are one label."""
    lab = label.strip().lower().replace("_", "-")
    if lab not in LABELS:
        raise ValueError(f"min label must be one of {', '.join(LABELS)}, got {label!r}")
    return lab


@dataclass
class VideoEntry:
    """A grouped video as the report shows it; ``missing`` says why no frame could be taken."""

    video_id: str
    uri: str
    duration: float | None
    thumbs: list[str] = field(default_factory=list)  # img src values (relative paths or data URIs)
    missing: str = ""
    moment_times: set[float] = field(default_factory=set)  # seconds (MOMENT_STEP grid) pairs want a frame at
    moments: dict[float, str] = field(default_factory=dict)  # those times -> img src (when one was taken)

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1] or self.video_id


@dataclass
class PairEntry:
    """One duplicate pair; ``a < b`` (ids), and ``match`` is the better of the two directions."""

    group_id: int
    a: str
    b: str
    match: VideoMatch
    moments: list[int] = field(default_factory=list)  # indices into spans() that get frames

    @property
    def query_id(self) -> str:
        """The side whose search produced ``match`` (its segments' query axis)."""
        return self.a if self.match.source_id == self.b else self.b

    def spans(self) -> list[Span]:
        """The copied intervals as the timeline draws them: A is the query axis, B the source."""
        return [Span(sg.q_start, sg.q_end, sg.s_start, sg.s_end, sg.score) for sg in self.match.copied()]


@dataclass
class ReportData:
    min_label: str
    groups: list[list[str]]
    pairs: list[PairEntry]
    videos: dict[str, VideoEntry]
    partial: list[tuple[str, SegmentMatch]]  # partial copies below the whole-video label
    uris: dict[str, str]  # every indexed video (for names of partial-copy videos)
    indexed: int
    created: str
    verdicts: Verdicts = field(default_factory=Verdicts)  # for the partial copies' marks

    def decision(self, query_id: str, source_id: str) -> str:
        """A partial copy's pair verdict ("confirmed"), or ""; rejected pairs never got this far."""
        return self.verdicts.decision(query_id, source_id) or ""


def collect(cfg: Config, min_label: str = "near-duplicate", searcher=None, tick: Tick | None = None) -> ReportData:
    """The groups and pairs exactly as ``astradup dedup`` computes them (verdicts applied), plus
    durations for thumbnails."""
    from astradup.catalog import Catalog
    from astradup.dedup.results import dedup_groups

    min_label = normalise_label(min_label)
    verdicts = Verdicts.load(cfg.data_dir)
    groups, best, uris, partial = dedup_groups(cfg, min_label, searcher=searcher, verdicts=verdicts, tick=tick)
    status = (searcher.catalog if searcher is not None else Catalog(cfg)).shards.latest_status()
    group_of = {v: i for i, g in enumerate(groups, 1) for v in g}
    pairs = sorted((PairEntry(group_of[a], a, b, m) for (a, b), m in best.items()),
                   key=lambda p: (p.group_id, -p.match.fused, p.a, p.b))
    videos = {}
    for g in groups:
        for v in g:
            d = (status.get(v) or {}).get("duration")
            videos[v] = VideoEntry(v, uris.get(v, ""), float(d) if d else None)
    return ReportData(min_label, groups, pairs, videos, partial, uris, len(uris),
                      datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"), verdicts)


# ---------------------------------------------------------------- thumbnails


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


# ---------------------------------------------------------------- CSV


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.4f}"


def csv_rows(data: ReportData) -> list[dict[str, Any]]:
    """One row per pair. Intervals are ``start-end`` seconds joined by ``;``, the i-th query interval
    copied from the i-th source interval; ``interval_query_id`` says which of a/b is the query axis."""
    rows = []
    for p in data.pairs:
        m, segs = p.match, p.match.segments
        rows.append({
            "group_id": p.group_id, "video_a_id": p.a, "video_a_uri": data.uris.get(p.a, ""),
            "video_b_id": p.b, "video_b_uri": data.uris.get(p.b, ""), "fused": _fmt(m.fused), "label": m.label,
            "confidence": _fmt(m.confidence), "review": str(bool(m.review)).lower(),
            "decision": m.decision or "",
            "visual": _fmt(m.scores.get("visual")), "audio": _fmt(m.scores.get("audio")),
            "metadata": _fmt(m.scores.get("metadata")), "notes": "; ".join(m.notes),
            "interval_query_id": p.query_id,
            "query_intervals": ";".join(f"{s.q_start:g}-{s.q_end:g}" for s in segs),
            "source_intervals": ";".join(f"{s.s_start:g}-{s.s_end:g}" for s in segs),
            "interval_scores": ";".join(f"{s.score:.3f}" for s in segs),
        })
    return rows


def write_csv(data: ReportData, path: Path) -> None:
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=list(CSV_FIELDS))
    w.writeheader()
    w.writerows(csv_rows(data))
    _atomic_write(path, buf.getvalue())


# ---------------------------------------------------------------- HTML

_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
header{background:#1d2b4a;color:#fff;padding:18px 28px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:0;color:#c8d0e4}main{padding:18px 28px;max-width:1400px}
section.group{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.12);margin:0 0 22px;padding:14px 18px}
section.group h2{margin:0 0 10px;font-size:18px}.videos{display:flex;flex-wrap:wrap;gap:14px;margin-bottom:12px}
.video{border:1px solid #d8dce6;border-radius:6px;padding:8px;width:628px;max-width:100%;background:#fafbfd}
.video .name{font-weight:600;word-break:break-all}.video .meta{color:#5a6478;font-size:12px;word-break:break-all}
.strip{display:flex;gap:6px;margin-top:6px}.strip img{width:200px;max-width:32%;border-radius:4px;background:#000}
.missing{display:flex;align-items:center;justify-content:center;height:120px;margin-top:6px;border:2px dashed #c0392b;
border-radius:4px;color:#c0392b;background:#fdf0ee;font-weight:600;text-align:center;padding:0 10px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #e3e6ee;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#eef1f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-size:12px;font-weight:600}
.duplicate{background:#b03a2e}.near-duplicate{background:#d68910}.similar{background:#2874a6}.none{background:#7f8c8d}
.review{display:inline-block;margin-left:6px;padding:1px 6px;border-radius:10px;background:#f7dc6f;color:#5b4500;
font-size:12px;font-weight:600}
.verdict{display:inline-block;margin-left:6px;padding:1px 6px;border-radius:10px;background:#1e8449;color:#fff;
font-size:12px;font-weight:600}
.audio-copy{background:#6c3483}ul.iv{margin:0;padding-left:16px}.notes{color:#5a6478;font-size:12px}code{font-size:12px}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px;vertical-align:middle}
tr.pictures td{border-bottom:2px solid #c9cfdc;padding:4px 8px 12px}.pictures .cells{display:flex;flex-wrap:wrap;
gap:14px;align-items:flex-start}svg.timeline{display:block;max-width:100%;height:auto}svg.timeline rect.iv{stroke:#fff;
stroke-width:.5}.moments{display:flex;flex-wrap:wrap;gap:8px}.moment{margin:0;padding:4px;border:3px solid;
border-radius:6px;background:#fafbfd}.moment img{width:120px;display:block;border-radius:3px;background:#000}
.moment .sides{display:flex;gap:4px}.moment figcaption{font-size:12px;color:#3a4254;text-align:center}
"""


def _e(s: object) -> str:
    return html.escape(str(s), quote=True)


def _video_html(v: VideoEntry) -> str:
    dur = f"{v.duration:.1f} s" if v.duration else "duration unknown"
    if v.missing:
        pics = f'<div class="missing">{_e(v.missing)}</div>'
    elif not v.thumbs:
        pics = ""  # thumbnails not asked for (--thumbs 0)
    else:
        pics = '<div class="strip">' + "".join(
            f'<img src="{_e(src)}" alt="frame {k + 1} of {_e(v.name)}">' for k, src in enumerate(v.thumbs)) + "</div>"
    return (f'<div class="video" data-video-id="{_e(v.video_id)}"><div class="name">{_e(v.name)}</div>'
            f'<div class="meta"><code>{_e(v.video_id)}</code> &middot; {_e(dur)}</div>'
            f'<div class="meta">{_e(v.uri)}</div>{pics}</div>')


def _pair_html(p: PairEntry, data: ReportData) -> str:
    m = p.match
    name = lambda v: data.videos[v].name if v in data.videos else v[:12]  # noqa: E731
    q, s = p.query_id, m.source_id
    ivs = "".join(
        f'<li><span class="swatch" style="background:{colour(i)}"></span>'
        f"{_e(name(q))} {sg.q_start:g}&ndash;{sg.q_end:g} s &larr; "
        f"{_e(name(s))} {sg.s_start:g}&ndash;{sg.s_end:g} s"
        f" <span class=\"notes\">(score {sg.score:.3f}, {_kind_html(sg)})</span></li>"
        for i, sg in enumerate(m.copied()))
    ivs = f'<ul class="iv">{ivs}</ul>' if ivs else '<span class="notes">no interval localised</span>'
    aud = m.scores.get("audio")
    review = '<span class="review">review</span>' if m.review else ""
    review += _verdict_html(m.decision or "")
    notes = f'<div class="notes">{_e("; ".join(m.notes))}</div>' if m.notes else ""
    return (f'<tr class="pair" data-a="{_e(p.a)}" data-b="{_e(p.b)}"><td>{_e(name(p.a))}<br>{_e(name(p.b))}</td>'
            f'<td class="num">{m.fused:.3f}</td><td><span class="badge {_e(m.label)}">{_e(m.label)}</span>{review}</td>'
            f'<td class="num">{m.confidence:.2f}</td><td class="num">{m.scores.get("visual", 0.0):.3f}</td>'
            f'<td class="num">{"-" if aud is None else f"{aud:.3f}"}</td>'
            f'<td class="num">{m.scores.get("metadata", 0.0):.3f}</td><td>{ivs}{notes}</td></tr>'
            + _pictures_html(p, data))


def _pictures_html(p: PairEntry, data: ReportData) -> str:
    """The pair's second row: its timeline, and frames of both videos where the pictured intervals start."""
    spans = p.spans()
    if not spans:
        return ""
    q, s = p.query_id, p.match.source_id
    vq, vs = data.videos.get(q), data.videos.get(s)
    qn, sn = (vq.name if vq else q[:12]), (vs.name if vs else s[:12])
    svg = timeline_svg(vq.duration if vq else None, vs.duration if vs else None, spans,
                       a_label=f"A: {qn}", b_label=f"B: {sn}")
    figs = []
    for i in p.moments:
        sp = spans[i]
        qa = vq.moments.get(moment_time(sp.a_start)) if vq else None
        sb = vs.moments.get(moment_time(sp.b_start)) if vs else None
        if qa is None and sb is None:
            continue
        img = lambda src, who, t: (f'<img src="{_e(src)}" alt="{_e(who)} at {t:.1f} s">' if src  # noqa: E731
                                   else '<span class="notes">no frame</span>')
        figs.append(f'<figure class="moment" data-index="{i}" style="border-color:{colour(i)}">'
                    f'<div class="sides">{img(qa, qn, sp.a_start)}{img(sb, sn, sp.b_start)}</div>'
                    f'<figcaption title="{_e(span_title(i, sp, qn, sn))}">{i + 1}: A {sp.a_start:.1f} s '
                    f'&harr; B {sp.b_start:.1f} s</figcaption></figure>')
    moments_html = f'<div class="moments">{"".join(figs)}</div>' if figs else ""
    return (f'<tr class="pictures" data-a="{_e(p.a)}" data-b="{_e(p.b)}"><td colspan="8"><div class="cells">'
            f"{svg}{moments_html}</div></td></tr>")


def _verdict_html(decision: str) -> str:
    """The mark of a pair a reviewer confirmed ("" for an unreviewed one)."""
    return f'<span class="verdict {_e(decision)}">{_e(decision)}</span>' if decision == CONFIRMED else ""


def _is_audio_copy(sg: SegmentMatch) -> bool:
    return isinstance(sg, AudioCopy)


def _kind_html(sg: SegmentMatch) -> str:
    """A badge for a copied soundtrack (the picture differs: music reuse), else the modalities."""
    if _is_audio_copy(sg):
        return f'<span class="badge audio-copy">{_e(AudioCopy.FLAG)}</span>'
    return _e("+".join(sg.modalities) or "-")


def render_html(data: ReportData) -> str:
    """The whole page as one string: inline CSS, no script, every value escaped (uris are user data)."""
    n_pairs, n_vid = len(data.pairs), sum(len(g) for g in data.groups)
    parts = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width,initial-scale=1">',
             "<title>AstraDup duplicate report</title>", f"<style>{_CSS}</style></head><body>",
             f"<header><h1>AstraDup duplicate report</h1><p>{len(data.groups)} group(s), {n_pairs} pair(s), "
             f"{n_vid} of {data.indexed} indexed video(s) &middot; pairs labelled {_e(data.min_label)} or above"
             f" &middot; {_e(data.created)}</p></header><main>"]
    if not data.groups:
        parts.append('<section class="group"><h2>No duplicate groups</h2><p>No pair of indexed videos reached '
                     f"the label {_e(data.min_label)}.</p></section>")
    for gid, g in enumerate(data.groups, 1):
        parts.append(f'<section class="group" id="group-{gid}"><h2>Group {gid}: {len(g)} videos</h2>'
                     '<div class="videos">' + "".join(_video_html(data.videos[v]) for v in g) + "</div>")
        parts.append("<table><thead><tr><th>pair</th><th>fused</th><th>label</th><th>confidence</th>"
                     "<th>visual</th><th>audio</th><th>metadata</th><th>copied intervals (query &larr; source)</th>"
                     "</tr></thead><tbody>")
        parts += [_pair_html(p, data) for p in data.pairs if p.group_id == gid]
        parts.append("</tbody></table></section>")
    if data.partial:
        nm = lambda v: data.uris.get(v, v).rstrip("/").rsplit("/", 1)[-1]  # noqa: E731
        parts.append('<section class="group" id="partial"><h2>Partial copies</h2><p class="notes">A stretch of one '
                     "video re-used in another, below the whole-video label.</p><table><thead><tr><th>query</th>"
                     "<th>interval</th><th>source</th><th>interval</th><th>score</th><th>kind</th></tr></thead><tbody>")
        parts += [f'<tr class="{"audio-copy" if _is_audio_copy(sg) else "partial"}"><td>{_e(nm(q))}</td>'
                  f"<td>{sg.q_start:g}&ndash;{sg.q_end:g} s</td><td>{_e(nm(sg.source_id))}</td>"
                  f'<td>{sg.s_start:g}&ndash;{sg.s_end:g} s</td><td class="num">{sg.score:.3f}</td>'
                  f"<td>{_kind_html(sg)}{_verdict_html(data.decision(q, sg.source_id))}</td></tr>"
                  for q, sg in data.partial]
        parts.append("</tbody></table></section>")
    parts.append("</main></body></html>\n")
    return "".join(parts)


# ---------------------------------------------------------------- the whole job


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
    write_csv(data, csv_path)
    return {"html": str(html_path), "csv": str(csv_path), "thumbs_dir": None if embed_thumbs else str(thumbs_dir),
            "min_label": data.min_label, "indexed_videos": data.indexed, "groups": len(data.groups),
            "pairs": len(data.pairs), "grouped_videos": len(data.videos),
            "confirmed_pairs": sum(p.match.decision == CONFIRMED for p in data.pairs),
            "thumbnails": sum(len(v.thumbs) for v in data.videos.values()),
            "moment_thumbnails": sum(len(v.moments) for v in data.videos.values()),
            "missing_files": [{"video_id": v.video_id, "uri": v.uri, "reason": v.missing}
                              for v in data.videos.values() if v.missing],
            "partial_copies": len(data.partial),
            "audio_copies": sum(_is_audio_copy(sg) for _, sg in data.partial), "seconds": round(time.time() - t0, 2)}
