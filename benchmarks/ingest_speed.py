"""Ingest speed on CPU: what each stage costs per media-second, decode alone, and the whole pipeline.

    .venv/bin/python benchmarks/ingest_speed.py --bench /work/benchdata/dev20 \
        [--files N] [--skip-pipeline] [--variants current,sscd288,embed_shares_cores,pyav_fast] [--quality] [--json OUT]

A. Stages, one process, one thread each (OMP_NUM_THREADS=1, decord and ONNX Runtime at 1 thread),
   CPU seconds of the process and its ffmpeg children per media-second, so "x realtime per core"
   = media seconds / CPU seconds, which a busy shared machine disturbs far less than wall time:
   probe; frame decoding (decord as the pipeline runs it, decord with its own threading, decord
   seeking per sample, decord at half size, the ffmpeg fallback pipe, PyAV sequential / skipping
   non-reference frames / also skipping the loop filter (decode.decoder = pyav_fast) / keyframes
   only, all through astradup.io.pyav_sampler.pyav_samples); audio decoding; pHash;
   blank-frame check; Chromaprint + MFCC windows; SSCD distilled at 288 and 224 px input; the
   pickling of what a decode task ships.
B. Decode alone at the pipeline's parallelism: one process per core, each decoding files
   (frames + audio, as decode_video does), wall time -> x realtime per core; once per
   decode.decoder (decord, the default, and pyav_fast).
C. The full pipeline (astradup.pipeline.index: Ray Data decode tasks -> SSCD actor -> Parquet +
   Milvus Lite) on the same files, Ray started beforehand (its start-up is printed, not counted),
   wall time -> x realtime per core, and as a fraction of B with the same decoder. Variants: ``current`` (the config's
   defaults: SSCD fed the 224 px frames as decoded); ``sscd288`` (SSCD's recommended 288 px input,
   the default before 2026-11-26); ``embed_shares_cores`` (current, and the CPU embed
   actor reserves no CPU, so every core runs a decode task and the embedder shares them: decoding
   is the larger cost, and a reserved core idles whenever the embedder waits for frames);
   ``pyav_fast`` (current with decode.decoder = pyav_fast: PyAV skipping non-reference frames and
   the loop filter).
D. ``--quality``: the bench scored offline (fingerprint_size.score_corpus) with SSCD at 288 and
   at 224 px input, to decide whether 224 may become the default (scores must stay within 0.01).

Every figure is a ratio against media time measured in the same run; the load average is printed
so figures from a busy machine can be read as such. The last lines are the pipeline's speed per
variant, the first variant's last.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy: one BLAS thread = per-core figures

import argparse  # noqa: E402
import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import pickle  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fingerprint_size import cpu_seconds  # noqa: E402

from astradup.config import DECODERS, load_config  # noqa: E402
from astradup.io.probe import probe, probe_ffprobe  # noqa: E402
from astradup.io.decode import decode_video  # noqa: E402
from astradup.io.frames import DecordReader, FFmpegReader, PyAVReader  # noqa: E402
from astradup.io.pcm import AudioPipe, decode_pcm  # noqa: E402
from astradup.io.sampling import frame_indices, sample_times  # noqa: E402
from astradup.records import VideoRef  # noqa: E402

SIZE = 224


# ------------------------------------------------------------------------------------------------
# frame decoders under test (the production ones come from astradup.io.frames)


def decord_per_sample(path: str, times: np.ndarray, size: int) -> np.ndarray:
    """One get_batch call per sampled frame: what a seek per sample costs."""
    import decord

    vr = decord.VideoReader(path, ctx=decord.cpu(0), width=size, height=size, num_threads=1)
    n = len(vr)
    ts = vr.get_frame_timestamp(np.arange(n))
    idx = frame_indices(ts[:, 0].astype(np.float64), ts[:, 1].astype(np.float64),
                        float(vr.get_avg_fps() or 0.0), times.astype(np.float64))
    out = [vr.get_batch([int(i)]).asnumpy()[0] for i in idx[idx >= 0]]
    del vr
    return np.stack(out) if out else np.zeros((0, size, size, 3), np.uint8)


def pyav_frames(path: str, times: np.ndarray, size: int, skip: str | None = None,
                no_loop_filter: bool = False) -> np.ndarray:
    """Sequential PyAV decode, one thread; the frame on screen at each sample time is converted.
    The pipeline's own sampler (astradup.io.pyav_sampler.pyav_samples, decode.decoder = pyav_fast is
    "NONREF" + no loop filter) with other things left out:

    ``skip="NONREF"`` drops frames no other frame references (most B-frames): the sample then takes
    the last decoded frame, at most a few frames (~0.1 s) early. ``skip="NONKEY"`` decodes
    keyframes only, so samples between keyframes repeat the last one (the effective rate is
    printed). ``no_loop_filter`` skips H.264's deblocking, slightly changing the pixels.
    """
    return PyAVReader(skip_frame=skip, skip_loop_filter=no_loop_filter).read(path, times, size)


def ffmpeg_frames_1thread(path: str, times: np.ndarray, size: int) -> np.ndarray:
    """The fallback pipe with one decoder thread (as in a 1-CPU task)."""
    vf = f"setpts=PTS-{0.5:.6f}/TB,fps=1:round=up,scale={size}:{size}"
    cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-threads", "1", "-i", path, "-map", "0:v:0",
           "-an", "-sn", "-vf", vf, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, size, size, 3)


# ------------------------------------------------------------------------------------------------
# A. stages


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    c0 = cpu_seconds()
    r = fn()
    return r, cpu_seconds() - c0


def stage_table(files: list[str], metas: list[dict], media: float) -> dict[str, dict]:
    from astradup.config import AudioConfig
    from astradup.features.audio import audio_features
    from astradup.features.embedder import SSCDOnnxEmbedder
    from astradup.features.extract import blank_frames
    from astradup.features.phash import phash_frames

    rows: dict[str, dict] = {}

    def add(name: str, cpu: float, note: str = "") -> None:
        rows[name] = {"cpu_s": cpu, "ms_per_media_s": 1000 * cpu / media, "x_per_core": media / cpu if cpu else 0.0,
                      "note": note}
        print(f"  {name:<38} {1000 * cpu / media:7.2f} ms/media-s  {media / cpu if cpu else 0:7.1f}x realtime per core"
              f"  {note}", flush=True)

    times = [sample_times(m["duration"], 1.0) for m in metas]
    _, t = timed(lambda: [probe(f) for f in files])
    add("probe (pipeline: PyAV, ffprobe fallback)", t)
    _, t = timed(lambda: [probe_ffprobe(f) for f in files])
    add("probe: ffprobe process", t)
    frames = None
    variants: list[tuple[str, Callable[[str, np.ndarray], np.ndarray]]] = [
        ("frames: decord, 1 thread (pipeline)", lambda p, ts: DecordReader(threads=1).read(p, ts, SIZE)),
        ("frames: decord, own threads", lambda p, ts: DecordReader(threads=0).read(p, ts, SIZE)),
        ("frames: decord, one seek per sample", lambda p, ts: decord_per_sample(p, ts, SIZE)),
        ("frames: decord at 112 px", lambda p, ts: DecordReader(threads=1).read(p, ts, SIZE // 2)),
        ("frames: ffmpeg pipe, own threads", lambda p, ts: FFmpegReader(1.0).read(p, ts, SIZE)),
        ("frames: ffmpeg pipe, 1 thread", lambda p, ts: ffmpeg_frames_1thread(p, ts, SIZE)),
    ]
    try:
        import av  # noqa: F401

        variants += [
            ("frames: PyAV sequential", lambda p, ts: pyav_frames(p, ts, SIZE)),
            ("frames: PyAV skip non-ref", lambda p, ts: pyav_frames(p, ts, SIZE, "NONREF")),
            ("frames: PyAV skip non-ref + loop filter", lambda p, ts: pyav_frames(p, ts, SIZE, "NONREF", True)),
            ("frames: PyAV keyframes only", lambda p, ts: pyav_frames(p, ts, SIZE, "NONKEY")),
        ]
    except ImportError:
        print("  (PyAV not installed: its variants are skipped; pip install av)")
    for name, fn in variants:
        got, t = timed(lambda fn=fn: [fn(f, ts) for f, ts in zip(files, times)])
        note = ""
        if "keyframes" in name:
            uniq = sum(len({x.tobytes() for x in fr}) for fr in got)
            note = f"(only {uniq / media:.2f} distinct frames per second: keyframes are {media / max(uniq, 1):.1f} s apart)"
        add(name, t, note)
        if frames is None:
            frames = got
    pcms, t = timed(lambda: [decode_pcm(f, 11025, m["duration"], 0.0) if m.get("has_audio") else None
                             for f, m in zip(files, metas)])
    add("audio (pipeline: PyAV, pipe fallback)", t)
    _, t = timed(lambda: [AudioPipe(f, 11025, m["duration"], 0.0).result() if m.get("has_audio") else None
                          for f, m in zip(files, metas)])
    add("audio: ffmpeg pipe to 11025 Hz mono", t)
    _, t = timed(lambda: [phash_frames(fr) for fr in frames])
    add("pHash 256-bit", t)
    _, t = timed(lambda: [blank_frames(fr) for fr in frames])
    add("blank-frame check", t)
    acfg = AudioConfig()
    first = next((p for p in pcms if p is not None), None)
    if first is not None:
        audio_features(first[: 11025 * 8], 11025, acfg)  # librosa's first call compiles (numba): not per file
    _, t = timed(lambda: [audio_features(p, 11025, acfg) for p in pcms if p is not None])
    add("Chromaprint + MFCC windows", t)
    for side in (288, 224):
        emb = SSCDOnnxEmbedder("sscd_distilled", 32, "cpu", threads=1, short_side=side)
        emb.embed(frames[0][:2])
        _, t = timed(lambda emb=emb: [emb.embed(fr) for fr in frames])
        add(f"SSCD distilled, {side} px input", t)
    _, t = timed(lambda: [pickle.loads(pickle.dumps(fr, protocol=5)) for fr in frames])
    add("pickle + unpickle frames (task -> actor)", t)
    return rows


# ------------------------------------------------------------------------------------------------
# B. decode alone, one process per core


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _decode_only(args: tuple[str, str]) -> tuple[float, float, float]:
    """(media seconds, CPU seconds of this process, CPU seconds of its ffprobe/ffmpeg children) for
    probe + decode_video of one file with decode.decoder = the given one, as a pipeline decode task
    runs them."""
    path, decoder = args
    cfg = load_config(None, {"decode": {"decoder": decoder}})
    c0, k0 = time.process_time(), _children_cpu()
    meta = probe(path)
    d = decode_video(path, VideoRef("x", path, 0), cfg.decode, meta=meta)
    return float(d.meta.get("duration") or 0.0), time.process_time() - c0, _children_cpu() - k0


def decode_only(files: list[str], procs: int, decoder: str = "decord") -> tuple[float, float, float, float]:
    """(media s, wall s, CPU s, of which children's CPU s) of probe + decode_video over the files,
    one process per core, with decode.decoder = ``decoder``."""
    ctx = mp.get_context("spawn")
    with ctx.Pool(procs) as pool:
        pool.map(_decode_only, [(files[0], decoder)] * procs)  # start-up and imports are not decode time
        t0 = time.perf_counter()
        got = pool.map(_decode_only, [(f, decoder) for f in files], chunksize=1)
        wall = time.perf_counter() - t0
    return sum(g[0] for g in got), wall, sum(g[1] + g[2] for g in got), sum(g[2] for g in got)


# ------------------------------------------------------------------------------------------------
# C. the pipeline


def run_pipeline(files: list[str], variant: str, work: Path) -> dict:
    import astradup.pipeline as P
    from astradup.catalog import Catalog

    src = work / f"src-{variant}"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    for f in files:
        os.symlink(os.path.abspath(f), src / Path(f).name)
    data = work / f"data-{variant}"
    shutil.rmtree(data, ignore_errors=True)
    cfg = load_config(None, {"data_dir": str(data), "pipeline": {"dashboard": False},
                             **({"embedder": {"short_side": 288}} if variant == "sscd288" else {}),
                             **({"decode": {"decoder": "pyav_fast"}} if variant == "pyav_fast" else {})})
    saved = (P.EmbedStage, P.plan_embedder, P.build_dataset)
    held: dict = {}

    def capture(*a, **k):  # keep the dataset, whose stats hold each operator's CPU time
        held["ds"] = saved[2](*a, **k)
        return held["ds"]

    try:
        P.build_dataset = capture
        if variant == "embed_shares_cores":
            P.plan_embedder = lambda c, res: P.EmbedPlan("cpu", 0.0, 0.0, 1, 1)
        cat = Catalog(cfg)
        cat.vectors  # noqa: B018 - open Milvus Lite before the clock starts, as a running service has it
        c0 = time.process_time()
        t0 = time.perf_counter()
        rep = P.index([str(src)], cfg, catalog=cat)
        wall = time.perf_counter() - t0
        driver_cpu = time.process_time() - c0
        cat.vectors.close()
    finally:
        P.EmbedStage, P.plan_embedder, P.build_dataset = saved
    print(f"    {rep.summary()}", file=sys.stderr)
    ops = operator_cpu(held["ds"]) if "ds" in held else {}
    return {"media_s": rep.media_seconds, "wall_s": wall, "cpus": rep.cpus, "indexed": rep.indexed,
            "failed": len(rep.failed), "operator_cpu_s": ops, "driver_cpu_s": driver_cpu,
            "cpu_s": sum(ops.values()) + driver_cpu}


def operator_cpu(ds) -> dict[str, float]:
    """CPU seconds per Ray Data operator, read off the dataset's stats ("Remote cpu time ... total")."""
    import re

    out: dict[str, float] = {}
    op = None
    for line in ds.stats().splitlines():
        m = re.match(r"\s*Operator \d+ (.+?):", line)
        if m:
            op = m.group(1)
            continue
        m = re.search(r"Remote cpu time:.*?([\d.]+)(us|ms|s) total", line)
        if m and op and op not in out:
            out[op] = float(m.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[m.group(2)]
    return out


# ------------------------------------------------------------------------------------------------


def quality(bench: Path, cache: Path) -> dict:
    from fingerprint_size import extract_corpus, score_corpus

    from astradup.eval.segments_csv import read_rows

    cfg = load_config(None, {})
    c = extract_corpus(bench, cfg, (288, 224), cache)
    truth = read_rows(bench / "truth.csv")
    out = {}
    print(f"\n## D. SSCD input size on {bench.name} (offline scoring, every source a candidate)")
    print(f"  {'input':<8} recall@1  fusedAP  descAP     LCT   segAP   clean")
    for side in (288, 224):
        r = score_corpus(c.with_side(side), truth, cfg)
        out[side] = {k: r[k] for k in ("recall1", "fused_uap", "desc_uap", "lct", "seg_uap", "clean")}
        print(f"  {side:<8} {r['recall1']:8.3f} {r['fused_uap']:8.3f} {r['desc_uap']:7.3f} {r['lct']:7.3f} "
              f"{r['seg_uap']:7.3f} {r['clean']:7.3f}", flush=True)
    d = {k: out[224][k] - out[288][k] for k in out[288]}
    worst = min(d.values())
    print("  224 - 288: " + ", ".join(f"{k} {v:+.3f}" for k, v in d.items())
          + f" -> {'within' if worst >= -0.01 else 'NOT within'} 0.01")
    out["delta"] = d
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True)
    ap.add_argument("--files", type=int, default=0, help="first N sources only (0 = all)")
    ap.add_argument("--skip-pipeline", action="store_true")
    ap.add_argument("--skip-stages", action="store_true")
    ap.add_argument("--variants", default="current,sscd288,embed_shares_cores")
    ap.add_argument("--quality", action="store_true")
    ap.add_argument("--only-quality", action="store_true", help="section D alone")
    ap.add_argument("--cache", default="/tmp/astradup-fpcache")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    bench = Path(args.bench)
    files = sorted(str(p) for p in (bench / "sources").glob("*.mp4"))
    if args.files:
        files = files[: args.files]
    metas = [probe(f) for f in files]
    media = sum(m["duration"] for m in metas)
    ncpu = os.cpu_count() or 1
    out: dict = {"bench": str(bench), "files": len(files), "media_s": media, "cores": ncpu,
                 "load_avg_start": os.getloadavg()}
    print(f"# ingest speed: {len(files)} sources of {bench}, {media:.0f} s of media; {ncpu} cores; "
          f"load average {os.getloadavg()[0]:.1f} at start")

    if args.only_quality:
        q = quality(bench, Path(args.cache))
        d = q["delta"]
        print(f"SSCD 224 vs 288 on {bench.name}: " + ", ".join(f"{k} {v:+.3f}" for k, v in d.items()))
        return 0

    if not args.skip_stages:
        print("\n## A. stages, one thread, CPU time per media-second")
        rows = stage_table(files, metas, media)
        out["stages"] = rows
        cur = ["probe (pipeline: PyAV, ffprobe fallback)", "frames: decord, 1 thread (pipeline)",
               "audio (pipeline: PyAV, pipe fallback)",
               "pHash 256-bit", "blank-frame check", "Chromaprint + MFCC windows", "SSCD distilled, 224 px input",
               "pickle + unpickle frames (task -> actor)"]
        ms = sum(rows[k]["ms_per_media_s"] for k in cur)
        ms288 = ms - rows[cur[6]]["ms_per_media_s"] + rows["SSCD distilled, 288 px input"]["ms_per_media_s"]
        fast = "frames: PyAV skip non-ref + loop filter"
        ms_fast = ms - rows[cur[1]]["ms_per_media_s"] + rows[fast]["ms_per_media_s"] if fast in rows else float("nan")
        print(f"  sum, feature set as indexed now (SSCD 224): {ms:7.2f} ms/media-s = {1000 / ms:5.1f}x realtime per core")
        print(f"  sum, SSCD at 288 px (before):              {ms288:7.2f} ms/media-s = {1000 / ms288:5.1f}x realtime per core")
        print(f"  sum, now + PyAV non-ref/no deblock:        {ms_fast:7.2f} ms/media-s = {1000 / ms_fast:5.1f}x realtime per core")
        out["stage_sums_x_per_core"] = {"current": 1000 / ms, "sscd288": 1000 / ms288, "current_pyav": 1000 / ms_fast}

    # Ray's per-task CPU figures leave out child processes (an ffprobe or ffmpeg fallback); what
    # they cost per media-second is measured here, in the same code path, and added to C.
    # Each decode.decoder (decord, the default; pyav_fast) alone: a pipeline variant is compared
    # with decode-only under its own decoder.
    print(f"\n## B. decode alone (probe + frames + audio, decode_video), {ncpu} processes")
    out["decode_only"] = {}
    dec: dict[str, dict] = {}
    for decoder in DECODERS:
        dm, dw, dc, dk = decode_only(files, ncpu, decoder)
        d = {"media_s": dm, "wall_s": dw, "cpu_s": dc, "x_per_core": dm / dw / ncpu, "x_per_core_cpu": dm / dc,
             "child_ms": 1000 * dk / dm if dm else 0.0}
        dec[decoder] = out["decode_only"][decoder] = d
        print(f"  {decoder:<10} {dm:.0f} s of media in {dw:.1f} s wall: {dm / dw:.1f}x realtime = "
              f"{d['x_per_core']:.1f}x per core (wall); {dc:.1f} CPU s = {d['x_per_core_cpu']:.1f}x per core "
              f"(CPU, of which ffprobe/ffmpeg children {d['child_ms']:.2f} ms/media-s)", flush=True)

    def decoder_of(variant: str) -> str:
        return "pyav_fast" if variant == "pyav_fast" else "decord"

    timed_variants: list[str] = []
    if not args.skip_pipeline:
        from astradup.pipeline import ensure_ray

        work = Path(tempfile.mkdtemp(prefix="astradup-ingest-"))
        t0 = time.perf_counter()
        ensure_ray(load_config(None, {"pipeline": {"dashboard": False}}))
        print(f"\n## C. pipeline (Ray started in {time.perf_counter() - t0:.1f} s, not counted)")
        # Ray's first job pays once per worker process for imports (librosa compiles its numba
        # kernels on first use) and the model load; a backfill amortises that, so it is shown
        # apart and the timed runs find warm workers.
        w = run_pipeline(files[:2], "warmup", work)
        print(f"  warm-up on 2 files: {w['wall_s']:.1f} s wall (first-use imports and compilation; not counted)")
        out["pipeline"] = {"warmup": w}
        for v in [x for x in args.variants.split(",") if x]:
            d = dec[decoder_of(v)]
            r = run_pipeline(files, v, work)
            x = r["media_s"] / r["wall_s"] / max(r["cpus"], 1)
            children = d["child_ms"] * r["media_s"] / 1000
            r["cpu_s"] += children
            cx = r["media_s"] / r["cpu_s"] if r["cpu_s"] else float("nan")
            r.update(decoder=decoder_of(v), x_per_core=x, fraction_of_decode_only=x / d["x_per_core"],
                     x_per_core_cpu=cx, cpu_fraction_of_decode_only=cx / d["x_per_core_cpu"])
            out["pipeline"][v] = r
            timed_variants.append(v)
            print(f"  {v:<18} {r['media_s']:.0f} s of media in {r['wall_s']:.1f} s wall on {r['cpus']:g} CPUs: "
                  f"{x:5.1f}x realtime per core = {x / d['x_per_core']:.2f} of decode-only ({r['decoder']}, wall); CPU "
                  + ", ".join(f"{k} {v2:.1f} s" for k, v2 in r["operator_cpu_s"].items())
                  + f", driver {r['driver_cpu_s']:.1f} s, ffmpeg children {children:.1f} s: "
                  f"{cx:.1f}x per core = {cx / d['x_per_core_cpu']:.2f} of decode-only (CPU)",
                  flush=True)
        shutil.rmtree(work, ignore_errors=True)

        # decode alone again: the load of a shared machine drifts, so the ratio uses both runs
        print("\n## B again after C")
        for decoder in sorted({decoder_of(v) for v in timed_variants}):
            d = dec[decoder]
            dm2, dw2, _, _ = decode_only(files, ncpu, decoder)
            x2 = dm2 / dw2 / ncpu
            d["x_per_core_mean"] = 0.5 * (d["x_per_core"] + x2)
            print(f"  {decoder:<10} {dm2:.0f} s of media in {dw2:.1f} s wall = {x2:.1f}x per core "
                  f"(mean of both runs {d['x_per_core_mean']:.1f}x per core is the reference)", flush=True)
        for v in timed_variants:
            r = out["pipeline"][v]
            r["fraction_of_decode_only"] = r["x_per_core"] / dec[r["decoder"]]["x_per_core_mean"]

    if args.quality:
        out["quality"] = quality(bench, Path(args.cache))
    out["load_avg_end"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=float))
    print(f"\nload average at end {os.getloadavg()[0]:.1f} (2-core machine shared with other jobs)")
    if timed_variants:
        # the first variant's line comes last: the pipeline's speed as configured
        for v in timed_variants[1:] + timed_variants[:1]:
            r = out["pipeline"][v]
            d = dec[r["decoder"]]
            dx = d.get("x_per_core_mean", d["x_per_core"])
            print(f"pipeline ({v}): {r['x_per_core']:.1f}x realtime per core by wall time = "
                  f"{r['fraction_of_decode_only']:.2f} of decode-only with {r['decoder']} ({dx:.1f}x per core); "
                  f"by CPU time {r['x_per_core_cpu']:.1f}x per core = {r['cpu_fraction_of_decode_only']:.2f} "
                  f"of decode-only ({d['x_per_core_cpu']:.1f}x); targets >= 60x per core and >= 0.70")
    else:
        print("decode-only: " + ", ".join(f"{k} {d['x_per_core']:.1f}x realtime per core (wall), "
                                          f"{d['x_per_core_cpu']:.1f}x (CPU)" for k, d in dec.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
