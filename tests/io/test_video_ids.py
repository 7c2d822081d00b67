"""io.ids.check_video_id: the one video-id rule (reviews, fingerprint files, the HTTP gateway)."""
from __future__ import annotations

import re

import pytest

from astradup.io.ids import ID_PATTERN, check_video_id, content_id, is_video_id
from astradup.reviews import ReviewStore

GOOD = "0123456789abcdef" * 2


def test_an_id_content_id_gives_is_valid(tmp_path):
    p = tmp_path / "v.bin"
    p.write_bytes(b"some bytes")
    vid = content_id(str(p))
    assert is_video_id(vid) and check_video_id(vid) == vid
    assert re.fullmatch(ID_PATTERN, vid)  # the pattern the HTTP schema publishes agrees


@pytest.mark.parametrize("value", [
    GOOD + "\n",  # "$" alone would let a trailing newline through
    "\n" + GOOD[1:], GOOD.upper(), GOOD[:31], GOOD + "0", "", " " * 32, GOOD[:31] + "g",
    "../../etc/passwd" + "0" * 16, "٠١٢٣٤٥٦٧٨٩abcdef" * 2,  # non-ASCII digits are not hex
    None, 12345, b"0123456789abcdef" * 2, ["x"],
])
def test_anything_else_is_refused_naming_the_field(value):
    assert not is_video_id(value)
    with pytest.raises(ValueError, match=r"^source_id is not 32 lowercase hex characters$"):
        check_video_id(value, "source_id")


def test_a_verdict_on_a_bad_id_is_refused_and_names_the_field(tmp_path):
    store = ReviewStore(tmp_path / "reviews.sqlite")
    try:
        with pytest.raises(ValueError, match="^query_id is not 32"):
            store.record(GOOD + "\n", "f" * 32, "confirmed")
        with pytest.raises(ValueError, match="^source_id is not 32"):
            store.record(GOOD, "F" * 32, "confirmed")
        assert store.record(GOOD, "f" * 32, "confirmed").decision == "confirmed"
    finally:
        store.close()
