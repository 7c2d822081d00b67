"""Broken and hostile media (tests/bad_media.py): each kind is indexed or refused with a reason,
odd-but-valid files come out right (upright, sampled by timestamp, resized at decode), long files
are decoded as a stream with the same features, and a backfill over all of it keeps memory bounded.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from astradup.config import load_config
from astradup.errors import MediaError
from astradup.features.audio import audio_features
from astradup.features.audio_stream import StreamingAudioFeatures
from astradup.features.extract import add_embeddings, cpu_features, streamed_features
from astradup.io.probe import probe
from astradup.io.decode import decode_path
from astradup.io.frames import FFmpegReader
from astradup.io.sampling import STREAM_FRAMES, should_stream
from tests import bad_media
from tests.bad_media import FAIL_REASONS, KINDS
from tests.media import make_copy, make_video, synth_music

# Peak memory of the whole backfill job, driver included: each run is a `python -m jobs.backfill`
# process of its own, sampled with every process under it (the local Ray it starts: raylet, GCS,
# the decode + embedder worker, Ray's agents and actors, ffmpeg children), as summed Pss (see
# _memory_kb: summed Rss would count Ray's shared-memory object store and every shared library
# once per process). Measured on the 2-core dev machine, default config (1 fps: 10800 frames for
# the three-hour file, streamed): peak 2.0-2.1 GB Pss (2.8 GB summed Rss), of which the worker
# 0.75-0.85 GB (Python, librosa, onnxruntime with the SSCD model, a chunk in flight), the driver
# 0.55 GB (Milvus Lite client, the model it loads for the vector dims), Ray's own ~0.45 GB.
# The code before streaming cannot pass it: decode_video alone peaked at 2.4 GB on the three-hour
# file (1.6 GB of frames + 476 MB of float32 PCM), and audio_features then needs ~3.9 GB more for
# it (measured 437 MB on 20 min; it is linear: float64 squares, librosa's complex STFT), before
# the frames are pickled for the embedder: > 6 GB in one worker. 3 GiB on this 24 GiB machine
# leaves ~1 GB for noise (peaks of repeated runs varied by ~0.5 GB).
PEAK_PSS_BOUND_MB = 3 * 1024
MARKER = "BAD_MEDIA_FIGURES"
ROOT = Path(__file__).resolve().parents[2]

SHORT_KINDS = [k for k in KINDS if k != "three_hours"]


@pytest.fixture(scope="module")
def cfg():
    return load_config(overrides={"pipeline": {"dashboard": False}})


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """Every short bad kind, made once for the module."""
    root = tmp_path_factory.mktemp("bad")
    return {k: bad_media.make(k, root) for k in SHORT_KINDS}


@pytest.fixture(scope="module")
def three_hours(tmp_path_factory) -> Path:
    """The three-hour file, made once (~15 s, ~24 MB) and shared by the tests that need it."""
    return bad_media.make("three_hours", tmp_path_factory.mktemp("long"))


# --- each kind through decode_path / cpu_features ---------------------------------------------

@pytest.mark.parametrize("kind", SHORT_KINDS)
def test_each_kind_is_indexed_or_refused_with_a_reason(kind, media, cfg):
    path = media[kind]
    expect = KINDS[kind][1]
    if expect == "failed":
        with pytest.raises(MediaError) as ei:
            decode_path(str(path), cfg.decode)
        assert FAIL_REASONS[kind] in ei.value.reason, (kind, ei.value.reason)
        assert str(path) in str(ei.value)  # the message names the file
        return
    dec = decode_path(str(path), cfg.decode)
    feats = cpu_features(dec, cfg)
    n = len(dec.frames)
    assert n >= 1 and dec.frames.shape[1:] == (224, 224, 3) and dec.frames.dtype == np.uint8
    assert len(feats.timestamps) == len(feats.phash) == n
    assert np.all(np.diff(dec.timestamps) > 0)
    assert dec.frames.std() > 5  # a real picture, not a blank buffer from a failed decode
    assert feats.has_audio == (dec.audio is not None), kind
    assert not should_stream(dec.meta, cfg.decode)


def test_damaged_but_playable_files_keep_what_decodes(media, cfg):
    cut = decode_path(str(media["truncated_faststart"]), cfg.decode)
    assert 1 <= len(cut.frames) < cut.meta["frames_expected"] == 8  # the head, not the lost tail
    bad = decode_path(str(media["corrupted_middle"]), cfg.decode)
    assert len(bad.frames) == bad.meta["frames_expected"] == 8  # concealed, every sample present
    one = decode_path(str(media["one_frame"]), cfg.decode)
    assert len(one.frames) == 1 and one.meta["duration"] < 0.1
    vo = decode_path(str(media["video_only"]), cfg.decode)
    assert vo.audio is None and not cpu_features(vo, cfg).has_audio


def test_wrong_extension_is_read_by_content(media):
    assert "matroska" in probe(str(media["mkv_as_mp4"]))["container"]
    webm = probe(str(media["webm_as_mp4"]))
    assert "webm" in webm["container"] and webm["vcodec"] == "vp8" and webm["acodec"] == "vorbis"
    assert media["mp4_as_avi"].suffix == ".avi" and "mp4" in probe(str(media["mp4_as_avi"]))["container"]


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotated_video_comes_out_upright(tmp_path, cfg, degrees):
    """Frames as a player shows them: equal to ffmpeg's own (auto-rotating) decode and to the
    stored pixels turned by the display matrix, not to the stored pixels."""
    ref = bad_media.make_rotation_reference(tmp_path / "ref.mp4")
    rot = tmp_path / "rot.mp4"
    bad_media.run_ffmpeg("-i", str(ref), "-c", "copy", "-metadata:s:v", f"rotate={degrees}", str(rot))
    a = decode_path(str(ref), cfg.decode).frames.astype(np.int16)
    dec = decode_path(str(rot), cfg.decode)
    b = dec.frames.astype(np.int16)
    ccw = dec.meta["rotation"]
    assert ccw in (90, 180, 270) and dec.meta["decoder"] == "decord"
    upright = np.rot90(a, ccw // 90, axes=(1, 2))
    assert np.abs(b - upright).mean() < 4, degrees
    assert np.abs(b - a).mean() > 40  # the stored pixels really are sideways / upside down
    ff = FFmpegReader(cfg.decode.fps).read(str(rot), dec.timestamps, cfg.decode.frame_size).astype(np.int16)
    assert np.abs(b - ff).mean() < 4
    if ccw in (90, 270):
        assert (dec.meta["width"], dec.meta["height"]) == (180, 320)


def test_vfr_is_sampled_by_timestamp(tmp_path, media, cfg):
    vfr = decode_path(str(media["vfr"]), cfg.decode)
    ref = decode_path(str(bad_media.make_vfr_reference(tmp_path / "cfr.mp4")), cfg.decode)
    n = len(ref.frames)
    assert len(vfr.frames) == n == 6
    d = np.array([[np.abs(vfr.frames[i].astype(np.int16) - ref.frames[j]).mean() for j in range(n)]
                  for i in range(n)])
    # Each sample is the picture of its own time, in the dense and in the sparse part; by frame
    # index (t x 16 average fps) the samples after 3 s would land a second or more early.
    assert np.all(np.diag(d) < 3), np.diag(d)
    assert np.all(d[~np.eye(n, dtype=bool)] > 8)


def test_8k_is_resized_at_decode_with_bounded_memory(media, cfg):
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child forked from a large
    # pytest process (Ray and models loaded by earlier tests) would report the parent's size.
    code = ("import re, sys; from astradup.config import load_config; "
            "from astradup.io.decode import decode_path; "
            "d = decode_path(sys.argv[1], load_config().decode); "
            "hwm = int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)); "
            "print(d.frames.shape, hwm // 1024)")
    out = subprocess.run([sys.executable, "-c", code, str(media["uhd_8k"])], capture_output=True,
                         text=True, check=True, cwd=ROOT).stdout
    shape, rss_mb = out.strip().rsplit(" ", 1)
    assert shape == "(1, 224, 224, 3)"
    # One 8K frame is 50 MB as YUV and 100 MB as RGB; decoding into 224 px frames, the process
    # (Python, numpy, decord, libav) stays far below what a few full-size RGB frames would need.
    assert int(rss_mb) < 700, rss_mb


# --- long files: streamed, same features --------------------------------------------------------

@pytest.mark.parametrize("seconds,chunk", [(70, 1 << 15), (13.3, 5000), (3, 777), (0.1, 100)])
def test_streamed_audio_features_equal_the_whole_track_ones(cfg, seconds, chunk):
    sr = cfg.decode.sample_rate
    pcm = synth_music(seconds, sr, seed=3)
    if seconds > 60:
        pcm[20 * sr:40 * sr] = 0  # a silent stretch: its windows must be dropped the same way
    whole = audio_features(pcm, sr, cfg.audio)
    s = StreamingAudioFeatures(sr, cfg.audio)
    for i in range(0, len(pcm), chunk):
        s.feed(pcm[i:i + chunk])
    part = s.finish()
    assert len(whole["windows"]) > 0
    assert np.array_equal(whole["chromaprint"], part["chromaprint"])
    assert np.array_equal(whole["windows"], part["windows"])
    np.testing.assert_allclose(part["vectors"], whole["vectors"], atol=1e-6)


def test_streamed_features_equal_the_whole_video_ones(tmp_path, cfg):
    from astradup.features.embedder import get_embedder

    path = make_video(tmp_path / "v.mp4", seconds=40, size=(320, 240), source="life", audio="music", seed=4)
    emb = get_embedder(cfg.embedder)
    dec = decode_path(str(path), cfg.decode)
    whole = add_embeddings(cpu_features(dec, cfg), dec.frames, emb)
    part = streamed_features(str(path), dec.ref, cfg, emb, chunk=7)  # 7 frames a chunk: 6 chunks
    assert part.meta["streamed"] and part.meta["audio_samples"] == len(dec.audio)
    for name in ("timestamps", "phash", "pdq", "pdq_quality", "chromaprint", "audio_windows"):
        assert np.array_equal(getattr(whole, name), getattr(part, name)), name
    np.testing.assert_allclose(part.embeddings, whole.embeddings, atol=1e-5)
    np.testing.assert_allclose(part.audio_vectors, whole.audio_vectors, atol=1e-6)
    assert part.meta["blank_frames"] == whole.meta["blank_frames"]


INDEXED_SHORT = [k for k in SHORT_KINDS if KINDS[k][1] == "indexed"]


@pytest.mark.parametrize("kind", INDEXED_SHORT)
def test_every_indexed_kind_streams_to_the_same_features(kind, media, cfg):
    """The streamed path on the odd files, in chunks of 2 frames: decord failing part way hands
    over to ffmpeg at the right frame, no audio / one frame / rotation / VFR behave the same."""
    import dataclasses

    from astradup.features.embedder import get_embedder

    # The model's full output: this compares pictures, and the 256-d descriptor's re-normalisation
    # magnifies small differences on synthetic frames that lie outside its fitted subspace.
    emb = get_embedder(dataclasses.replace(cfg.embedder, pca_dims=0))
    dec = decode_path(str(media[kind]), cfg.decode)
    whole = add_embeddings(cpu_features(dec, cfg), dec.frames, emb)
    part = streamed_features(str(media[kind]), dec.ref, cfg, emb, chunk=2)
    assert np.array_equal(part.timestamps, whole.timestamps), kind
    # The same pictures (the decoder of a chunk may differ: decord vs ffmpeg round a little apart).
    cos = np.sum(part.embeddings * whole.embeddings, axis=1)
    assert cos.min() > 0.97, (kind, cos.min(), part.meta.get("decoder"), dec.meta.get("decoder"))
    assert np.array_equal(part.audio_windows, whole.audio_windows), kind
    assert np.array_equal(part.chromaprint, whole.chromaprint), kind


def test_three_hour_file_is_streamed(three_hours, cfg):
    meta = probe(str(three_hours))
    assert abs(meta["duration"] - bad_media.LONG_SECONDS) < 1 and meta["has_audio"]
    assert should_stream(meta, cfg.decode) and bad_media.LONG_SECONDS * cfg.decode.fps > STREAM_FRAMES


# --- the backfill over good and bad files, memory sampled -----------------------------------------

def _tree(root: int) -> set[int]:
    """``root`` and all its descendants, from /proc (Linux; psutil is not a project dependency)."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the fields after the last ')' are fixed.
        parent[int(entry)] = int(stat[stat.rindex(b")") + 2:].split()[1])
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo.extend(c for c, pp in parent.items() if pp == pid and c not in tree)
    return tree


def _memory_kb(pid: int) -> tuple[int, int, str]:
    """(Rss, Pss) in kB and the process name. Pss splits each shared page (libraries, Ray's
    object store in shared memory) between the processes mapping it, so Pss sums to the memory
    the tree really uses; Rss sums count a shared page once per process."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        vals = {k: int(v.split()[0]) for k, v in (ln.split(":", 1) for ln in f if ":" in ln)
                if k in ("Rss", "Pss")}
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        name = f.read().split(b"\0")[0].decode(errors="replace").rsplit("/", 1)[-1][:60]
    return vals.get("Rss", 0), vals.get("Pss", 0), name


class TreeMemory:
    """Peak summed Pss (and Rss) of process ``root`` and all its descendants, sampled in a thread.

    Ray's raylet and GCS are children of the driver started by ray.init, and its workers are
    children of the raylet, so the tree of a backfill driver is the whole local job (with the
    ffmpeg processes the workers start). ``top`` keeps the largest processes of the peak sample."""

    def __init__(self, root: int, every: float = 0.25) -> None:
        self.root, self.every, self.samples = root, every, 0
        self.peak_pss_mb = self.peak_rss_mb = 0.0
        self.top: list[tuple[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rows = []
            for pid in _tree(self.root):
                try:
                    rows.append(_memory_kb(pid))
                except (OSError, ValueError):
                    pass  # gone between the listing and the read
            pss = sum(r[1] for r in rows) / 1024
            self.peak_rss_mb = max(self.peak_rss_mb, sum(r[0] for r in rows) / 1024)
            if pss > self.peak_pss_mb:
                self.peak_pss_mb = pss
                self.top = sorted(((n, p / 1024) for _, p, n in rows), key=lambda x: -x[1])[:6]
            self.samples += 1
            self._stop.wait(self.every)

    def __enter__(self) -> "TreeMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _backfill(args: list[str]) -> tuple[str, TreeMemory, float]:
    """``python -m jobs.backfill ARGS`` (its ``main``) in a process of its own, so that the memory
    sampled is the job's alone (driver + the local Ray it starts), not this test process's; its
    own session lets whatever it leaves behind be reaped by group. (output, memory, seconds)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(ASTRADUP_PIPELINE__DASHBOARD="false", PYTHONPATH=str(ROOT))
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "jobs.backfill", *args], cwd=ROOT, env=env,
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        with TreeMemory(proc.pid) as mem:
            out, _ = proc.communicate(timeout=480)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == 0, out[-3000:]
    return out, mem, time.time() - t0


def test_backfill_over_bad_and_good_files(tmp_path, media, three_hours):
    from astradup.catalog import Catalog
    from astradup.search import Searcher
    from jobs.backfill import config_from_args, parse_args

    good, mixed, data = tmp_path / "good", tmp_path / "mixed", tmp_path / "data"
    good.mkdir()
    mixed.mkdir()
    goods = [make_video(good / f"g{i}.mp4", seconds=8, size=(320, 240), source=src, audio="music", seed=20 + i)
             for i, src in enumerate(("mandelbrot", "boxes", "gradients"))]
    # The mixed corpus: the same good files again (already indexed: skipped), an exact byte copy
    # under a new name (same content id: skipped), a re-encoded copy, and every bad kind.
    for g in goods:
        shutil.copy(g, mixed / g.name)
    shutil.copy(goods[0], mixed / "g0_same_bytes.mp4")
    reenc = make_copy(goods[1], mixed / "g1_reencode.mp4", vf="scale=240:180", crf=30)
    bad_names: dict[str, str] = {}
    for kind, path in {**media, "three_hours": three_hours}.items():
        shutil.copy(path, mixed / path.name)
        bad_names[path.name] = kind
    args = ["--data-dir", str(data), "--write-batch", "4"]

    first, mem1, first_s = _backfill(["--source", str(good), *args])
    out, mem2, mixed_s = _backfill(["--source", str(mixed), "--summary-json", str(tmp_path / "s.json"), *args])
    mem = max(mem1, mem2, key=lambda m: m.peak_pss_mb)
    summary = json.loads((tmp_path / "s.json").read_text())
    assert "BACKFILL_SUMMARY" in first and "BACKFILL_SUMMARY" in out

    expect_ok = {name for name, k in bad_names.items() if KINDS[k][1] == "indexed"} | {reenc.name}
    expect_failed = {name: k for name, k in bad_names.items() if KINDS[k][1] == "failed"}
    failed = {f["uri"].rsplit("/", 1)[-1]: f["reason"] for f in summary["failed"]}
    assert set(failed) == set(expect_failed), failed
    for name, kind in expect_failed.items():
        assert FAIL_REASONS[kind] in failed[name], (name, failed[name])
    assert summary["indexed"] == len(expect_ok), summary
    # The good files again under new names and the byte copy: read, hashed, found indexed.
    assert summary["skipped"] == len(goods) + 1 and summary["skipped_unread"] == 0, summary

    cfg = config_from_args(parse_args(["--source", str(mixed), *args]))
    cat = Catalog(cfg)
    try:
        status = cat.shards.latest_status()
        by_name: dict[str, list[dict]] = {}
        for vid, row in status.items():
            by_name.setdefault(row["uri"].rsplit("/", 1)[-1], []).append({"id": vid, **row})
        for name in expect_failed:
            (row,) = by_name[name]
            assert row["status"] == "failed" and row["error"], (name, row)
        ok_ids = {vid for vid, r in status.items() if r["status"] == "ok"}
        assert len(ok_ids) == len(goods) + len(expect_ok)
        for g in goods:  # indexed by the first run, still there after the second
            (row,) = by_name[g.name]
            assert row["status"] == "ok" and row["uri"] == str(g)
        for name in expect_ok:
            (row,) = by_name[name]
            assert row["status"] == "ok", (name, row)
        assert cat.vectors.video_ids() == ok_ids  # vectors for every ok video, none for failures
        feats = cat.shards.load_features(ok_ids)
        long_id = next(r["id"] for r in by_name[three_hours.name])
        long = feats[long_id]
        assert len(long.timestamps) == len(long.embeddings) == bad_media.LONG_SECONDS * cfg.decode.fps
        assert len(long.audio_windows) > 10000 and long.meta.get("streamed")
        # Milvus holds every frame_stride-th row (the shards keep all): count what it should hold.
        counts = cat.vectors.count()
        for key in ("frames", "audio"):
            assert counts[key] == sum(cat.vectors.stored_rows(f)[key] for f in feats.values()), key
        s = Searcher(cfg, cat)
        matches = s.search_indexed(by_name[reenc.name][0]["id"])
        assert matches and matches[0].source_uri == str(goods[1]), matches[:1]
    finally:
        cat.vectors.close()

    top = ", ".join(f"{n} {mb:.0f}" for n, mb in mem.top)
    print(f"{MARKER} kinds={len(KINDS)} bad_inputs={len(bad_names)} fps={cfg.decode.fps:g} "
          f"failed={len(expect_failed)} indexed_odd={len(expect_ok) - 1} "
          f"good_indexed={len(goods) + 1}/{len(goods) + 1} "
          f"peak_pss_mb={mem.peak_pss_mb:.0f} bound_mb={PEAK_PSS_BOUND_MB} "
          f"peak_rss_sum_mb={max(mem1.peak_rss_mb, mem2.peak_rss_mb):.0f} "
          f"samples={mem1.samples + mem2.samples} "
          f"first_run_s={first_s:.1f} mixed_run_s={mixed_s:.1f} top_at_peak=[{top}]")
    assert mem1.samples > 5 and mem2.samples > 5
    assert mem.peak_pss_mb < PEAK_PSS_BOUND_MB, (mem.peak_pss_mb, mem.top)
