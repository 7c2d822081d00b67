"""Fingerprint-only search: a fingerprint file answers as the video it was made of.

A tiny library (three generated videos, embedded with the configured SSCD model and written to
the shards and a Milvus Lite file without Ray) is searched with query files and with their
fingerprints; the matches must agree. Tolerance: the fingerprint keeps frame embeddings as int8
with a per-row step, so each query row moves by ``err = max_i |x_i - x^_i|`` (measured here,
~0.01); a cosine with a unit vector then moves by at most ``err``, and the calibrations that turn
cosines into scores (``score.emb_lo..emb_hi``, ``segments.visual_lo..visual_hi``) stretch that by
at most ``1 / min(hi - lo)`` (2.5 with the defaults). pHash, audio and metadata are stored exactly,
so ``err * 2.5`` bounds every score difference; segment bounds may move by one frame sample.
"""
from __future__ import annotations

import csv
import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from astradup.catalog import Catalog
from astradup.cli import main as cli_main
from astradup.config import load_config
from astradup.eval.segments_csv import read_rows
from astradup.features.extract import streamed_features
from astradup.features.chromaprint import item_times
from astradup.fingerprint import (CODE_COLUMNS, EMBEDDER_KEY, PITCH_COLUMNS, VERSION_KEY, FingerprintError,
                                  check_compatible, fingerprint_table, read_fingerprint, write_fingerprint)
from astradup.io.ids import content_id
from astradup.records import CodeReading, VideoFeatures, VideoRef
from astradup.search import Searcher
from tests.media import make_copy, make_video


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    root = tmp_path_factory.mktemp("fingerprint")
    refs, queries = root / "refs", root / "queries"
    refs.mkdir()
    queries.mkdir()
    a = make_video(refs / "R000001.mp4", seconds=12, size=(160, 120), source="mandelbrot", audio="music", seed=1)
    b = make_video(refs / "R000002.mp4", seconds=12, size=(160, 120), source="life", audio="music", seed=2)
    make_video(refs / "R000003.mp4", seconds=8, size=(160, 120), source="cellauto", audio=None, seed=3)
    q = {"Q000001": make_copy(a, queries / "Q000001.mp4", vf="scale=144:108", crf=30),
         "Q000002": make_copy(b, queries / "Q000002.mp4", start=2, seconds=8, crf=26)}
    cfg = load_config(overrides={"data_dir": str(root / "data")})
    cat = Catalog(cfg)
    feats = [streamed_features(str(p), VideoRef(content_id(p), str(p), p.stat().st_size), cfg, cat.embedder)
             for p in sorted(refs.glob("*.mp4"))]
    cat.write(feats)
    yield {"cfg": cfg, "cat": cat, "searcher": Searcher(cfg, cat), "q": q, "root": root}
    if cat._vectors is not None:
        cat.vectors.close()


def _tolerance(cfg, err: float) -> float:
    s, g = cfg.score, cfg.segments
    return err / min(s.emb_hi - s.emb_lo, g.visual_hi - g.visual_lo) + 1e-6


def test_fingerprint_search_matches_the_video_search(lib, tmp_path):
    s, cfg = lib["searcher"], lib["cfg"]
    for name, path in lib["q"].items():
        fp = tmp_path / f"{name}.parquet"
        assert cli_main(["--data-dir", str(cfg.data_dir), "fingerprint", str(path), "-o", str(fp)]) == 0
        assert fp.stat().st_size < path.stat().st_size * 4  # a feature file, not a copy of the video
        by_file = s.query_from_file(str(path))
        by_fp = s.query_from_fingerprint(str(fp))
        f, g = by_file.features, by_fp.features
        assert g.video_id == f.video_id and g.uri == f"fingerprint:{name}.mp4"
        assert np.array_equal(g.timestamps, f.timestamps) and np.array_equal(g.phash, f.phash)
        assert np.array_equal(g.audio_windows, f.audio_windows) and np.array_equal(g.audio_vectors, f.audio_vectors)
        assert np.array_equal(g.chromaprint, f.chromaprint) and g.meta == json.loads(json.dumps(f.meta))
        err = float(np.linalg.norm(g.embeddings - f.embeddings, axis=1).max())
        assert 0 < err < 0.02, err  # quantised (not a float copy), and as close as documented
        tol = _tolerance(cfg, err)

        m_file, c_file = s.search_common(by_file)
        m_fp, c_fp = s.search_common(by_fp)
        assert m_file, name
        assert [m.source_id for m in m_fp] == [m.source_id for m in m_file]
        assert len(c_fp) == len(c_file)
        for a, b in zip(m_file, m_fp):
            assert (b.label, b.review, b.source_uri) == (a.label, a.review, a.source_uri)
            assert set(b.scores) == set(a.scores)
            for k in a.scores:
                assert abs(b.scores[k] - a.scores[k]) <= tol, (name, k, a.scores[k], b.scores[k], tol)
            assert abs(b.fused - a.fused) <= tol
            assert len(b.segments) == len(a.segments)
            for x, y in zip(a.segments, b.segments):
                assert abs(x.q_start - y.q_start) <= 1 and abs(x.q_end - y.q_end) <= 1
                assert abs(x.s_start - y.s_start) <= 1 and abs(x.s_end - y.s_end) <= 1
                assert abs(float(x.score) - float(y.score)) <= tol
        top = m_fp[0]
        assert top.source_uri.endswith(f"R00000{name[-1]}.mp4") and top.label != "none"


def _service(lib, tmp_path):
    """A SearchService over the fixture's index, without Ray (its methods called directly)."""
    from serve.search_service import SearchService
    from serve.settings import ServeSettings
    from serve.slots import DecodeSlots
    from astradup.reviews import ReviewStore

    cls = SearchService.func_or_class
    svc = cls.__new__(cls)
    svc.cfg, svc.catalog, svc.searcher = lib["cfg"], lib["cat"], lib["searcher"]
    svc.settings = ServeSettings()
    svc.decodes = DecodeSlots(1, 1)
    svc.reviews = ReviewStore(tmp_path / "reviews.sqlite")
    return svc


def test_the_service_answers_a_fingerprint_as_the_upload(lib, tmp_path):
    """SearchService's own methods (no Ray): the fingerprint route's answer is the upload route's;
    a hostile fingerprint is a 422 naming the reason, never an exception."""
    from serve.settings import ServeSettings

    svc = _service(lib, tmp_path)
    path = lib["q"]["Q000002"]
    fp = tmp_path / "fp.parquet"
    assert cli_main(["--data-dir", str(lib["cfg"].data_dir), "fingerprint", str(path), "-o", str(fp)]) == 0
    up = svc.search_upload(path.read_bytes(), "MP4", 5, False, "Q000002.mp4")
    got = svc.search_fingerprint(fp.read_bytes(), 5, False, "fp.parquet")
    assert "error" not in got, got
    assert got["query"]["kind"] == "fingerprint" and got["query"]["video_id"] == up["query"]["video_id"]
    assert [m["source_id"] for m in got["matches"]] == [m["source_id"] for m in up["matches"]]
    assert [m["label"] for m in got["matches"]] == [m["label"] for m in up["matches"]]
    for bad, reason in ((b"PAR1 not really", "not a Parquet file"), (fp.read_bytes()[:-100], "not a Parquet")):
        r = svc.search_fingerprint(bad, 5)
        assert r["status"] == 422 and reason in r["error"], r
    svc.settings = ServeSettings(max_upload_bytes=1000)
    r = svc.search_fingerprint(fp.read_bytes(), 5)
    assert r["status"] == 422 and "limit" in r["error"]


def test_the_gateway_routes_a_fingerprint_part_to_the_fingerprint_search(lib, tmp_path):
    """POST /search multipart with a 'fingerprint' part, through the gateway's own parsing (no Ray):
    the Parquet bytes are not sniffed as a video (that would be a 415), the search replica's answer
    comes back, a hostile fingerprint is its 422, and a video plus a fingerprint is a 400."""
    import asyncio
    from types import SimpleNamespace

    from serve.api_errors import ApiError
    from serve.gateway import Gateway
    from tests.serve_harness import multipart_search_request
    from serve.settings import ServeSettings
    from serve.slots import DecodeSlots

    svc = _service(lib, tmp_path)
    fp = tmp_path / "fp.parquet"
    assert cli_main(["--data-dir", str(lib["cfg"].data_dir), "fingerprint", str(lib["q"]["Q000001"]),
                     "-o", str(fp)]) == 0
    cls = Gateway.func_or_class
    gw = cls.__new__(cls)
    gw.settings = ServeSettings()
    gw.cfg = lib["cfg"]
    gw.metrics = SimpleNamespace(search=lambda *a: None)
    gw.uploads = DecodeSlots(1, 1)
    gw.search = SimpleNamespace(search_fingerprint=SimpleNamespace(
        remote=lambda *a: asyncio.to_thread(svc.search_fingerprint, *a)))

    def request(parts: list[tuple[str, bytes]]):
        return multipart_search_request(
            b"".join(b'--B\r\nContent-Disposition: form-data; name="%s"; filename="x"\r\n'
                     b"Content-Type: application/octet-stream\r\n\r\n%s\r\n" % (n.encode(), d)
                     for n, d in parts) + b"--B--\r\n")

    res = asyncio.run(cls.search(gw, request([("fingerprint", fp.read_bytes())])))
    assert res["query"]["kind"] == "fingerprint" and res["matches"][0]["source_uri"].endswith("R000001.mp4")
    with pytest.raises(ApiError) as e:
        asyncio.run(cls.search(gw, request([("fingerprint", b"PAR1" + b"\x00" * 64)])))
    assert e.value.status == 422 and "not a Parquet file" in e.value.message
    with pytest.raises(ApiError) as e:
        asyncio.run(cls.search(gw, request([("file", b"\x00" * 8), ("fingerprint", fp.read_bytes())])))
    assert e.value.status == 400 and "exactly one of" in e.value.message
    assert gw.uploads.try_take()  # every upload's slot came back


def test_cli_search_by_fingerprint_in_vsc_layout_scores_against_a_vsc_gt(lib, tmp_path, capsys):
    """`astradup search --fingerprint FP --segments --csv --format vsc` writes VSC22 matches that
    `astradup eval` scores against a VSC22 ground truth named by file stems; --query descriptors too."""
    cfg = lib["cfg"]
    lib["cat"].vectors.close()  # the CLI opens the Milvus Lite file itself
    lib["cat"]._vectors = None
    q = lib["q"]["Q000002"]
    fp = tmp_path / "Q000002.parquet"
    data = ["--data-dir", str(cfg.data_dir)]
    assert cli_main([*data, "fingerprint", str(q), "-o", str(fp)]) == 0
    capsys.readouterr()
    assert cli_main([*data, "search", "--fingerprint", str(fp), "--segments", "--csv", "--format", "vsc"]) == 0
    out = capsys.readouterr().out
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows and rows[0]["query_id"] == "Q000002" and rows[0]["ref_id"] == "R000002"
    assert list(rows[0]) == ["query_id", "ref_id", "query_start", "query_end", "ref_start", "ref_end", "score"]
    pred = tmp_path / "matches.csv"
    pred.write_text(out)
    gt = tmp_path / "gt.csv"  # the excerpt is R000002's seconds 2-10
    gt.write_text("query_id,ref_id,query_start,query_end,ref_start,ref_end\nQ000002,R000002,0,8,2,10\n")
    assert cli_main(["eval", "--truth", str(gt), "--pred", str(pred), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["segment_uap"] > 0.5
    assert read_rows(pred)[0].source_id == "R000002"

    npz = tmp_path / "queries.npz"
    assert cli_main([*data, "export-descriptors", "--format", "vsc", str(npz), "--query", str(q)]) == 0
    with np.load(npz, allow_pickle=False) as z:
        assert set(z["video_ids"]) == {"Q000002"} and z["features"].shape[0] == z["timestamps"].shape[0] > 0
        raw = z["features"]
    # score normalisation folded into the descriptors: queries get -beta x background, refs a 1
    qn, rn = tmp_path / "qn.npz", tmp_path / "rn.npz"
    assert cli_main([*data, "export-descriptors", str(qn), "--query", str(q), "--normalise", "0.5"]) == 0
    assert cli_main([*data, "export-descriptors", str(rn), "--normalise", "0.5"]) == 0
    with np.load(qn) as zq, np.load(rn) as zr:
        fq, fr, ids = zq["features"], zr["features"], zr["video_ids"]
    assert fq.shape[1] == raw.shape[1] + 1 and np.allclose(fq[:, :-1], raw)
    assert np.isfinite(fq[:, -1]).all() and (fq[:, -1] != 0).any() and np.allclose(fr[:, -1], 1.0)
    score = {v: float((fq @ fr[ids == v].T).max()) for v in set(ids)}
    assert max(score, key=score.get) == "R000002"
    assert cli_main([*data, "export-descriptors", str(qn), "--normalise", "-1"]) == 2

    assert cli_main([*data, "search", str(q), "--fingerprint", str(fp)]) == 2
    assert "one of them" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# hostile files (no index needed)


def _feats(t: int = 4, d: int = 16, w: int = 3, da: int = 8) -> VideoFeatures:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(t, d)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    av = rng.normal(size=(w, da)).astype(np.float32)
    return VideoFeatures(video_id="0123456789abcdef0123456789abcdef", uri="/secret/dir/clip.mp4",
                         timestamps=np.arange(t, dtype=np.float32), embeddings=emb,
                         phash=rng.integers(0, 256, (t, 32), dtype=np.uint8),
                         audio_windows=np.stack([np.arange(w), np.arange(w) + 2], 1).astype(np.float32),
                         audio_vectors=av, chromaprint=np.arange(20, dtype=np.uint32), chromaprint_hz=8.0,
                         meta={"duration": 4.0, "width": 160})


def _write(table: pa.Table, path) -> bytes:
    pq.write_table(table, path)
    return path.read_bytes()


def _with(table: pa.Table, name: str, value) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(i, table.schema.field(i), pa.array([value], table.schema.field(i).type))


def test_round_trip_keeps_everything_but_rounds_embeddings(tmp_path):
    f = _feats()
    path = tmp_path / "fp.parquet"
    write_fingerprint(path, f, None, "sscd_onnx:test")
    fp = read_fingerprint(str(path))
    g = fp.features
    assert fp.embedder == "sscd_onnx:test" and fp.mirror is None and g.uri == "fingerprint:clip.mp4"
    assert "secret" not in path.read_bytes().decode("latin-1")  # the folder stays with its owner
    assert g.meta == f.meta and np.array_equal(g.phash, f.phash) and np.array_equal(g.audio_vectors, f.audio_vectors)
    # x ~= q * step to within half a step per component, as the module doc says
    table = pq.read_table(path)
    q = np.frombuffer(table.column("emb_q")[0].as_py(), np.int8).reshape(4, 16)
    step = np.asarray(table.column("emb_step")[0].as_py(), np.float32)
    assert np.abs(q * step[:, None] - f.embeddings).max() <= step.max() / 2 + 1e-7
    assert np.abs(g.embeddings - f.embeddings).max() < 0.02
    assert pq.read_metadata(path).metadata[VERSION_KEY] == b"3" and fp.pitch is None and fp.pitch_codes == ()


def _pitch(f, n: int = 2) -> np.ndarray:
    rng = np.random.default_rng(7)
    v = rng.normal(size=(n,) + np.shape(f.audio_vectors)).astype(np.float32)
    return v / np.linalg.norm(v, axis=2, keepdims=True)


def test_pitch_variants_round_trip_as_int8_rows(tmp_path):
    f = _feats()
    pitch = _pitch(f)
    path = tmp_path / "fp.parquet"
    write_fingerprint(path, f, None, "e", pitch)
    got = read_fingerprint(str(path)).pitch
    assert got.shape == pitch.shape and np.abs(got - pitch).max() < 0.02


def test_a_version_1_file_without_pitch_columns_is_still_read(tmp_path):
    f = _feats()
    t = fingerprint_table(f, None, "e", _pitch(f)).drop_columns(list(PITCH_COLUMNS + CODE_COLUMNS))
    path = tmp_path / "v1.parquet"
    _write(t.replace_schema_metadata({VERSION_KEY: b"1", EMBEDDER_KEY: b"e"}), path)
    fp = read_fingerprint(str(path))
    assert fp.pitch is None and np.array_equal(fp.features.audio_vectors, f.audio_vectors)
    # ... and a version 1 file cannot smuggle the version 2 columns in
    _write(fingerprint_table(f, None, "e", _pitch(f)).replace_schema_metadata({VERSION_KEY: b"1", EMBEDDER_KEY: b"e"}),
           path)
    with pytest.raises(FingerprintError, match="unknown column"):
        read_fingerprint(str(path))


def _codes(f, sizes=(40, 38)) -> tuple[CodeReading, ...]:
    """Pitch readings' codes as features/pitch_variants.py makes them: the track's item times scaled."""
    rng = np.random.default_rng(8)
    return tuple(CodeReading(rng.integers(0, 2 ** 32, k, dtype=np.uint64).astype(np.uint32),
                             item_times(k, f.chromaprint_hz) * sc, shifted=True)
                 for k, sc in zip(sizes, (2 ** (-1 / 12), 2 ** (1 / 12))))


def test_pitch_codes_round_trip_exactly(tmp_path):
    f = _feats()
    codes = _codes(f)
    path = tmp_path / "fp.parquet"
    write_fingerprint(path, f, None, "e", _pitch(f), codes)
    got = read_fingerprint(str(path)).pitch_codes
    assert len(got) == 2 and all(g.shifted for g in got)
    for g, c in zip(got, codes):
        assert np.array_equal(g.codes, c.codes) and np.allclose(g.times, c.times)


def test_a_version_2_file_without_code_columns_is_read_with_no_pitch_codes(tmp_path):
    f = _feats()
    t = fingerprint_table(f, None, "e", _pitch(f), _codes(f))
    path = tmp_path / "v2.parquet"
    _write(t.drop_columns(list(CODE_COLUMNS)).replace_schema_metadata({VERSION_KEY: b"2", EMBEDDER_KEY: b"e"}), path)
    fp = read_fingerprint(str(path))
    assert fp.pitch is not None and fp.pitch_codes == ()
    _write(t.replace_schema_metadata({VERSION_KEY: b"2", EMBEDDER_KEY: b"e"}), path)
    with pytest.raises(FingerprintError, match="unknown column"):
        read_fingerprint(str(path))


@pytest.mark.parametrize("tamper,reason", [
    (lambda t: _with(t, "pitch_code_n", [40, 39]), "summing to the 78 pitch_codes"),
    (lambda t: _with(t, "pitch_code_n", [-1, 79]), "counts from 0"),
    (lambda t: _with(t, "pitch_code_n", [78]), "one per pitch_code_scale (2)"),
    (lambda t: _with(t, "pitch_code_scale", [1.0, 9.0]), "outside 0.5..2"),
    (lambda t: _with(t, "pitch_code_scale", [1.0, float("nan")]), "pitch_code_scale: NaN"),
    (lambda t: _with(t, "chromaprint_hz", 0.0), "without a chromaprint_hz"),
    (lambda t: _with(_with(t, "pitch_codes", list(range(200))), "pitch_code_n", [150, 50]),
     "a reading of 150 items against the track's own 20"),
])
def test_hostile_pitch_code_columns_are_clear_errors(tmp_path, tamper, reason):
    f = _feats()
    t = fingerprint_table(f, None, "e", _pitch(f), _codes(f))
    path = tmp_path / "bad.parquet"
    _write(tamper(t).replace_schema_metadata(t.schema.metadata), path)
    with pytest.raises(FingerprintError) as ei:
        read_fingerprint(str(path))
    assert reason in ei.value.reason


@pytest.mark.parametrize("tamper,reason", [
    (lambda t: _with(t, "pitch_count", 25), "pitch_count 25 is not a count from 0 to 24"),
    (lambda t: _with(t, "pitch_count", 3), "pitch_step: 6 non-negative steps, expected 3 x 3"),
    (lambda t: _with(t, "pitch_count", 0), "hold values with pitch_count 0"),
    (lambda t: _with(t, "pitch_q", b"\x01" * 7), "pitch_q: 7 values, expected 6 x 8"),
    (lambda t: _with(t, "pitch_step", [float("nan")] * 6), "pitch_step: NaN"),
    (lambda t: _with(t, "pitch_step", [-1.0] * 6), "non-negative steps"),
])
def test_hostile_pitch_columns_are_clear_errors(tmp_path, tamper, reason):
    f = _feats()
    t = fingerprint_table(f, None, "e", _pitch(f))
    path = tmp_path / "bad.parquet"
    _write(tamper(t).replace_schema_metadata(t.schema.metadata), path)
    with pytest.raises(FingerprintError) as ei:
        read_fingerprint(str(path))
    assert reason in ei.value.reason


@pytest.mark.parametrize("tamper,reason", [
    (lambda t: t.replace_schema_metadata({EMBEDDER_KEY: b"x"}), "not an AstraDup fingerprint"),
    (lambda t: t.replace_schema_metadata({VERSION_KEY: b"99", EMBEDDER_KEY: b"x"}), "schema version '99'"),
    (lambda t: t.drop_columns(["phash"]), "column 'phash' is missing"),
    (lambda t: t.append_column("extra", pa.array([1])), "unknown column(s) 'extra'"),
    (lambda t: _with(t, "emb_dim", 15), "emb_q: 64 values, expected 4 x 15"),
    (lambda t: _with(t, "timestamps", [0.0, float("nan"), 2.0, 3.0]), "timestamps: NaN"),
    (lambda t: _with(t, "audio_vectors", [float("nan")] * 24), "audio_vectors: NaN"),
    (lambda t: _with(t, "emb_step", [0.01, 0.01, float("inf"), 0.01]), "emb_step: NaN or infinite"),
    (lambda t: _with(t, "video_id", "../../etc/passwd"), "video_id is not 32"),
    (lambda t: _with(t, "meta_json", "[1, 2]"), "not a JSON object"),
    (lambda t: _with(t, "audio_windows", [0.0, 2.0, 5.0, 1.0, 2.0, 4.0]), "ending before it starts"),
    (lambda t: _with(t, "phash", b"\x00" * 31), "phash: 31 values"),
])
def test_a_hostile_fingerprint_is_a_clear_error(tmp_path, tamper, reason):
    t = fingerprint_table(_feats(), None, "sscd_onnx:test")
    path = tmp_path / "bad.parquet"
    _write(tamper(t).replace_schema_metadata(tamper(t).schema.metadata), path)
    with pytest.raises(FingerprintError) as ei:
        read_fingerprint(str(path))
    assert reason in ei.value.reason and str(path) in str(ei.value)


def test_huge_row_counts_and_sizes_are_refused_before_reading(tmp_path):
    t = fingerprint_table(_feats(), None, "e")
    many = pa.concat_tables([t] * 50_000).replace_schema_metadata(t.schema.metadata)
    path = tmp_path / "many.parquet"
    data = _write(many, path)
    with pytest.raises(FingerprintError, match="holds one row, this file has 50000"):
        read_fingerprint(data)
    with pytest.raises(FingerprintError, match="over the limit of 1000 bytes"):
        read_fingerprint(str(path), max_bytes=1000)
    # A one-row file whose zeros compress ~1000x: refused from the metadata, before decoding.
    bomb = _with(t, "audio_vectors", [0.0] * 40_000_000)
    path = tmp_path / "bomb.parquet"
    pq.write_table(bomb.replace_schema_metadata(t.schema.metadata), path, compression="zstd")
    assert path.stat().st_size < 1 << 20
    with pytest.raises(FingerprintError, match="compressed bomb"):
        read_fingerprint(str(path))
    for junk in (b"", b"\x00" * 5000, b"PAR1" + b"x" * 100 + b"PAR1"):
        with pytest.raises(FingerprintError):
            read_fingerprint(junk)


def test_other_embedder_or_dims_are_refused(tmp_path):
    path = tmp_path / "fp.parquet"
    write_fingerprint(path, _feats(), None, "sscd_onnx:sscd_distilled")
    fp = read_fingerprint(str(path))
    check_compatible(fp, "sscd_onnx:sscd_distilled", 16, 8, "fp")
    with pytest.raises(FingerprintError, match="frame embedder 'sscd_onnx:sscd_distilled'"):
        check_compatible(fp, "open_clip:ViT-B-32:openai", 16, 8, "fp")
    with pytest.raises(FingerprintError, match="16-d frame embeddings; this index's embedder makes 512-d"):
        check_compatible(fp, "sscd_onnx:sscd_distilled", 512, 8, "fp")
    with pytest.raises(FingerprintError, match="8-d audio window vectors"):
        check_compatible(fp, "sscd_onnx:sscd_distilled", 16, 218, "fp")


def test_cli_reports_a_bad_fingerprint_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    assert cli_main(["--data-dir", str(tmp_path / "d"), "search", "--fingerprint", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "not a Parquet file" in err[0]
