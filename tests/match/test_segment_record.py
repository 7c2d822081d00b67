"""records.SegmentMatch, the one segment record: what alignment finds and what a CSV row holds."""
from __future__ import annotations

import io
import json

from astradup.eval.segments_csv import read_rows, write_rows
from astradup.records import AudioCopy, Label, SegmentMatch, VideoMatch


def test_a_found_segment_serialises_as_before_without_an_extra_key():
    sg = SegmentMatch("q" * 32, 1.0, 5.5, "s" * 32, 10.0, 14.5, 0.87, ("visual",))
    assert sg.as_row() == {"query_id": "q" * 32, "q_start": 1.0, "q_end": 5.5, "source_id": "s" * 32,
                           "s_start": 10.0, "s_end": 14.5, "score": 0.87, "modalities": ("visual",)}
    m = VideoMatch("s" * 32, "/v.mp4", {"visual": 0.9}, 0.9, 0.9, Label.NEAR_DUPLICATE, False,
                   segments=(sg, AudioCopy("q" * 32, 0.0, 9.0, "s" * 32, 0.0, 9.0, 0.8, ("audio",))))
    segs = json.loads(json.dumps(m.to_dict()))["segments"]
    assert [sorted(s) for s in segs] == [sorted(sg.as_row())] * 2


def test_a_csv_row_keeps_its_extra_columns_and_compares_on_them(tmp_path):
    rows = [SegmentMatch("Q1", 0, 10, "R1", 5, 15, extra={"transform": "crop"}),
            SegmentMatch("Q2", 2.5, 20, "R2", 0, 17.5, 0.5)]
    path = tmp_path / "t.csv"
    write_rows(path, rows)
    back = read_rows(path)
    assert back[0] == rows[0] and back[0].as_row()["extra"] == {"transform": "crop"}
    assert back[1].extra == {"transform": ""}  # the column every row of the file has
    assert back[1] != SegmentMatch("Q2", 2.5, 20, "R2", 0, 17.5, 0.5)  # a lost column would show
    assert len({back[0], rows[0]}) == 1  # hashable: extra is compared, not hashed
    out = io.StringIO()
    write_rows(out, [SegmentMatch("Q", 0, 1, "R", 0, 1, 1.0, ("audio",))], layout="vsc")
    assert out.getvalue().splitlines() == ["query_id,ref_id,query_start,query_end,ref_start,ref_end,score",
                                           "Q,R,0,1,0,1,1.0000"]
