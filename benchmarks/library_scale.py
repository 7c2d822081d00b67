"""Library scale: search, dedup and replica figures on a library of N videos (N = 1k, 10k, 100k).

The library per N (built once, cached under ``--cache``; a run finds it and only measures):

* real sources, indexed through ``astradup.pipeline.index`` (decode, pHash, audio, SSCD embedding,
  the writers): with ``--real DIR`` the sources of a dev benchmark built by
  ``../shared/bench/make_bench.py`` (real photos, footage, music, speech), its queries that copy one
  source being the real query files; without it, 6 generated test-pattern videos (tests/media.py
  ``make_video``) and a re-encoded copy of each (quick, but their narrow statistics make the
  synthetic filler look alike: many false ``similar`` pairs, few candidates pruned).
* synthetic videos: ``VideoFeatures`` records made here, written through ``Catalog.write`` (Milvus
  upsert through the configured projection + ``ShardStore.write_features``), durations log-uniform
  10 s .. 10 min at 1 fps. Frame embeddings are unit vectors, AR(1) along frames around a per-video
  mean, both drawn from a Gaussian with the second-moment matrix of the real sources' SSCD vectors,
  shrunk towards isotropic by as much as makes a real frame's best match among synthetic videos as
  close as its best match among the other real videos (``calibrated``: a few real videos give a
  low-rank estimate whose draws are blends of those videos, closer to each of them than unrelated
  videos are, and a library of such blends makes every real frame look like common content);
  audio window vectors the same from the real MFCC windows; pHash bits drift frame to frame; Chromaprint codes at
  the real rate; metadata from a real record with the duration changed.
* planted truth among the synthetic ones (``--planted`` of them are group sources): each source gets
  a near-duplicate (its vectors + noise, cosine ~0.93; 5% pHash bits flipped; audio likewise) and a
  partial copy (a 30-60% sub-range, timestamps from 0). Every pair inside a group is a true pair.

The vectors go to a Milvus server (``tests/milvus_harness.py``, data under the cache, one collection
prefix per N), the shards to local disk; ``--s3`` also copies the N's shard files to a moto S3
server (its own process, in memory, so redone each run) and repeats the search figures with ``shards_dir`` there.

Per N it prints: real query files (p50/p95 of the whole search and of the part after feature
extraction: KNN + candidate fetch, scoring, alignment), search by indexed id p50/p95, a fresh search
replica's start-up (Catalog + Searcher + first search, in a subprocess) and its resident memory,
the dedup job's videos/s on a local Ray with recall/precision of the planted pairs (above
``--dedup-sample`` videos the job searches a sample, each search against the whole library), recall@1 of the
real queries among the filler, and growth per 10x against the warm-up size (``--warmup``, 100)
measured in the same run.

    .venv/bin/python benchmarks/library_scale.py [--sizes 1000,10000] [--real DIR] [--s3] [--cache DIR] [--dedup-sample 2000]

Figures from this machine: docs/scaling.md, "Library scale".

Not part of ``make test``.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")  # moto (--s3); before Ray starts, workers inherit it
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from astradup.config import load_config  # noqa: E402
from astradup.records import VideoFeatures  # noqa: E402

N_REAL = 6
BUILD_VERSION = 4  # 2: 1 MB row groups; 3: calibrated synthetic statistics; 4: calibrated as the KNN sees them


# ----------------------------------------------------------------------------- helpers

def pct(xs, q) -> float:
    return float(np.percentile(np.asarray(xs, float) * 1000, q)) if len(xs) else float("nan")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def vid_of(tag: str) -> str:
    return hashlib.blake2b(tag.encode(), digest_size=16).hexdigest()


class Gauss:
    """Gaussian with a given second-moment matrix, shrunk towards isotropic (few real samples)."""

    def __init__(self, real: np.ndarray, shrink: float = 0.2) -> None:
        real = real.astype(np.float64)
        m = real.T @ real / len(real)
        d = m.shape[0]
        m = (1 - shrink) * m + shrink * np.trace(m) / d * np.eye(d)
        w, v = np.linalg.eigh(m)
        self.l = (v * np.sqrt(np.maximum(w, 1e-9))).astype(np.float32)
        self.dim = d

    def draw(self, rng, n: int) -> np.ndarray:
        return rng.standard_normal((n, self.dim), dtype=np.float32) @ self.l.T


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def ar1(g: Gauss, rng, n: int, rho: float = 0.9, spread: float = 0.8) -> np.ndarray:
    """n unit vectors: per-video mean + AR(1) deviations along the sequence."""
    if n == 0:
        return np.zeros((0, g.dim), np.float32)
    mu = g.draw(rng, 1)[0]
    eps = g.draw(rng, n)
    z = np.empty_like(eps)
    z[0] = eps[0]
    c = math.sqrt(1 - rho * rho)
    for t in range(1, n):
        z[t] = rho * z[t - 1] + c * eps[t]
    return unit(mu + spread * z)


SHRINKS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 1.0)


def best_other(per_video: list[np.ndarray], others: list[np.ndarray]) -> float:
    """Median over the rows of ``per_video`` of their best similarity among ``others`` (a video's
    own rows left out when the lists are the same)."""
    best = []
    for i, x in enumerate(per_video):
        pool = [o for j, o in enumerate(others) if not (others is per_video and j == i) and len(o)]
        if len(x) and pool:
            best.append((x @ np.concatenate(pool).T).max(1))
    return float(np.median(np.concatenate(best))) if best else 0.0


def calibrated(per_video: list[np.ndarray], rho: float, view, seed: int = 0) -> tuple[Gauss, float, float, float]:
    """The Gaussian (shrink from SHRINKS) whose AR(1) videos sit as far from the real ones as the
    real ones sit from each other, as the KNN sees them (``view``: the index projection, which
    keeps the real vectors' main directions, so isotropic noise looks more real there than in
    full): (gauss, shrink, real-to-real, real-to-synthetic median best, both in ``view``)."""
    raw = [x for x in per_video if len(x)]
    seen = [view(x) for x in raw]
    target = best_other(seen, seen)
    best = None
    for s in SHRINKS:
        g = Gauss(np.concatenate(raw), shrink=s)
        rng = np.random.default_rng(seed)
        syn = [view(ar1(g, rng, len(x), rho=rho)) for x in raw[1:]]  # as many videos as a real one sees
        got = best_other(seen, syn)
        if best is None or abs(got - target) < abs(best[3] - target):
            best = (g, s, target, got)
    return best


class Synth:
    def __init__(self, real: list[VideoFeatures], cfg, projection) -> None:
        self.frames, fs, ft, fg = calibrated([f.embeddings for f in real], 0.9, projection.query_frames)
        self.audio, as_, at, ag = calibrated([f.audio_vectors for f in real], 0.8, projection.query_audio)
        emb = np.concatenate([f.embeddings for f in real if len(f.embeddings)])
        aud = np.concatenate([f.audio_vectors for f in real if len(f.audio_vectors)])
        print(f"  calibrated shrink: frames {fs} (median best match of a real frame: other real videos {ft:.3f}, "
              f"synthetic {fg:.3f}), audio {as_} ({at:.3f} vs {ag:.3f})", flush=True)
        self.hz = float(np.median([f.chromaprint_hz for f in real if f.chromaprint_hz > 0] or [7.8]))
        self.meta = dict(real[0].meta)
        self.win, self.step = cfg.audio.window, cfg.audio.step
        print(f"  synthetic statistics from {len(emb)} real frame vectors ({emb.shape[1]}-d) and {len(aud)} "
              f"audio windows ({aud.shape[1]}-d); Chromaprint {self.hz:.2f}/s", flush=True)

    def video(self, rng, tag: str, dur: float) -> VideoFeatures:
        t = int(dur)
        ts = np.arange(t, dtype=np.float32)
        ph = np.empty((t, 32), np.uint8)
        cur = rng.integers(0, 256, 32, dtype=np.uint8)
        for i in range(t):
            if rng.random() < 0.05:  # a cut
                cur = rng.integers(0, 256, 32, dtype=np.uint8)
            flip = np.packbits(rng.random(256) < 0.04)
            cur = cur ^ flip
            ph[i] = cur
        starts = np.arange(0.0, max(dur - self.win, 0.0) + 1e-6, self.step, dtype=np.float32) if dur >= self.win \
            else np.zeros(0, np.float32)
        win = np.stack([starts, starts + self.win], 1).astype(np.float32) if len(starts) else np.zeros((0, 2), np.float32)
        meta = dict(self.meta, duration=float(dur), source="synthetic")
        return VideoFeatures(video_id=vid_of(tag), uri=f"/synthetic/{tag}.mp4", timestamps=ts,
                             embeddings=ar1(self.frames, rng, t), phash=ph, audio_windows=win,
                             audio_vectors=ar1(self.audio, rng, len(win), rho=0.8),
                             chromaprint=rng.integers(0, 2 ** 32, int(dur * self.hz), dtype=np.uint32),
                             chromaprint_hz=self.hz, meta=meta)

    def near_dup(self, rng, src: VideoFeatures, tag: str) -> VideoFeatures:
        def noisy(x, sigma):
            return unit(x + rng.normal(0, sigma, x.shape).astype(np.float32)) if len(x) else x

        flip = np.packbits(rng.random((len(src.phash), 256)) < 0.05, axis=1)
        cp = src.chromaprint ^ (rng.random(len(src.chromaprint)) < 0.1).astype(np.uint32) << np.uint32(3)
        return VideoFeatures(video_id=vid_of(tag), uri=f"/synthetic/{tag}.mp4", timestamps=src.timestamps.copy(),
                             embeddings=noisy(src.embeddings, 0.0175), phash=src.phash ^ flip,
                             audio_windows=src.audio_windows.copy(),
                             audio_vectors=noisy(src.audio_vectors, 0.3 / math.sqrt(max(src.audio_vectors.shape[1], 1))),
                             chromaprint=cp, chromaprint_hz=src.chromaprint_hz,
                             meta=dict(src.meta, bitrate=int(src.meta.get("bitrate") or 500000) // 2))

    def partial(self, rng, src: VideoFeatures, tag: str) -> VideoFeatures:
        t = len(src.timestamps)
        n = max(10, int(t * rng.uniform(0.3, 0.6)))
        a = int(rng.integers(0, max(t - n, 0) + 1))
        w = (src.audio_windows[:, 0] >= a) & (src.audio_windows[:, 1] <= a + n)
        c0, c1 = int(a * src.chromaprint_hz), int((a + n) * src.chromaprint_hz)
        return VideoFeatures(video_id=vid_of(tag), uri=f"/synthetic/{tag}.mp4",
                             timestamps=src.timestamps[a:a + n] - a, embeddings=src.embeddings[a:a + n].copy(),
                             phash=src.phash[a:a + n].copy(), audio_windows=src.audio_windows[w] - a,
                             audio_vectors=src.audio_vectors[w].copy(), chromaprint=src.chromaprint[c0:c1].copy(),
                             chromaprint_hz=src.chromaprint_hz, meta=dict(src.meta, duration=float(n)))


# ----------------------------------------------------------------------------- building

def make_media(media: Path) -> tuple[list[Path], dict[Path, Path]]:
    """N_REAL real-looking sources (10-30 s) and one re-encoded copy of each (the query files)."""
    from tests.media import make_copy, make_video

    src_dir, q_dir = media / "sources", media / "queries"
    kinds = [("mandelbrot", "music"), ("life", "music"), ("testsrc2", "sine"), ("gradients", "noise"),
             ("cellauto", "music"), ("boxes", "music")]
    done = media / "done"
    srcs, queries = [], {}
    if not done.exists():
        shutil.rmtree(media, ignore_errors=True)
        src_dir.mkdir(parents=True)
        q_dir.mkdir(parents=True)
    for i in range(N_REAL):
        s, q = src_dir / f"real{i}.mp4", q_dir / f"real{i}_query.mp4"
        if not done.exists():
            kind, audio = kinds[i % len(kinds)]
            make_video(s, seconds=10 + 4 * i, size=(320, 240), source=kind, audio=audio, seed=i + 1)
            make_copy(s, q, vf="scale=240:180", crf=32)
        srcs.append(s)
        queries[q] = s
    done.write_text("ok")
    return srcs, queries


def bench_media(bench: Path) -> tuple[list[Path], dict[Path, Path]]:
    """The sources of a dev benchmark (../shared/bench/make_bench.py output: real photos, footage,
    music and speech) and its query files that copy exactly one source (truth.csv), query -> source."""
    import csv

    srcs = sorted((bench / "sources").glob("*.mp4"))
    if not srcs:
        raise SystemExit(f"--real {bench}: no sources/*.mp4 (build it with ../shared/bench/make_bench.py)")
    rows: dict[str, set[str]] = {}
    with open(bench / "truth.csv", newline="") as f:
        for r in csv.DictReader(f):
            rows.setdefault(r["query_id"], set()).add(r["source_id"])
    queries = {bench / "queries" / f"{q}.mp4": bench / "sources" / f"{next(iter(s))}.mp4"
               for q, s in sorted(rows.items()) if len(s) == 1}
    return srcs, {q: s for q, s in queries.items() if q.is_file() and s.is_file()}


def cfg_for(cache: Path, n: int, uri: str, **extra):
    ov = {"data_dir": str(cache / f"n{n}"), "milvus_uri": uri, "collection_prefix": f"lib{n}",
          "pipeline": {"dashboard": False, "decode_concurrency": 1}, "log": {"level": "WARNING"}}
    ov.update(extra)
    return load_config(overrides=ov)


def wait_indexed(cfg, timeout_s: float) -> float:
    """Wait up to ``timeout_s`` for the server to index every row of the N's frame and audio
    collections; the share ready when it returns. A standalone server indexes new segments in
    the background, and a search before that times brute-force scans of the unindexed ones; a
    server started with another segment size compacts and builds the indexes again while reporting
    every row indexed (docs/scaling.md, tenth round): ``VectorStore.index_progress``'s ``ready``."""
    from astradup.catalog import Catalog

    vs = Catalog(cfg).vectors
    t0, last = time.time(), 0.0
    try:
        while True:
            p = vs.index_progress().values()
            rows, ready, pending = (sum(x[k] for x in p) for k in ("rows", "ready", "pending"))
            share = ready / rows if rows else 1.0
            if share >= 1.0 or time.time() - t0 >= timeout_s:
                return share
            if time.time() - last >= 60:
                print(f"  waiting for Milvus to index {cfg.collection_prefix}: {ready:,} of {rows:,} rows ready, "
                      f"{pending:,} waiting for an index build", flush=True)
                last = time.time()
            time.sleep(10)
    finally:
        vs.close()


def loaded_segments(cfg) -> dict[str, list[int]]:
    """Rows of each loaded segment of the N's frame and audio collections: a standalone server
    searches every segment's index in turn for each query row, so the KNN grows with their count
    (docs/scaling.md, segment size)."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri=cfg.milvus_uri, token=cfg.milvus_token or "root:Milvus")
    try:
        return {kind: sorted((int(x.num_rows) for x in client.list_loaded_segments(
                    f"{cfg.collection_prefix}_{kind}")), reverse=True)
                for kind in ("frames", "audio") if client.has_collection(f"{cfg.collection_prefix}_{kind}")}
    finally:
        client.close()


def build_library(n: int, cfg, srcs: list[Path], seed: int, planted_frac: float) -> dict:
    from astradup.catalog import Catalog
    from astradup.io.ids import content_id
    from astradup.pipeline import index

    t0 = time.time()
    shutil.rmtree(cfg.data_dir, ignore_errors=True)
    catalog = Catalog(cfg)
    catalog._vectors = catalog._open_vectors(recreate=True)  # a previous half-built collection goes
    rep = index([str(p) for p in srcs], cfg, catalog=catalog)
    if rep.indexed != len(srcs):
        raise SystemExit(f"real sources: {rep.summary()}")
    real_ids = {str(p): content_id(str(p)) for p in srcs}
    real = list(catalog.shards.load_features(list(real_ids.values())).values())
    t_real = time.time() - t0
    syn = Synth(real, cfg, catalog.vectors.projection)
    rng = np.random.default_rng(seed)
    n_syn = n - len(srcs)
    n_groups = int(n_syn * planted_frac / 3)
    n_plain = n_syn - 3 * n_groups
    durs = np.exp(rng.uniform(math.log(10), math.log(600), n_syn + n_groups))
    groups, batch, written, frames = [], [], 0, 0

    def put(f: VideoFeatures):
        nonlocal written, frames
        batch.append(f)
        written += 1
        frames += len(f.embeddings)
        if len(batch) >= 100:
            catalog.write(batch)
            batch.clear()

    k = 0
    for g in range(n_groups):
        src = syn.video(rng, f"{n}-g{g}-src", float(durs[k]))
        k += 1
        nd, pc = syn.near_dup(rng, src, f"{n}-g{g}-dup"), syn.partial(rng, src, f"{n}-g{g}-part")
        groups.append([src.video_id, nd.video_id, pc.video_id])
        for f in (src, nd, pc):
            put(f)
    for i in range(n_plain):
        put(syn.video(rng, f"{n}-v{i}", float(durs[k])))
        k += 1
        if written % 1000 == 0:
            print(f"    {written}/{n_syn} synthetic written ({time.time() - t0:.0f} s)", flush=True)
    if batch:
        catalog.write(batch)
    catalog.vectors.close()
    info = {"version": BUILD_VERSION, "n": n, "real_ids": real_ids, "groups": groups, "synthetic": n_syn,
            "frames": frames + sum(len(f.embeddings) for f in real), "build_s": time.time() - t0,
            "real_index_s": t_real}
    (Path(cfg.data_dir) / "library.json").write_text(json.dumps(info))
    print(f"  built N={n}: {len(srcs)} real + {n_syn} synthetic ({n_groups} planted groups), "
          f"{info['frames']} frames, {info['build_s']:.0f} s", flush=True)
    return info


def cached(cfg, n: int) -> dict | None:
    p = Path(cfg.data_dir) / "library.json"
    if not p.exists():
        return None
    info = json.loads(p.read_text())
    if info.get("version") != BUILD_VERSION:
        return None
    try:
        from astradup.catalog import Catalog

        c = Catalog(cfg)
        counts = c.vectors.count()
        c.vectors.close()
        if not counts or not sum(counts.values()):
            return None
    except Exception as e:  # noqa: BLE001 - a server that lost its data: rebuild
        print(f"  cache for N={n} unusable ({str(e)[:80]}): rebuilding")
        return None
    return info


# ----------------------------------------------------------------------------- measuring

REPLICA = r"""
import json, sys, time
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
from astradup.config import load_config
from astradup.catalog import Catalog
from astradup.search import Searcher
t1 = time.perf_counter()
cfg = load_config(overrides=json.loads({ov!r}))
s = Searcher(cfg, Catalog(cfg))
s.search_indexed({vid!r})
t2 = time.perf_counter()
rss = hwm = 0
for line in open('/proc/self/status'):
    if line.startswith('VmRSS:'): rss = int(line.split()[1]) / 1024
    if line.startswith('VmHWM:'): hwm = int(line.split()[1]) / 1024
print(json.dumps({{"import_s": t1 - t0, "startup_s": t2 - t1, "rss_mb": rss, "hwm_mb": hwm}}))
"""


def replica(cfg, vid: str) -> dict:
    ov = {"data_dir": cfg.data_dir, "milvus_uri": cfg.milvus_uri, "collection_prefix": cfg.collection_prefix,
          "shards_dir": cfg.shards_dir, "s3_endpoint": cfg.s3_endpoint, "log": {"level": "WARNING"}}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", REPLICA.format(root=str(ROOT), ov=json.dumps(ov), vid=vid)],
                         capture_output=True, text=True, timeout=600, cwd=str(ROOT))
    if out.returncode:
        return {"error": out.stderr[-500:]}
    r = json.loads(out.stdout.strip().splitlines()[-1])
    r["process_s"] = time.perf_counter() - t0
    return r


def measure_search(cfg, info: dict, queries: dict[Path, Path], reps: int, n_ids: int, seed: int) -> dict:
    from astradup.catalog import Catalog
    from astradup.search import Searcher

    s = Searcher(cfg, Catalog(cfg))
    whole, post, knn, score, hits = [], [], [], [], 0
    items = sorted(queries.items())
    s.search_file(str(items[0][0]))  # warm: model, collections, shard index
    for r in range(reps):
        for q, src in items:
            t0 = time.perf_counter()
            qq = s.query_from_file(str(q))
            t1 = time.perf_counter()
            # The service's search (Searcher.search_common, include_none false) in its two timed
            # parts: candidates no row came close to dropped, then those whose full vectors cannot
            # reach a label or a segment left unscored, common segments left out.
            found = s.knn(qq, pruned=True)
            t2 = time.perf_counter()
            ms = [m for m in s.score(qq, found.candidates, pruned=True, common=found.common) if m.reportable]
            t3 = time.perf_counter()
            whole.append(t3 - t0)
            post.append(t3 - t1)
            knn.append(t2 - t1)
            score.append(t3 - t2)
            if r == 0:
                hits += int(bool(ms) and ms[0].source_id == info["real_ids"][str(src)])
    rng = np.random.default_rng(seed)
    pool = [g[0] for g in info["groups"]] + [vid_of(f"{info['n']}-v{i}") for i in range(50)]
    ids = list(rng.choice(pool, min(n_ids, len(pool)), replace=False))
    s.search_indexed(ids[0])
    by_id = []
    for v in ids:
        t0 = time.perf_counter()
        s.search_indexed(str(v))
        by_id.append(time.perf_counter() - t0)
    s.catalog.vectors.close()
    return {"whole_p50": pct(whole, 50), "whole_p95": pct(whole, 95), "post_p50": pct(post, 50),
            "post_p95": pct(post, 95), "knn_p50": pct(knn, 50), "score_p50": pct(score, 50),
            "id_p50": pct(by_id, 50), "id_p95": pct(by_id, 95), "recall1": hits / len(items), "n_queries": len(items),
            "n_query_searches": len(whole), "n_id_searches": len(by_id)}


def measure_dedup(cfg, info: dict, sample: int, seed: int, kill_resume: bool = False, incr: bool = False) -> dict:
    """The dedup job (run_job, Ray Data actors, one per CPU) over the library. With ``sample`` <
    N, every id but a sample (whole planted groups in their share, the rest plain videos) is first
    recorded as joined in the job's manifest, so the job searches only the sample, each search
    still against the whole library; recall then counts the planted pairs with a sampled member."""
    from astradup.catalog import Catalog
    from astradup.dedup.job import live_ids, run_job
    from astradup.dedup.store import dedup_dir, read_pairs

    root = dedup_dir(cfg)
    _clear_job(root)
    build = refresh_local_index(cfg)
    base = join_baseline(cfg, info, seed)
    searched = None
    if sample and sample < info["n"]:
        live = sorted(live_ids(Catalog(cfg).shards))
        rng = np.random.default_rng(seed)
        k_groups = min(len(info["groups"]), max(1, int(round(sample * 3 * len(info["groups"]) / info["n"] / 3))))
        searched = {v for g in info["groups"][:k_groups] for v in g}
        rest = [v for v in live if v not in searched]
        searched |= set(rng.choice(rest, max(0, sample - len(searched)), replace=False).tolist())
        pre = [v for v in live if v not in searched]
        _pre_join(root, pre)
    else:
        pre = None
    t0 = time.time()
    ticks: list[tuple[float, int]] = []  # (seconds since the start, videos joined) after each batch
    summ = run_job(cfg, batch_size=25, progress=lambda m: None,
                   tick=lambda done, total: ticks.append((time.time() - t0, done)))
    wall = time.time() - t0
    steady = running_rate(ticks)
    pairs = read_pairs(cfg)
    extra = {}
    if kill_resume:
        kr = killed_then_resumed(cfg, pre, summ.batches_total)
        extra = {"kill_batches": kr["killed_with_batches"], "kill_of": summ.batches_total,
                 "kill_resumed": kr["resumed_searched"], "kill_same_pairs": kr["pairs"] == set(pairs),
                 "kill_pairs": len(kr["pairs"])}
    if incr:
        extra.update(incremental(cfg, info, seed, wall / max(len(summ.searched), 1), build["knn_build_s"]))
    truth = set()
    for g in info["groups"]:
        for i in range(len(g)):
            for j in range(i + 1, len(g)):
                if searched is None or g[i] in searched or g[j] in searched:
                    truth.add(tuple(sorted((g[i], g[j]))))
    real = set(info["real_ids"].values())
    out = {"videos": len(summ.searched), "sampled": searched is not None, "wall_s": wall, "videos_per_s": len(summ.searched) / max(wall, 1e-9),
           "pairs": len(pairs), **build, **base, **extra}
    if steady is not None:
        out.update(running_vps=steady[0], startup_s=steady[1])
    # a whole run: the index read once, the job started, then every video joined at the rate once running
    per_video = 1 / steady[0] if steady is not None else wall / max(len(summ.searched), 1)
    out["full_run_vps"] = info["n"] / (build["knn_build_s"] + (steady[1] if steady else 0.0) + info["n"] * per_video)
    for name, keep in [("any", lambda m: True),
                       ("near", lambda m: m.label in ("duplicate", "near-duplicate"))]:
        pred = {tuple(sorted(k)) for k, (_, m) in pairs.items() if keep(m) and not (set(k) & real)}
        tp = len(pred & truth)
        out[f"recall_{name}"] = tp / max(len(truth), 1)
        out[f"precision_{name}"] = tp / max(len(pred), 1)
        out[f"pred_{name}"] = len(pred)
    out["true_pairs"] = len(truth)
    return out


def running_rate(ticks: list[tuple[float, int]]) -> tuple[float, float] | None:
    """(videos/s between the first and the last finished batch, seconds until the first one
    finished) from the job's ``tick``s; None with fewer than three batches. A sampled job's wall
    time is mostly Ray's and the actors' start (~20 s on two cores), paid once per run, which a
    whole-library run spreads over every video."""
    done = [(t, n) for t, n in ticks if n > 0]
    if len(done) < 3 or done[-1][0] <= done[0][0]:
        return None
    return (done[-1][1] - done[0][1]) / (done[-1][0] - done[0][0]), done[0][0]


def _clear_job(root: Path) -> None:
    """The job's output gone, its local KNN index (dedup/local_knn.py, read from Milvus) kept."""
    if root.exists():
        for p in root.iterdir():
            if p.name != "knn":
                shutil.rmtree(p) if p.is_dir() else p.unlink()


def refresh_local_index(cfg) -> dict:
    """Time the local KNN index's refresh (every vector read from Milvus the first time; up to date
    afterwards) before the job, which then finds it current: the build and the join are reported apart."""
    from astradup.catalog import Catalog
    from astradup.dedup import local_knn
    from astradup.dedup.job import live_ids
    from astradup.dedup.store import dedup_dir

    if cfg.dedup.knn != "local":
        return {"knn_build_s": 0.0, "knn_rows": 0}
    cat = Catalog(cfg)
    live = set(live_ids(cat.shards))
    knn = dedup_dir(cfg) / "knn"
    t0 = time.time()
    local_knn.refresh(cat.vectors, knn, live, say=lambda m: print("   ", m, flush=True), fresh=True)
    took = time.time() - t0
    cat.vectors.close()
    meta = json.loads((knn / (knn / "CURRENT").read_text() / "meta.json").read_text())
    return {"knn_build_s": took, "knn_rows": meta["rows"]}


def _pre_join(root: Path, pre: list[str]) -> None:
    """Record ``pre`` as joined (the sampled job searches only the others)."""
    from astradup.dedup.store import Manifest, write_part

    root.mkdir(parents=True, exist_ok=True)
    rel = write_part(root, "pre-joined", [])
    Manifest.load(root).append(root, "pre-joined", {"ids": pre, "part": rel, "pairs": 0, "at": time.time()})


def killed_then_resumed(cfg, pre: list[str] | None, batches: int) -> dict:
    """``python -m jobs.dedup`` (its own local Ray) SIGKILLed once half its batches are in the
    manifest, then the job run again here: the pairs it ends with, and how far the first got."""
    import signal

    from astradup.dedup.job import run_job
    from astradup.dedup.store import MANIFEST, dedup_dir, read_pairs

    root = dedup_dir(cfg)
    _clear_job(root)
    if pre:
        _pre_join(root, pre)
    args = [sys.executable, "-m", "jobs.dedup", "--data-dir", cfg.data_dir, "--milvus-uri", cfg.milvus_uri,
            "--collection-prefix", cfg.collection_prefix, "--shards", cfg.resolved_shards_dir, "--batch-size", "25"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(PYTHONPATH=str(ROOT), ASTRADUP_PIPELINE__DASHBOARD="false", ASTRADUP_LOG__LEVEL="WARNING")
    proc = subprocess.Popen(args, cwd=str(ROOT), env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = (1 if pre else 0) + max(1, batches // 2)
    t0 = time.time()
    done_at_kill = 0
    while proc.poll() is None and time.time() - t0 < 3600:
        try:
            done_at_kill = len((root / MANIFEST).read_text().splitlines())
        except FileNotFoundError:
            done_at_kill = 0
        if done_at_kill >= target:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.2)
    proc.wait()
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its Ray processes
    except ProcessLookupError:
        pass
    t1 = time.time()
    summ = run_job(cfg, batch_size=25, progress=lambda m: None)
    return {"killed_with_batches": done_at_kill - (1 if pre else 0), "resumed_searched": len(summ.searched),
            "resume_s": time.time() - t1, "pairs": set(read_pairs(cfg))}


def incremental(cfg, info: dict, seed: int, full_s_per_video: float, build_s: float = 0.0, share: float = 0.01) -> dict:
    """``share`` of N new synthetic videos written after a finished job, then the job again (it joins
    only them, each against the whole library); they are deleted afterwards so the cached library
    stays as built. Its time (reading the new videos' vectors into the local KNN index included)
    against the full run's (index build + measured rate x N)."""
    from astradup.catalog import Catalog
    from astradup.dedup.job import live_ids, run_job

    cat = Catalog(cfg)
    real = list(cat.shards.load_features(list(info["real_ids"].values())).values())
    syn = Synth(real, cfg, cat.vectors.projection)
    rng = np.random.default_rng(seed + 7)
    n_new = max(1, int(round(info["n"] * share)))
    durs = np.exp(rng.uniform(math.log(10), math.log(600), n_new))
    new = [syn.video(rng, f"{info['n']}-new{seed}-{i}", float(d)) for i, d in enumerate(durs)]
    cat.write(new)
    cat.vectors.close()
    try:
        t0 = time.time()
        summ = run_job(cfg, batch_size=25, progress=lambda m: None)
        took = time.time() - t0
    finally:
        cat = Catalog(cfg)
        cat.remove_many([f.video_id for f in new])  # one status pass, a delete per collection per 500 ids
        cat.vectors.close()
    full_s = build_s + full_s_per_video * len(live_ids(Catalog(cfg).shards))  # the local index's build included
    return {"incr_new": n_new, "incr_searched": len(summ.searched), "incr_s": took, "incr_full_est_s": full_s,
            "incr_ratio": took / max(full_s, 1e-9)}


def join_baseline(cfg, info: dict, seed: int, n: int = 100) -> dict:
    """The same ``n`` videos joined in this one process both ways: one search per video (the job
    before this change: every candidate scored, the video's own rows excluded) and one batched
    self-join per 25 (``Searcher.join_indexed``, what the job's actors run). Same pairs expected."""
    from astradup.catalog import Catalog
    from astradup.dedup.job import live_ids
    from astradup.search import Query, Searcher

    s = Searcher(cfg, Catalog(cfg))
    rng = np.random.default_rng(seed + 1)
    ids = sorted(rng.choice(sorted(live_ids(s.catalog.shards)), min(n, info["n"]), replace=False).tolist())
    feats = s.catalog.shards.load_features(ids)
    s.join_indexed({v: feats[v] for v in ids[:5]})  # warm
    t0 = time.perf_counter()
    one = {}
    for v in ids:  # as before pruning: every candidate scored, then the unlabelled ones dropped
        q = Query(feats[v], None)
        ms = s.score(q, s.candidates(q, exclude=v))
        one[v] = [m for m in ms if m.label != "none" or m.segments][: cfg.search.top]
    t1 = time.perf_counter()
    batched = {}
    for i in range(0, len(ids), 25):
        batched.update(s.join_indexed({v: feats[v] for v in ids[i:i + 25]}))
    t2 = time.perf_counter()
    local = {}
    if cfg.dedup.knn == "local":
        from astradup.dedup.local_knn import LocalKnn
        from astradup.dedup.store import dedup_dir

        knn = LocalKnn.open(dedup_dir(cfg) / "knn", s.catalog.vectors.projection, cfg.dedup.nprobe,
                            s.catalog.vectors.merge_rows)
        s.join_indexed({v: feats[v] for v in ids[:5]}, knn=knn)  # warm
        t3 = time.perf_counter()
        for i in range(0, len(ids), 25):
            local.update(s.join_indexed({v: feats[v] for v in ids[i:i + 25]}, knn=knn))
        t4 = time.perf_counter()
    key = lambda d: {(v, m.source_id, m.label) for v, ms in d.items() for m in ms}  # noqa: E731
    s.catalog.vectors.close()
    out = {"base_n": len(ids), "base_per_video_vps": len(ids) / (t1 - t0), "base_batched_vps": len(ids) / (t2 - t1),
           "base_same_pairs": key(one) == key(batched), "base_pairs": len(key(one))}
    if local:
        out.update(base_local_vps=len(ids) / (t4 - t3), base_local_same=key(local) == key(batched),
                   base_local_pairs=len(key(local)), base_local_common=len(key(local) & key(batched)))
    return out


def s3_copy(cfg, n: int, endpoint: str) -> str:
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}, skip_instance_cache=True)
    bucket = f"lib{n}"
    if not fs.exists(bucket):
        fs.mkdir(bucket)
    fs.put(str(Path(cfg.resolved_shards_dir)) + "/", f"{bucket}/shards/", recursive=True)
    return f"s3://{bucket}/shards"


# ----------------------------------------------------------------------------- main

def growth(v: float, base: float, n: int, n0: int) -> str:
    if not (base > 0 and v > 0) or n <= n0:
        return "-"
    r = v / base
    return f"x{r:.2f} (x{r ** (1 / math.log10(n / n0)):.2f}/10x)"


def baseline_overrides(items: list[str], ap: argparse.ArgumentParser) -> dict:
    """``section.key=value`` items as config overrides (values read as YAML: 1.0, true, [a])"""
    import yaml

    ov: dict = {}
    for item in items:
        key, eq, val = item.partition("=")
        path = key.split(".")
        if not eq or not all(path):
            ap.error(f"--baseline-set {item!r}: takes SECTION.KEY=VALUE")
        d = ov
        for part in path[:-1]:
            d = d.setdefault(part, {})
        d[path[-1]] = yaml.safe_load(val)
    return ov


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000", help="library sizes, comma separated")
    ap.add_argument("--warmup", type=int, default=100, help="baseline size measured first (0 = none)")
    ap.add_argument("--cache", default="", help="where libraries are kept (default benchmarks/out/library_scale, "
                    "or library_scale_<name> with --real)")
    ap.add_argument("--real", default="", help="a dev benchmark dir (make_bench.py --out): its sources are the "
                    "real videos and the synthetic statistics' origin, its single-source queries the query files "
                    "(default: 6 generated test-pattern videos, whose narrow statistics make the filler look alike)")
    ap.add_argument("--s3", action="store_true", help="also search with the shards on a moto S3 server")
    ap.add_argument("--planted", type=float, default=0.15, help="share of synthetic videos in planted groups")
    ap.add_argument("--reps", type=int, default=3, help="searches per real query file")
    ap.add_argument("--ids", type=int, default=30, help="searches by indexed id")
    ap.add_argument("--no-dedup", action="store_true")
    ap.add_argument("--kill-resume", action="store_true",
                    help="also SIGKILL a dedup job halfway, resume it and compare its pairs with the uninterrupted run's")
    ap.add_argument("--incremental", action="store_true",
                    help="also time a dedup run after adding 1%% new videos (removed afterwards) against the full run")
    ap.add_argument("--build-only", action="store_true", help="build (or find) the libraries, measure nothing")
    ap.add_argument("--dedup-sample", type=int, default=2000,
                    help="at a larger N the dedup job searches this many videos (against the whole library)")
    ap.add_argument("--milvus-uri", default="", help="a running Milvus server that holds the cache's collections "
                    "(else one is started on the cache's milvus/ dir)")
    ap.add_argument("--milvus-set", action="append", default=[], metavar="KEY=VALUE",
                    help="a setting of the server this script starts, by its milvus.yaml key (repeatable), say "
                         "dataCoord.segment.maxSize=2048 (docs/scaling.md: segment size and KNN time)")
    ap.add_argument("--index-wait", type=float, default=0.0,
                    help="seconds to wait per N for Milvus to index every row before measuring")
    ap.add_argument("--baseline-set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="also measure the searches with this AstraDup setting (repeatable), say "
                         "vectors.merge_rows=1.0, just before the configured ones: the before/after in one run")
    ap.add_argument("--json", default="")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",") if x]
    all_sizes = sorted({*sizes, *([args.warmup] if args.warmup else [])})
    real = Path(args.real).resolve() if args.real else None
    default_cache = ROOT / "benchmarks" / "out" / (f"library_scale_{real.name}" if real else "library_scale")
    cache = Path(args.cache or default_cache).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    t_all = time.time()
    print(f"# library scale {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: sizes {all_sizes}, "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; cache {cache}", flush=True)
    srcs, queries = bench_media(real) if real else make_media(cache / "media")
    from tests.milvus_harness import MilvusHarness

    pairs = [kv.partition("=") for kv in args.milvus_set]
    if any(not k or not eq or not v for k, eq, v in pairs):
        ap.error("--milvus-set takes KEY=VALUE")
    settings = {k: v for k, _, v in pairs}
    base_ov = baseline_overrides(args.baseline_set, ap)
    server = None if args.milvus_uri else MilvusHarness(cache / "milvus", settings)
    uri = args.milvus_uri or server.start()
    where = "given" if server is None else f"data in {cache / 'milvus'}"
    print(f"  Milvus server {uri} ({where})", flush=True)
    stack, endpoint = contextlib.ExitStack(), None
    results = {}
    try:
        for n in all_sizes:
            cfg = cfg_for(cache, n, uri)
            info = cached(cfg, n)
            if info is None:
                info = build_library(n, cfg, srcs, args.seed + n, args.planted)
            else:
                print(f"  N={n}: cached library ({info['frames']} frames, built in {info['build_s']:.0f} s)", flush=True)
            if args.build_only:
                continue
            share = wait_indexed(cfg, args.index_wait)
            if share < 1.0:
                print(f"  WARNING N={n}: Milvus has indexed {share:.0%} of the vectors; the rest is searched by "
                      "brute force, so the KNN figures are not the index's", flush=True)
            r = {"n": n, "frames": info["frames"], "build_s": info["build_s"]}
            r["indexed_share"] = share
            if base_ov:
                r["search_base"] = measure_search(cfg_for(cache, n, uri, **base_ov), info, queries, args.reps,
                                                  args.ids, args.seed)
                r["baseline_set"] = args.baseline_set
            r["search"] = measure_search(cfg, info, queries, args.reps, args.ids, args.seed)
            r["segments"] = loaded_segments(cfg)  # loaded by the searches
            r["replica"] = replica(cfg, info["groups"][0][0] if info["groups"] else next(iter(info["real_ids"].values())))
            if not args.no_dedup:
                r["dedup"] = measure_dedup(cfg, info, args.dedup_sample, args.seed, args.kill_resume, args.incremental)
            if args.s3:
                if endpoint is None:
                    from tests.moto_process import moto_server

                    endpoint = stack.enter_context(moto_server())  # its own process: no GIL shared with the reads
                root = s3_copy(cfg, n, endpoint)
                cfg3 = cfg_for(cache, n, uri, shards_dir=root, s3_endpoint=endpoint)
                r["s3_search"] = measure_search(cfg3, info, queries, args.reps, args.ids, args.seed)
                r["s3_replica"] = replica(cfg3, info["groups"][0][0])
            results[n] = r
            report(r, results.get(args.warmup) if args.warmup and n != args.warmup else None, args.warmup)
    finally:
        stack.close()
        if server is not None:
            server.stop()
    print(f"\n(total wall time {time.time() - t_all:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


def report(r: dict, base: dict | None, n0: int) -> None:
    n, s, rp = r["n"], r["search"], r["replica"]
    b = base or {}
    bs, brp = b.get("search", {}), b.get("replica", {})
    g = (lambda v, k, d=bs: growth(v, d.get(k, 0), n, n0)) if base else (lambda *a, **k: "-")
    print(f"\n== N = {n} videos ({r['frames']} frames; library built in {r['build_s']:.0f} s) ==")
    print(f"  real query files ({s['n_query_searches']} searches): whole p50 {s['whole_p50']:.0f} ms, "
          f"p95 {s['whole_p95']:.0f} ms {g(s['whole_p95'], 'whole_p95')}")
    print(f"    after extraction (KNN, candidate fetch, scoring, alignment): p50 {s['post_p50']:.0f} ms, "
          f"p95 {s['post_p95']:.0f} ms {g(s['post_p95'], 'post_p95')}  [KNN p50 {s['knn_p50']:.0f}, "
          f"fetch+score+align p50 {s['score_p50']:.0f}]")
    if r.get("segments"):
        print("  Milvus segments searched: " + "; ".join(
            f"{kind} {len(rows)} ({', '.join(f'{x:,}' for x in rows)} rows)" for kind, rows in r["segments"].items()))
    print(f"  search by indexed id ({s['n_id_searches']}): p50 {s['id_p50']:.0f} ms, p95 {s['id_p95']:.0f} ms "
          f"{g(s['id_p95'], 'id_p95')}")
    if "search_base" in r:
        sb = r["search_base"]
        ratio = lambda k: f"{s[k]:.0f} / {sb[k]:.0f} = x{s[k] / max(sb[k], 1e-9):.2f}"  # noqa: E731
        print(f"  against {' '.join(r['baseline_set'])} in this run (configured / baseline): after extraction "
              f"p50 {ratio('post_p50')}, p95 {ratio('post_p95')}; KNN p50 {ratio('knn_p50')}; by id p50 "
              f"{ratio('id_p50')}, p95 {ratio('id_p95')}; recall@1 {s['recall1']:.3f} / {sb['recall1']:.3f}")
    if "error" in rp:
        print(f"  replica: failed: {rp['error']}")
    else:
        print(f"  search replica start-up (Catalog + Searcher + first search, after {rp['import_s']:.1f} s of imports): "
              f"{rp['startup_s']:.1f} s {g(rp['startup_s'], 'startup_s', brp)}; RSS {rp['rss_mb']:.0f} MB "
              f"(peak {rp['hwm_mb']:.0f}) {g(rp['rss_mb'], 'rss_mb', brp)}")
    if "dedup" in r:
        d, bd = r["dedup"], b.get("dedup", {})
        print(f"  dedup job{' (sampled queries)' if d.get('sampled') else ''}: {d['videos']} videos in {d['wall_s']:.0f} s = {d['videos_per_s']:.1f} videos/s "
              f"{growth(1 / max(d['videos_per_s'], 1e-9), 1 / max(bd.get('videos_per_s', 0), 1e-9), n, n0) if bd else '-'} (per-video time); planted pairs ({d['true_pairs']}): recall {d['recall_any']:.3f}, precision "
              f"{d['precision_any']:.3f} (all {d['pred_any']} reported pairs); at >= near-duplicate recall "
              f"{d['recall_near']:.3f}, precision {d['precision_near']:.3f}")
        if "running_vps" in d:
            print(f"    once running: {d['running_vps']:.1f} videos/s between the first and the last finished batch "
                  f"(first batch after {d['startup_s']:.0f} s: Ray, the actors' catalogs, the first batch)")
    if "dedup" in r and "base_n" in r["dedup"]:
        d = r["dedup"]
        print(f"    same {d['base_n']} videos in one process: one search per video {d['base_per_video_vps']:.1f} videos/s, "
              f"batched self-join {d['base_batched_vps']:.1f} videos/s ({d['base_batched_vps'] / d['base_per_video_vps']:.1f}x); "
              f"same pairs: {d['base_same_pairs']} ({d['base_pairs']})")
        if "base_local_vps" in d:
            print(f"    batched self-join on the local KNN index: {d['base_local_vps']:.1f} videos/s "
                  f"({d['base_local_vps'] / d['base_batched_vps']:.1f}x the Milvus KNN's); same pairs as the Milvus KNN: "
                  f"{d['base_local_same']} ({d['base_local_common']} of {d['base_pairs']} shared, {d['base_local_pairs']} found)")
        if d.get("knn_rows"):
            print(f"    local KNN index: {d['knn_rows']} frame rows read from Milvus and indexed in {d['knn_build_s']:.0f} s; "
                  f"a whole run (index + {n} videos at the measured rate): {d['full_run_vps']:.1f} videos/s")
    if "dedup" in r and "kill_of" in r["dedup"]:
        d = r["dedup"]
        print(f"    SIGKILL after {d['kill_batches']} of {d['kill_of']} batches, re-run searched {d['kill_resumed']} videos: "
              f"same pairs as the uninterrupted run: {d['kill_same_pairs']} ({d['kill_pairs']})")
    if "dedup" in r and "incr_new" in r["dedup"]:
        d = r["dedup"]
        print(f"    incremental: {d['incr_new']} new videos (1%) joined in {d['incr_s']:.1f} s = {100 * d['incr_ratio']:.1f}% "
              f"of a full run ({d['incr_full_est_s']:.0f} s at the measured rate)")
    print(f"  recall@1 of the {s['n_queries']} real queries among the filler: {s['recall1']:.3f}")
    if "s3_search" in r:
        s3, r3 = r["s3_search"], r["s3_replica"]
        print(f"  shards on S3 (moto): query whole p50 {s3['whole_p50']:.0f} / p95 {s3['whole_p95']:.0f} ms, after "
              f"extraction p95 {s3['post_p95']:.0f} ms, by id p50 {s3['id_p50']:.0f} / p95 {s3['id_p95']:.0f} ms, "
              f"replica start-up {r3.get('startup_s', float('nan')):.1f} s, RSS {r3.get('rss_mb', float('nan')):.0f} MB, "
              f"recall@1 {s3['recall1']:.3f}")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
