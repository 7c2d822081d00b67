"""GET /videos paging (serve.video_list) over a library of 2 500 status records, built directly (no
video needs indexing to be listed): pages in name order that neither repeat nor skip, the name
filter, the bounded limit, and hostile parameters refused."""
from __future__ import annotations

import random

import pytest

from serve.video_list import MAX_LIMIT, MAX_QUERY, name_of, video_page

N = 2500


def _library(n: int = N) -> dict[str, dict]:
    rng = random.Random(7)
    recs = {}
    for i in range(n):
        vid = f"{rng.getrandbits(128):032x}"
        # a few equal names in other folders: the id must order them for paging to be stable
        name = f"clip_{i % 2400:05d}.mp4" if i % 5 else f"Holiday {i:05d}.MOV"
        status = "failed" if i % 97 == 0 else "ok"
        recs[vid] = {"uri": f"s3://lib/{'dup/' if i >= 2400 else ''}{name}", "status": status}
    return recs


def test_pages_walk_the_whole_library_in_name_order():
    recs = _library()
    ok = sorted((name_of(r), v) for v, r in recs.items() if r["status"] == "ok")
    seen: list[tuple[str, str]] = []
    offset, pages = 0, 0
    while True:
        total, page = video_page(recs, "ok", "", offset, MAX_LIMIT)
        assert total == len(ok) > MAX_LIMIT
        seen += [(name_of(r), v) for v, r in page]
        pages += 1
        offset += len(page)
        if offset >= total:
            break
    assert pages == 3 and seen == ok  # every video once, in order, across pages
    # a page from the middle is the same slice of that order, whatever the page size
    assert [v for v, _ in video_page(recs, "ok", "", 1234, 7)[1]] == [v for _, v in ok[1234:1241]]
    assert video_page(recs, "ok", "", len(ok) + 5, 10) == (len(ok), [])
    assert video_page(recs, "all", "", 0, 1)[0] == N
    assert video_page(recs, "failed", "", 0, 100)[0] == N - len(ok)


def test_name_filter_is_case_insensitive_and_pages_too():
    recs = _library()
    total, page = video_page(recs, "all", "holiday", 0, 100)
    assert total == N // 5 and len(page) == 100
    assert all("holiday" in name_of(r).lower() for _, r in page)
    total2, page2 = video_page(recs, "all", "HOLIDAY 0000", 0, 100)
    assert total2 == 2 and {name_of(r) for _, r in page2} == {"Holiday 00000.MOV", "Holiday 00005.MOV"}
    assert video_page(recs, "all", "no such name", 0, 10) == (0, [])


@pytest.mark.parametrize("kw", [{"limit": 0}, {"limit": MAX_LIMIT + 1}, {"offset": -1}, {"q": "x" * (MAX_QUERY + 1)}])
def test_out_of_bounds_parameters_are_refused(kw):
    args = {"offset": 0, "limit": 10, "q": ""} | kw
    with pytest.raises(ValueError):
        video_page(_library(10), "ok", args["q"], args["offset"], args["limit"])


def test_hostile_records_do_not_break_the_list():
    recs = {"a" * 32: {"uri": None, "status": "ok"}, "b" * 32: {"status": "ok"},
            "c" * 32: {"uri": "/x/<b>.mp4", "status": "ok"}}
    total, page = video_page(recs, "ok", "", 0, 10)
    assert total == 3 and [name_of(r) for _, r in page] == ["", "", "<b>.mp4"]
