"""The pair timeline (astradup.timeline): bars to scale, each interval where its seconds say, the same
colour on both bars, a tooltip with the seconds, hostile numbers and names survived; and the report
page built from it (timelines and frames at the matched moments) without indexing anything."""
from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from astradup.records import SegmentMatch, VideoMatch
from astradup.report.data import PairEntry, ReportData, VideoEntry
from astradup.report.page import render_html
from astradup.report.thumbs import make_thumbs, moment_time, plan_moments
from astradup.timeline import MAX_DRAWN, MIN_WIDTH_PX, PALETTE, Span, moments, timeline_svg
from tests.media import make_video

APP_JS = Path(__file__).resolve().parents[2] / "serve" / "static" / "app.js"

NS = ""  # inline SVG in HTML: no namespace declared


def _svg(text: str) -> ET.Element:
    return ET.fromstring(text)  # also proves the markup is well-formed XML


def _rects(root: ET.Element, cls: str) -> list[ET.Element]:
    return [r for r in root.iter(f"{NS}rect") if cls in r.get("class", "").split()]


def _geom(r: ET.Element) -> tuple[float, float]:
    return float(r.get("x")), float(r.get("width"))


def test_bars_are_to_scale_and_intervals_sit_at_their_seconds():
    # width 404: 400 px of drawing, 2 px margins; A (20 s) is the longer video: 20 px per second
    svg = _svg(timeline_svg(20.0, 10.0, [Span(5, 10, 0, 5, 0.9), Span(12, 16, 6, 10, 0.7)], width=404))
    (ta,), (tb,) = _rects(svg, "track-a"), _rects(svg, "track-b")
    assert _geom(ta) == (2.0, 400.0) and _geom(tb) == (2.0, 200.0)
    a, b = _rects(svg, "iv-a"), _rects(svg, "iv-b")
    assert [_geom(r) for r in a] == [(102.0, 100.0), (242.0, 80.0)]
    assert [_geom(r) for r in b] == [(2.0, 100.0), (122.0, 80.0)]
    assert float(a[0].get("y")) < float(b[0].get("y"))  # A on top
    # interval i: one colour on A, on B and on the band joining them; another colour for i+1
    for i in range(2):
        band = [p for p in svg.iter(f"{NS}polygon") if p.get("data-index") == str(i)]
        assert a[i].get("fill") == b[i].get("fill") == band[0].get("fill") == PALETTE[i]
        assert a[i].get("data-index") == b[i].get("data-index") == str(i)
    assert a[0].get("fill") != a[1].get("fill")
    title = a[0].find(f"{NS}title").text
    assert "5.0\u201310.0 s" in title and "0.0\u20135.0 s" in title and "0.90" in title


def test_the_longer_video_spans_the_width_whichever_side_it_is():
    svg = _svg(timeline_svg(30.0, 60.0, [Span(0, 30, 30, 60)], width=604))
    assert _geom(_rects(svg, "track-a")[0]) == (2.0, 300.0)
    assert _geom(_rects(svg, "track-b")[0]) == (2.0, 600.0)
    assert _geom(_rects(svg, "iv-a")[0]) == (2.0, 300.0) and _geom(_rects(svg, "iv-b")[0]) == (302.0, 300.0)


def test_hostile_numbers_and_names():
    spans = [Span(float("nan"), 3, 0, 3), Span(-5, 2, 1, math.inf), Span(8, 4, 50, 60), Span(1, 1.001, 0, 2)]
    text = timeline_svg(None, -3.0, spans, a_label='<script>"x"</script>', b_label="b&b", width=404)
    svg = _svg(text)
    assert "<script>" not in text and "&lt;script&gt;" in text and "b&amp;b" in text
    a, b = _rects(svg, "iv-a"), _rects(svg, "iv-b")
    assert len(a) == len(b) == 2  # the NaN and the infinite span are dropped
    # unknown A duration: the bar runs to the furthest end (8 s, a span whose end came before its start)
    # no valid B duration: B runs to 60 s, the longer bar, 400/60 px per second
    assert _geom(_rects(svg, "track-b")[0]) == (2.0, 400.0)
    assert _geom(_rects(svg, "track-a")[0]) == (2.0, round(8 * 400 / 60, 2))
    assert _geom(a[0]) == (round(2 + 8 * 400 / 60, 2), MIN_WIDTH_PX)  # zero length: still visible
    assert _geom(a[1])[1] == MIN_WIDTH_PX  # a thousandth of a second: still visible
    assert _geom(b[0]) == (round(2 + 50 * 400 / 60, 2), round(10 * 400 / 60, 2))


def test_drawn_intervals_are_bounded():
    many = [Span(i, i + 0.5, i, i + 0.5) for i in range(MAX_DRAWN + 30)]
    text = timeline_svg(200.0, 200.0, many)
    svg = _svg(text)
    assert len(_rects(svg, "iv-a")) == MAX_DRAWN and "30 more interval(s) not drawn" in text


def test_moments_pick_the_best_scored_in_time_order():
    spans = [Span(0, 1, 0, 1, 0.5), Span(2, 3, 2, 3, 0.9), Span(4, 5, 4, 5, 0.8), Span(6, 7, 6, 7, 0.95),
             Span(8, 9, 8, 9, 0.1)]
    assert moments(spans, 3) == [1, 2, 3]
    assert moments(spans, 10) == [0, 1, 2, 3, 4] and moments(spans, 0) == []


def _data(q_uri: str, s_uri: str, q_dur: float | None, s_dur: float | None, segs) -> ReportData:
    q, s = "a" * 32, "b" * 32
    m = VideoMatch(s, s_uri, {"visual": 0.95}, 0.95, 0.9, "duplicate", False, (), tuple(segs))
    return ReportData("duplicate", [[q, s]], [PairEntry(1, q, s, m)],
                      {q: VideoEntry(q, q_uri, q_dur), s: VideoEntry(s, s_uri, s_dur)},
                      [], {q: q_uri, s: s_uri}, 2, "now")


def test_report_page_has_a_timeline_and_frames_at_the_matched_moments(tmp_path):
    # two real files, so the moment frames are real ffmpeg frames (4 s and 6 s, small)
    qf = make_video(tmp_path / "q<1>.mp4", seconds=6, size=(160, 120), source="mandelbrot", audio=None, seed=1)
    sf = make_video(tmp_path / "s.mp4", seconds=4, size=(160, 120), source="life", audio=None, seed=2)
    q, s = "a" * 32, "b" * 32
    segs = [SegmentMatch(q, 0.5, 2.0, s, 1.0, 2.5, 0.9, ("visual",)),
            SegmentMatch(q, 3.0, 5.5, s, 0.0, 2.5, 0.8, ("visual",))]
    data = _data(str(qf), str(sf), 6.0, 4.0, segs)
    plan_moments(data, 1)  # one interval pictured per pair: the best scored
    assert data.pairs[0].moments == [0]
    assert data.videos[q].moment_times == {0.5} and data.videos[s].moment_times == {1.0}
    for v in data.videos.values():
        make_thumbs(v, tmp_path / "thumbs", n=0)  # no evenly spread frames: only the moments
    assert data.videos[q].moments == {0.5: f"thumbs/{q}_at5.jpg"} and data.videos[s].thumbs == []
    page = render_html(data)
    svg_text = page.split('<tr class="pictures"', 1)[1].split("<svg", 1)[1].split("</svg>", 1)[0]
    svg = _svg("<svg" + svg_text + "</svg>")
    assert len(_rects(svg, "iv-a")) == len(_rects(svg, "iv-b")) == 2
    assert "q&lt;1&gt;.mp4" in svg_text and "q<1>" not in page
    fig = page.split('<figure class="moment" data-index="0"', 1)[1].split("</figure>", 1)[0]
    assert f'src="thumbs/{q}_at5.jpg"' in fig and f'src="thumbs/{s}_at10.jpg"' in fig
    assert "A 0.5 s &harr; B 1.0 s" in fig and PALETTE[0] in fig
    assert page.count('<figure class="moment"') == 1
    assert (tmp_path / "thumbs" / f"{s}_at10.jpg").stat().st_size > 0


def test_moments_are_bounded_per_pair_and_shared_between_pairs():
    q, s = "a" * 32, "b" * 32
    segs = [SegmentMatch(q, i, i + 0.5, s, i + 0.04, i + 0.5, 0.5 + i / 100, ()) for i in range(40)]
    data = _data("/gone/q.mp4", "/gone/s.mp4", 60.0, 60.0, segs)
    plan_moments(data, 4)
    assert data.pairs[0].moments == [36, 37, 38, 39]  # the four best scored
    assert data.videos[q].moment_times == {36.0, 37.0, 38.0, 39.0}
    assert data.videos[s].moment_times == {moment_time(i + 0.04) for i in range(36, 40)} == {36.0, 37.0, 38.0, 39.0}
    page = render_html(data)  # the files are gone: timeline drawn, no frame, no broken <img>
    assert page.count('class="iv iv-a"') == 40 and "<img" not in page


def test_the_web_page_draws_with_the_same_palette_and_bound():
    js = APP_JS.read_text("utf-8")
    palette = re.search(r"const PALETTE = (\[[^\]]*\]);", js).group(1)
    assert tuple(json.loads(palette)) == PALETTE
    assert f"const MAX_DRAWN = {MAX_DRAWN};" in js
