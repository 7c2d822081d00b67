"""vPDQ exchange: the matching rule (pure numpy), the hash file reader against hostile input,
PDQ in the shards (old shards without it still read), and, end to end, a copy hashed by Meta's own
``vpdq`` package found through ``search --hashes`` as its AstraDup source."""
from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from astradup.io.vpdq_file import HashFileError, VpdqHashes, format_vpdq, frame_numbers, parse_vpdq
from astradup.match import vpdq_match as vm
from astradup.records import VideoFeatures
from astradup.store.shard_names import now_us, part_name
from astradup.store.shard_rows import feature_row
from astradup.store.shard_schema import FEATURES_SCHEMA
from astradup.store.shards import ShardStore

RNG = np.random.default_rng(7)


def _flip(h: np.ndarray, nbits: int, rng=RNG) -> np.ndarray:
    """A copy of hash h (uint8 [32]) with exactly nbits distinct bits flipped."""
    bits = np.unpackbits(h.copy())
    idx = rng.choice(256, nbits, replace=False)
    bits[idx] ^= 1
    return np.packbits(bits)


def _hashes(n: int, rng=RNG) -> np.ndarray:
    return rng.integers(0, 256, (n, 32), dtype=np.uint8)


# ------------------------------------------------------------------ matching rule

def test_distance_31_matches_and_32_does_not():
    a = _hashes(1)
    q = np.full(1, 100)
    for d, hit in ((0, True), (31, True), (32, False)):
        b = _flip(a[0], d)[None]
        s = vm.score(vm.usable(a, q), vm.usable(b, q))
        assert (s.query_pct, s.source_pct) == ((100.0, 100.0) if hit else (0.0, 0.0)), d


def test_percentages_both_ways_quality_filter_and_repeats():
    src = _hashes(10)
    # The query: 4 of the source's frames (lightly changed), 1 repeated 3 times, plus 4 of its own,
    # plus a low-quality frame equal to a source frame (not compared).
    query = np.concatenate([np.stack([_flip(src[i], 10) for i in range(4)]), np.repeat(src[4:5], 3, 0),
                            _hashes(4), src[9:10]])
    quality = np.array([100] * 4 + [80] * 3 + [90] * 4 + [49])
    s = vm.score(vm.usable(query, quality), vm.usable(src, np.full(10, 60)))
    assert (s.query_frames, s.source_frames) == (9, 10)  # 12 lines - 2 repeats - 1 low quality
    assert s.query_pct == pytest.approx(100 * 5 / 9)
    assert s.source_pct == pytest.approx(100 * 5 / 10)
    assert not vm.is_match(s)
    whole = vm.score(vm.usable(src[:8], np.full(8, 100)), vm.usable(src, np.full(10, 100)))
    assert (whole.query_pct, whole.source_pct) == (100.0, 80.0) and vm.is_match(whole)


def test_blocks_give_the_same_answer_as_one_pass(monkeypatch):
    a, b = _hashes(50), _hashes(40)
    b[::3] = [_flip(a[i], 20) for i in range(0, 40, 3)]
    one = vm.matched(a.view(np.uint64), b.view(np.uint64))
    monkeypatch.setattr(vm, "BLOCK", 7)
    np.testing.assert_array_equal(vm.matched(a.view(np.uint64), b.view(np.uint64))[0], one[0])
    np.testing.assert_array_equal(vm.matched(a.view(np.uint64), b.view(np.uint64))[1], one[1])
    assert one[1].sum() == len(range(0, 40, 3))


def test_no_usable_frames_is_no_match():
    a = _hashes(3)
    s = vm.score(vm.usable(a, np.full(3, 10)), vm.usable(a, np.full(3, 100)))
    assert (s.query_pct, s.source_pct, s.query_frames) == (0.0, 0.0, 0) and not vm.is_match(s)
    with pytest.raises(ValueError):
        vm.usable(_hashes(3), np.full(2, 100))


# ------------------------------------------------------------------ the hash file

GOOD = ("0,100,e271017837246aaccddea259648fb7d62f435c89d9e99b2497763e216c8d055c,0.000\n"
        "25,98,c0f11178372c6aaccddea259648fbfd62f434c89c9e99b249772be216c8d055c,1.000\n")


def test_reads_vpdq_text_and_writes_it_back():
    h = parse_vpdq(GOOD)
    assert h.frame_numbers.tolist() == [0, 25] and h.quality.tolist() == [100, 98]
    assert bytes(h.hashes[0]).hex() == "e271017837246aaccddea259648fb7d62f435c89d9e99b2497763e216c8d055c"
    assert format_vpdq(h) == GOOD
    assert parse_vpdq(GOOD.replace("\n", "\r\n") + "\n\n").timestamps.tolist() == [0.0, 1.0]


@pytest.mark.parametrize("text, words", [
    ("", "empty"),
    ("\n\n", "empty"),
    ("0,100,e271,0.000\n", "64-digit hex"),
    ("0,100,g271017837246aaccddea259648fb7d62f435c89d9e99b2497763e216c8d055c,0.000\n", "64-digit hex"),
    ("0,100,e271017837246aaccddea259648fb7d62f435c89d9e99b2497763e216c8d055c\n", "3 comma-separated fields"),
    (GOOD.strip() + ",extra\n", "line 2: 5 comma-separated"),
    ("0,e271017837246aaccddea259648fb7d62f435c89d9e99b2497763e216c8d055c,100,0.000\n", "hash is the 2nd field"),
    ("0,101,e271017837246aaccddea259648fb7d62f435c89d9e99b2497763e216c8d055c,0.000\n", "quality"),
    ("-1,100,e271017837246aaccddea259648fb7d62f435c89d9e99b2497763e216c8d055c,0.000\n", "frame number"),
    ("0,100,e271017837246aaccddea259648fb7d62f435c89d9e99b2497763e216c8d055c,nan\n", "timestamp"),
    ("0,100,e271017837246aaccddea259648fb7d62f435c89d9e99b2497763e216c8d055c,-1.0\n", "timestamp"),
    (GOOD.replace("1.000", "0.000").replace(",0.000\n25", ",2.000\n25", 1), "must not go back"),
    (GOOD.replace("25,98", "0,98"), "must increase"),
    ("0,100,e271017837246aaccddea259648fb7d62f435c89d9e99b2497763e216c8d055c,0.000\n".replace("e2", "é"),
     "not ASCII"),
])
def test_hostile_files_are_refused_with_the_reason(text, words):
    with pytest.raises(HashFileError, match=words):
        parse_vpdq(text)


def test_size_and_line_caps_come_before_parsing():
    line = GOOD.splitlines()[0] + "\n"
    with pytest.raises(HashFileError, match="more than the 1000 allowed"):
        parse_vpdq(line * 20, max_bytes=1000)
    with pytest.raises(HashFileError, match="more than 100 lines"):
        parse_vpdq(b"\n" * 3_000_000, max_lines=100)  # millions of (empty) lines: one count, no split
    with pytest.raises(HashFileError, match="line 1: 1 comma-separated"):
        parse_vpdq(b"a\r" * 1_500_000)  # other line breaks do not split: one (bad) line


def test_frame_numbers_follow_the_native_rate_or_the_sample_index():
    t = np.arange(4) + 0.5
    assert frame_numbers(t, 25.0).tolist() == [12, 37, 62, 87]
    assert frame_numbers(t, None).tolist() == [0, 1, 2, 3]
    assert frame_numbers(t, 0.5).tolist() == [0, 1, 2, 3]  # slower than the sampling: numbers would repeat


# ------------------------------------------------------------------ shards

def _features(vid: str, t: int = 5, pdq: bool = True) -> VideoFeatures:
    rng = np.random.default_rng(len(vid))
    emb = rng.normal(size=(t, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    kw = {"pdq": _hashes(t, rng), "pdq_quality": rng.integers(0, 101, t).astype(np.uint8)} if pdq else {}
    return VideoFeatures(vid, f"/v/{vid}.mp4", np.arange(t, dtype=np.float32) + 0.5, emb,
                         _hashes(t, rng), np.zeros((0, 2), np.float32), np.zeros((0, 0), np.float32),
                         np.zeros((0,), np.uint32), 0.0, {"fps": 25.0}, **kw)


def test_pdq_round_trips_and_an_old_shard_without_it_reads_as_missing(tmp_path):
    store = ShardStore(str(tmp_path))
    new = _features("a" * 32)
    store.write_features([new])
    got = store.load_features([new.video_id])[new.video_id]
    np.testing.assert_array_equal(got.pdq, new.pdq)
    np.testing.assert_array_equal(got.pdq_quality, new.pdq_quality)
    # A shard as written before PDQ existed: no pdq columns at all.
    old = _features("b" * 32)
    row = feature_row(old)
    row.update(indexed_at=now_us())
    schema = pa.schema([f for f in FEATURES_SCHEMA if f.name not in ("pdq", "pdq_quality")])
    path = tmp_path / "features" / part_name(row["indexed_at"])
    pq.write_table(pa.Table.from_pylist([{k: row[k] for k in schema.names}], schema=schema), path)
    store.write_status([{"video_id": old.video_id, "uri": old.uri, "status": "ok", "error": "", "size": None,
                         "duration": None, "at": row["indexed_at"]}])
    back = store.load_features([old.video_id])[old.video_id]
    assert not back.has_pdq and back.pdq.shape == (0, 32) and len(back.pdq_quality) == 0
    np.testing.assert_array_equal(back.phash, old.phash)
    assert not store.read_shard(str(path))[0].has_pdq
    # The narrow scan the hash search uses reads both shards, PDQ where there is one.
    seen = {f.video_id: f for chunk in store.iter_features(columns=("pdq", "pdq_quality")) for f in chunk}
    assert set(seen) == {new.video_id, old.video_id} and seen[new.video_id].has_pdq
    assert seen[new.video_id].embeddings.size == 0  # the embeddings were not read
    assert not store.quarantined()


def test_pdq_of_the_wrong_shape_is_refused_at_write(tmp_path):
    f = _features("c" * 32)
    f.pdq = f.pdq[:-1]
    with pytest.raises(ValueError, match="pdq"):
        ShardStore(str(tmp_path)).write_features([f])


# ------------------------------------------------------------------ end to end, with Meta's vpdq

SCENES_A = [("mandelbrot", 1), ("testsrc2", 0), ("mandelbrot", 2), ("smptebars", 0), ("mandelbrot", 3)]
SCENES_B = [("mandelbrot", 4), ("mandelbrot", 5), ("rgbtest", 0), ("mandelbrot", 6)]


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    from astradup.config import load_config
    from astradup.pipeline import index
    from tests.media import make_copy, make_slideshow

    root = tmp_path_factory.mktemp("vpdq")
    lib = root / "library"
    lib.mkdir()
    a = make_slideshow(lib / "a.mp4", SCENES_A)
    make_slideshow(lib / "b.mp4", SCENES_B)
    copy = make_copy(a, root / "a_copy.mp4", vf="scale=240:180", crf=30)
    cfg = load_config(overrides={"data_dir": str(root / "data"),
                                 "pipeline": {"dashboard": False, "decode_concurrency": 1}})
    report = index([str(lib)], cfg)
    assert report.indexed == 2, report.summary()
    return {"root": root, "cfg": cfg, "a": a, "copy": copy}


def _vpdq_file(video, dst, seconds_per_hash: float = 1.0):
    """The video hashed by Meta's vpdq, written as its own tools write the file."""
    import vpdq

    feats = vpdq.computeHash(str(video), seconds_per_hash=seconds_per_hash)
    dst.write_text("".join(f"{f.frame_number},{f.quality},{f.hex},{f.timestamp:.3f}\n" for f in feats))
    return feats


def _cli(library, capsys, *argv) -> tuple[int, str, str]:
    from astradup.cli import main

    rc = main(["--data-dir", str(library["root"] / "data"), *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _stored(library) -> dict[str, VideoFeatures]:
    from astradup.catalog import Catalog

    return {f.uri.rsplit("/", 1)[-1]: f for chunk in Catalog(library["cfg"]).shards.iter_features() for f in chunk}


@pytest.mark.slow  # indexes a small library through the pipeline
def test_a_copy_hashed_by_vpdq_is_found_as_its_source(library, capsys, tmp_path):
    stored = _stored(library)
    hashes = tmp_path / "a_copy.txt"
    _vpdq_file(library["copy"], hashes)
    rc, out, _ = _cli(library, capsys, "search", "--hashes", str(hashes), "--json")
    assert rc == 0
    res = json.loads(out)
    top = res["matches"][0]
    assert top["source_id"] == stored["a.mp4"].video_id and top["source_uri"].endswith("a.mp4")
    assert top["label"] == "duplicate", top
    assert top["scores"]["vpdq_query"] >= 0.8 and top["scores"]["vpdq_source"] >= 0.8
    b = [m for m in res["matches"] if m["source_id"] == stored["b.mp4"].video_id]
    assert not b or b[0]["label"] in ("similar", "none"), b
    rc, out, _ = _cli(library, capsys, "search", "--hashes", str(hashes))
    assert rc == 0 and "duplicate" in out and "a.mp4" in out.splitlines()[1]


@pytest.mark.slow  # indexes a small library through the pipeline
def test_vpdq_and_astradup_hash_the_same_frames_alike(library, tmp_path):
    """Every frame AstraDup sampled, against the frame vpdq hashes at the same index of the file."""
    f = _stored(library)["a.mp4"]
    assert f.has_pdq and len(f.pdq) == len(f.timestamps) == 10
    every = _vpdq_file(library["a"], tmp_path / "a_all.txt", seconds_per_hash=0)  # every frame of the file
    fps = f.meta["fps"]
    for t, ours, q in zip(f.timestamps, f.pdq, f.pdq_quality):
        theirs = every[math.floor(float(t) * fps + 1e-6)]
        d = int(np.bitwise_count(np.frombuffer(bytes.fromhex(theirs.hex), np.uint8) ^ ours).sum())
        assert d <= vm.DISTANCE_MAX, (t, d)
        assert abs(int(q) - theirs.quality) <= 20, (t, q, theirs.quality)


@pytest.mark.slow  # indexes a small library through the pipeline
def test_export_hashes_writes_vpdq_text_that_searches_back(library, capsys, tmp_path):
    stored = _stored(library)
    a = stored["a.mp4"]
    rc, out, _ = _cli(library, capsys, "export-hashes", "--format", "vpdq", str(tmp_path / "all"))
    assert rc == 0
    files = sorted(p.name for p in (tmp_path / "all").iterdir())
    assert files == sorted(f"{f.video_id}.txt" for f in stored.values())
    one = tmp_path / "a.txt"
    rc, _, _ = _cli(library, capsys, "export-hashes", "--format", "vpdq", str(one), a.video_id)
    assert rc == 0
    h = parse_vpdq(one.read_bytes())
    np.testing.assert_array_equal(h.hashes, a.pdq)
    np.testing.assert_allclose(h.timestamps, a.timestamps, atol=1e-3)
    assert h.frame_numbers.tolist() == [12 + 25 * k for k in range(10)]  # the native frames on screen
    assert (tmp_path / "all" / f"{a.video_id}.txt").read_text() == one.read_text()  # narrow scan, same text
    rc, out, _ = _cli(library, capsys, "search", "--hashes", str(one), "--json")
    top = json.loads(out)["matches"][0]
    assert (top["source_id"], top["scores"]["vpdq_query"], top["scores"]["vpdq_source"]) == (a.video_id, 1.0, 1.0)
    # Refusals: a single file for several videos, an unknown id.
    rc, _, err = _cli(library, capsys, "export-hashes", "--format", "vpdq", str(tmp_path / "x.txt"))
    assert rc == 2 and "name one VIDEO_ID" in err
    rc, _, err = _cli(library, capsys, "export-hashes", "--format", "vpdq", str(tmp_path / "y"), "f" * 32)
    assert rc == 2 and "not in the index" in err


@pytest.mark.slow  # indexes a small library through the pipeline
def test_a_hostile_hash_file_is_one_cli_error(library, capsys, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text(GOOD + "50,100,zz,2.000\n")
    rc, out, err = _cli(library, capsys, "search", "--hashes", str(bad))
    assert rc == 2 and out == "" and "line 3" in err and len(err.strip().splitlines()) == 1
    rc, _, err = _cli(library, capsys, "search", "--hashes", str(tmp_path / "missing.txt"))
    assert rc == 2 and "no such hash file" in err
    rc, _, err = _cli(library, capsys, "search", str(library["a"]), "--hashes", str(bad))
    assert rc == 2 and "give one query" in err


@pytest.mark.slow  # indexes a small library through the pipeline
def test_verdicts_hold_for_a_hash_file_query(library, capsys, tmp_path):
    """A hash file's matches go through the same verdicts as a video's: keyed by the file's content
    id, a rejected source is not listed and a confirmed one is marked."""
    from astradup.reviews import CONFIRMED, REJECTED, ReviewStore
    from astradup.vpdq_search import query_id

    stored = _stored(library)
    hashes = tmp_path / "a_copy.txt"
    _vpdq_file(library["copy"], hashes)
    qid, a = query_id(hashes.read_bytes()), stored["a.mp4"].video_id
    store = ReviewStore(library["root"] / "data" / "reviews.sqlite")
    try:
        store.record(qid, a, CONFIRMED)
        rc, out, _ = _cli(library, capsys, "search", "--hashes", str(hashes), "--json")
        top = json.loads(out)["matches"][0]
        assert rc == 0 and top["source_id"] == a and top["decision"] == CONFIRMED
        store.record(qid, a, REJECTED)
        rc, out, _ = _cli(library, capsys, "search", "--hashes", str(hashes), "--json")
        assert rc == 0 and a not in {m["source_id"] for m in json.loads(out)["matches"]}
    finally:
        store.path.unlink()
