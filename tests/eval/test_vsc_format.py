"""VSC22 layouts in and out: the matches/ground-truth CSV read by `astradup eval` beside the
project's own, and the descriptor .npz written by `astradup export-descriptors`."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from astradup.cli import main as cli_main
from astradup.config import load_config
from astradup.errors import MediaError
from astradup.features.audio import vector_dim
from astradup.features.basis import BUILTIN
from astradup.eval.segments_csv import LAYOUT_VSC, VSC_REQUIRED, detect_layout, read_rows, write_rows
from astradup.records import SegmentMatch, VideoFeatures
from astradup.store.shards import ShardStore

VSC_GT_HEADER = "query_id,ref_id,query_start,query_end,ref_start,ref_end"


def _rows():
    """Truth and predictions over three pairs: exact, partly right, a false alarm, and a miss."""
    truth = [SegmentMatch("Q100001", 0, 10, "R200001", 5, 15, extra={"transform": "crop"}),
             SegmentMatch("Q100002", 2.5, 20, "R200002", 0, 17.5, extra={"transform": "reencode"}),
             SegmentMatch("Q100003", 0, 8, "R200003", 30, 38, extra={"transform": "crop"})]
    pred = [SegmentMatch("Q100001", 0, 10, "R200001", 5, 15, 0.91234),
            SegmentMatch("Q100002", 5, 25, "R200002", 2.5, 22.5, 0.75),
            SegmentMatch("Q100002", 30, 31.25, "R200009", 0, 1.25, 0.8),
            SegmentMatch("Q100009", 0, 5, "R200001", 0, 5, 0.1)]
    return truth, pred


def _eval(capsys, truth, pred) -> dict:
    assert cli_main(["eval", "--truth", str(truth), "--pred", str(pred), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_project_and_vsc_layouts_score_the_same(tmp_path, capsys):
    truth, pred = _rows()
    pt, pp = tmp_path / "truth.csv", tmp_path / "pred.csv"
    write_rows(pt, truth, with_score=False)
    write_rows(pp, pred)
    # Convert what the project files hold (as read back) to VSC22's layout.
    vt, vp = tmp_path / "gt_vsc.csv", tmp_path / "matches_vsc.csv"
    write_rows(vt, read_rows(pt), with_score=False, layout=LAYOUT_VSC)
    write_rows(vp, read_rows(pp), layout=LAYOUT_VSC)
    assert vt.read_text().splitlines()[0] == VSC_GT_HEADER + ",transform"
    assert vp.read_text().splitlines()[0] == VSC_GT_HEADER + ",score"
    assert "Q100002,R200002,2.5,20,0,17.5,reencode" in vt.read_text()

    project = _eval(capsys, pt, pp)
    assert 0 < project["segment_uap"] < 1 and 0 < project["f1"] < 1  # a real mix, not a trivial 0 or 1
    assert _eval(capsys, vt, vp) == project
    assert _eval(capsys, pt, vp) == project  # mixed layouts too: the header decides per file
    assert _eval(capsys, vt, pp) == project
    assert read_rows(vp) == read_rows(pp) and read_rows(vt) == read_rows(pt)


def test_vsc2022_files_as_pandas_writes_them(tmp_path, capsys):
    """Columns in vsc2022's Match field order (score before the times), exponent scores, no transform."""
    gt = tmp_path / "gt.csv"
    gt.write_text(VSC_GT_HEADER + "\nQ1,R1,0.0,10.0,5.0,15.0\n")
    m = tmp_path / "matches.csv"
    m.write_text("query_id,ref_id,score,query_start,query_end,ref_start,ref_end\n"
                 "Q1,R1,0.9,0.0,10.0,5.0,15.0\nQ1,R2,1e-05,0,3,0,3\n")
    rows = read_rows(m)
    assert rows[0] == SegmentMatch("Q1", 0, 10, "R1", 5, 15, 0.9) and rows[1].score == 1e-05
    out = _eval(capsys, gt, m)
    assert out["segment_uap"] == pytest.approx(1.0)


def test_layout_detection_is_by_header():
    assert detect_layout(list(VSC_REQUIRED))[0] == LAYOUT_VSC
    assert detect_layout(["query_id", "query_segment", "source_id", "source_segment", "score"])[0] == "astradup"
    layout, why = detect_layout(["query_id", "ref_id", "score"])
    assert layout is None and "'query_start'" in why and "'source_segment'" in why
    layout, why = detect_layout(["query_id", "query_segment", "source_id", "source_segment", *VSC_REQUIRED[1:]])
    assert layout is None and "both" in why


def _bad(tmp_path, capsys, body: bytes) -> str:
    truth = tmp_path / "gt.csv"
    truth.write_text(VSC_GT_HEADER + "\nQ1,R1,0,10,0,10\n")
    bad = tmp_path / "hostile.csv"
    bad.write_bytes(body)
    assert cli_main(["eval", "--truth", str(truth), "--pred", str(bad)]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 1 and str(bad) in lines[0], err
    assert len(lines[0]) < 600
    return lines[0]


HEAD = (VSC_GT_HEADER + ",score\n").encode()


@pytest.mark.parametrize("body,words", [
    (b"query_id,ref_id,query_start,score\nQ1,R1,0,0.5\n",
     ["neither layout", "'query_end'", "'ref_start'", "'ref_end'", "'query_segment'"]),
    (HEAD + b"Q1,R1,zero,10,0,10,0.5\n", ["line 2", "query_start 'zero' is not"]),
    (HEAD + b"Q1,R1,0,10,0,10,0.5\nQ1,R1,12,10,0,10,0.5\n", ["line 3", "query_end '10' is before"]),
    (HEAD + b"Q1,R1,0,10,8,7,0.5\n", ["ref_end '7' is before"]),
    (HEAD + b"Q1,R1,-1,10,0,10,0.5\n", ["query_start '-1'"]),
    (HEAD + b"Q1,R1,nan,10,0,10,0.5\n", ["query_start 'nan'"]),
    (HEAD + b"Q1,R1,0,1e400,0,10,0.5\n", ["query_end", "over"]),
    (HEAD + b"Q1,,0,10,0,10,0.5\n", ["empty query_id or ref_id"]),
    (HEAD + b"Q1,R1,0,10,0,10,high\n", ["score 'high' is not a number"]),
])
def test_hostile_vsc_csv_is_one_line_error(tmp_path, capsys, body, words):
    line = _bad(tmp_path, capsys, body)
    for w in words:
        assert w in line, (w, line)


def test_a_huge_file_of_junk_is_refused_early(tmp_path, capsys):
    rng = np.random.default_rng(0)
    junk = rng.integers(0, 256, 4 << 20, dtype=np.uint8).tobytes()  # 4 MiB of noise, no header at all
    line = _bad(tmp_path, capsys, junk)
    assert "line 1" in line or "line 2" in line
    # 4 MiB of well-formed-looking text without a usable header: one line, names the columns missing.
    line = _bad(tmp_path, capsys, b"a,b,c\n" + b"1,2,3\n" * 700_000)
    assert "neither layout" in line and "'ref_id'" in line


def _features(vid: str, uri: str, t: int, dim: int, seed: int) -> VideoFeatures:
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(t, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return VideoFeatures(video_id=vid, uri=uri, timestamps=np.arange(t, dtype=np.float32), embeddings=emb,
                         phash=np.zeros((t, 32), np.uint8), audio_windows=np.zeros((0, 2), np.float32),
                         audio_vectors=np.zeros((0, 0), np.float32), chromaprint=np.zeros((0,), np.uint32),
                         chromaprint_hz=0.0, meta={"duration": float(t)})


def test_export_descriptors_writes_vsc_keys_shapes_and_dtypes(tmp_path, capsys):
    data = tmp_path / "data"
    cfg = load_config(overrides={"data_dir": str(data)})
    store = ShardStore(cfg.resolved_shards_dir)
    feats = [_features("a" * 32, "/lib/refs/R000001.mp4", 5, 16, 1),
             _features("b" * 32, "s3://bucket/refs/R000022.mp4", 3, 16, 2)]
    store.write_features(feats)
    out = tmp_path / "refs.npz"
    assert cli_main(["--data-dir", str(data), "export-descriptors", "--format", "vsc", str(out),
                     "--audio-share", "0"]) == 0
    assert "2 video(s), 8 rows of 16-d" in capsys.readouterr().out
    with np.load(out, allow_pickle=False) as z:  # no pickled objects: VSC's loader and a cautious reader both work
        assert sorted(z.files) == ["features", "timestamps", "video_ids"]
        ids, ts, x = z["video_ids"], z["timestamps"], z["features"]
    assert ids.dtype.kind == "U" and ids.shape == (8,)
    assert ts.dtype == np.float32 and ts.shape == (8, 2)
    assert x.dtype == np.float32 and x.shape == (8, 16)
    assert list(ids) == ["R000001"] * 5 + ["R000022"] * 3
    assert np.array_equal(ts[:5], np.stack([np.arange(5), np.arange(1, 6)], axis=1))
    for f, rows in ((feats[0], x[:5]), (feats[1], x[5:])):
        cos = np.sum(rows * f.embeddings, axis=1)  # the shards keep int8 rows: directions within ~1e-3
        assert cos.min() > 0.999
    # by default each row is joined by the audio at that second (none here: zeros), frames weighed 1 - 0.4
    joined = tmp_path / "joined.npz"
    assert cli_main(["--data-dir", str(data), "export-descriptors", str(joined)]) == 0
    with np.load(joined, allow_pickle=False) as z:
        j = z["features"]
    assert j.shape == (8, 16 + vector_dim(13)) and not j[:, 16:].any()
    assert np.allclose(j[:, :16], np.sqrt(0.6) * x, atol=1e-6)
    for bad in ("1", "-0.1", "nan"):
        assert cli_main(["--data-dir", str(data), "export-descriptors", str(joined), "--audio-share", bad]) == 2
        assert "--audio-share" in capsys.readouterr().err


def test_export_keeps_rows_within_vsc22s_512_dimensions(tmp_path, capsys):
    """SSCD's 512-d frames joined by 218-d audio would pass the track's limit: the frames are cut by
    the fitted descriptor basis; an embedder without one keeps its rows and is told."""
    data = tmp_path / "data"
    cfg = load_config(overrides={"data_dir": str(data)})
    ShardStore(cfg.resolved_shards_dir).write_features([_features("a" * 32, "/lib/R1.mp4", 4, 512, 1)])
    out = tmp_path / "refs.npz"
    basis = np.load(BUILTIN)["descriptor"].astype(np.float32)
    for flags, dim in (([], 256 + vector_dim(13)), (["--normalise", "0.5"], 256 + vector_dim(13) + 1),
                       (["--audio-share", "0"], 512), (["--audio-share", "0", "--normalise", "0.5"], 257)):
        assert cli_main(["--data-dir", str(data), "export-descriptors", str(out), *flags]) == 0
        with np.load(out) as z:
            x = z["features"]
        assert x.shape == (4, dim) and dim <= 512, flags
    with np.load(out) as z:
        emb = ShardStore(cfg.resolved_shards_dir).load_features(["a" * 32])["a" * 32].embeddings
        want = emb @ basis
        assert np.allclose(z["features"][:, :256], want / np.linalg.norm(want, axis=1, keepdims=True), atol=1e-5)
    capsys.readouterr()
    conf = tmp_path / "clip.yaml"
    conf.write_text("embedder:\n  kind: open_clip\n  model: ViT-B-32\n")
    other = ["--config", str(conf), "--data-dir", str(data)]
    assert cli_main([*other, "export-descriptors", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"of {512 + vector_dim(13)}-d" in captured.out and "pass the VSC22" in captured.err


def test_export_names_a_video_whose_audio_has_other_settings(tmp_path, capsys):
    data = tmp_path / "data"
    cfg = load_config(overrides={"data_dir": str(data)})
    f = _features("a" * 32, "/lib/R7.mp4", 3, 16, 1)
    f = dataclasses.replace(f, audio_windows=np.array([[0, 5], [1, 6]], np.float32),
                            audio_vectors=np.ones((2, 40), np.float32) / np.sqrt(40))  # not 218-d
    ShardStore(cfg.resolved_shards_dir).write_features([f])
    out = tmp_path / "refs.npz"
    assert cli_main(["--data-dir", str(data), "export-descriptors", str(out)]) == 2
    err = capsys.readouterr().err
    assert "R7.mp4" in err and "40-d" in err and not out.exists()
    assert cli_main(["--data-dir", str(data), "export-descriptors", str(out), "--audio-share", "0"]) == 0


def test_export_refuses_two_videos_with_one_stem(tmp_path, capsys):
    data = tmp_path / "data"
    cfg = load_config(overrides={"data_dir": str(data)})
    ShardStore(cfg.resolved_shards_dir).write_features(
        [_features("a" * 32, "/x/R1.mp4", 2, 8, 1), _features("b" * 32, "/y/R1.mp4", 2, 8, 2)])
    out = tmp_path / "refs.npz"
    assert cli_main(["--data-dir", str(data), "export-descriptors", str(out)]) == 2
    assert "'R1'" in capsys.readouterr().err and not out.exists()


def test_empty_vsc_header_only_file_reads_no_rows(tmp_path):
    p = tmp_path / "gt.csv"
    p.write_text(VSC_GT_HEADER + "\n")
    assert read_rows(p) == []
    with pytest.raises(MediaError, match="empty file"):
        (tmp_path / "e.csv").write_text("")
        read_rows(tmp_path / "e.csv")
