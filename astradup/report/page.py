"""The report's HTML page: one self-contained file, no script, no network, every value escaped."""
from __future__ import annotations

import html

from astradup.records import AudioCopy, SegmentMatch
from astradup.report.data import PairEntry, ReportData, VideoEntry
from astradup.report.thumbs import moment_time
from astradup.reviews import CONFIRMED
from astradup.timeline import colour, span_title, timeline_svg

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


def is_audio_copy(sg: SegmentMatch) -> bool:
    return isinstance(sg, AudioCopy)


def _kind_html(sg: SegmentMatch) -> str:
    """A badge for a copied soundtrack (the picture differs: music reuse), else the modalities."""
    if is_audio_copy(sg):
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
        parts += [f'<tr class="{"audio-copy" if is_audio_copy(sg) else "partial"}"><td>{_e(nm(q))}</td>'
                  f"<td>{sg.q_start:g}&ndash;{sg.q_end:g} s</td><td>{_e(nm(sg.source_id))}</td>"
                  f'<td>{sg.s_start:g}&ndash;{sg.s_end:g} s</td><td class="num">{sg.score:.3f}</td>'
                  f"<td>{_kind_html(sg)}{_verdict_html(data.decision(q, sg.source_id))}</td></tr>"
                  for q, sg in data.partial]
        parts.append("</tbody></table></section>")
    parts.append("</main></body></html>\n")
    return "".join(parts)
