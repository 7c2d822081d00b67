"""Bounded load on the HTTP service: C concurrent clients for S seconds, each searching in a loop
(an indexed video id, or an uploaded file), then p50/p95/p99 latency and the error count.

    .venv/bin/python benchmarks/serve_load.py [--clients 20] [--seconds 30] [--upload-share 0.25]
    .venv/bin/python benchmarks/serve_load.py --url http://127.0.0.1:8000 [--api-key K] --upload FILE...

Without --url it builds the small generated corpus of the serve tests (8 short videos), indexes it
into a temp dir and starts the app on 127.0.0.1 itself (so nothing else may hold that Lite file);
the uploads are then the corpus' query files. Only 127.0.0.1-style targets are meant: this is a
load generator.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def client(url: str, headers: dict, ids: list[str], uploads: list[tuple[str, bytes]], upload_share: float,
           deadline: float, seed: int, out: list, lock: threading.Lock) -> None:
    rng = random.Random(seed)
    s = requests.Session()
    s.headers.update(headers)
    while time.monotonic() < deadline:
        upload = uploads and (not ids or rng.random() < upload_share)
        t0 = time.perf_counter()
        try:
            if upload:
                name, data = rng.choice(uploads)
                r = s.post(f"{url}/search", files={"file": (name, data, "video/mp4")}, timeout=180)
            else:
                r = s.post(f"{url}/search", json={"video_id": rng.choice(ids)}, timeout=180)
            status, n = r.status_code, len(r.json().get("matches", [])) if r.status_code == 200 else 0
        except (requests.RequestException, ValueError) as e:
            status, n = type(e).__name__, 0
        with lock:
            out.append(("upload" if upload else "video", status, time.perf_counter() - t0, n))


def summarise(rows: list, wall: float) -> dict:
    def stats(sel):
        lat = [r[2] for r in sel if r[1] == 200]
        return {"requests": len(sel), "ok": len(lat), "errors": len(sel) - len(lat),
                "p50_s": round(percentile(lat, 0.5), 3), "p95_s": round(percentile(lat, 0.95), 3),
                "p99_s": round(percentile(lat, 0.99), 3), "max_s": round(max(lat), 3) if lat else None,
                "mean_s": round(statistics.fmean(lat), 3) if lat else None}

    out = {"all": stats(rows), "wall_s": round(wall, 1),
           "throughput_rps": round(sum(1 for r in rows if r[1] == 200) / wall, 2) if wall else 0.0,
           "statuses": {str(k): v for k, v in Counter(r[1] for r in rows).items()}}
    for kind in ("video", "upload"):
        sel = [r for r in rows if r[0] == kind]
        if sel:
            out[kind] = stats(sel)
    return out


def self_hosted(tmp: Path, embedder_replicas: int):
    """Corpus + index + app on a free port; returns (url, ids, uploads, stop)."""
    from astradup.catalog import Catalog
    from astradup.config import load_config
    from astradup.pipeline import index
    from serve import local
    from serve.settings import ServeSettings
    from tests.serve_harness import build_corpus

    lib, files = build_corpus(tmp)
    cfg = load_config(overrides={"data_dir": str(tmp / "data"), "pipeline": {"dashboard": False}})
    catalog = Catalog(cfg)
    report = index([str(lib)], cfg, catalog=catalog)
    print(report.summary(), file=sys.stderr)
    catalog.vectors.close()
    ids = [v for v, r in catalog.shards.latest_status().items() if r["status"] == "ok"]
    settings = ServeSettings(embedder_max_replicas=embedder_replicas)
    url = local.start(cfg, settings, port=local.free_port())
    uploads = [(n, files[n].read_bytes()) for n in ("two.mp4", "c_query.mp4")]
    return url, ids, uploads, local.stop


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="", help="a running app (default: start one on a generated corpus)")
    ap.add_argument("--api-key", default=os.environ.get("ASTRADUP_API_KEY", ""))
    ap.add_argument("--upload", nargs="*", default=[], help="query files to upload (with --url)")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--upload-share", type=float, default=0.25, help="share of searches that upload a file")
    ap.add_argument("--embedder-replicas", type=int, default=1,
                    help="most embedder replicas when self-hosting (each asks for a CPU)")
    ap.add_argument("--json", default="", help="also write the figures here")
    args = ap.parse_args()

    stop = None
    tmp = None
    if args.url:
        url = args.url.rstrip("/")
        headers = {"X-API-Key": args.api_key} if args.api_key else {}
        r = requests.get(f"{url}/videos?limit=1000", headers=headers, timeout=60)
        r.raise_for_status()
        ids = [v["video_id"] for v in r.json()["videos"]]
        uploads = [(Path(p).name, Path(p).read_bytes()) for p in args.upload]
    else:
        tmp = tempfile.TemporaryDirectory(prefix="astradup-load-")
        url, ids, uploads, stop = self_hosted(Path(tmp.name), args.embedder_replicas)
        headers = {}
    if not ids and not uploads:
        print("nothing to search: no indexed video and no upload", file=sys.stderr)
        return 2
    try:
        rows: list = []
        lock = threading.Lock()
        t0 = time.monotonic()
        deadline = t0 + args.seconds
        threads = [threading.Thread(target=client, args=(url, headers, ids, uploads, args.upload_share, deadline, i,
                                                         rows, lock), daemon=True) for i in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        res = summarise(rows, time.monotonic() - t0)
        res.update(clients=args.clients, seconds=args.seconds, upload_share=args.upload_share, url=url,
                   indexed_videos=len(ids))
    finally:
        if stop:
            stop()
        if tmp:
            tmp.cleanup()
    a = res["all"]
    print(f"{args.clients} clients x {args.seconds:g} s on {url}: {a['requests']} searches, {a['errors']} errors, "
          f"{res['throughput_rps']} searches/s")
    for kind in ("all", "video", "upload"):
        if kind in res:
            k = res[kind]
            print(f"  {kind:<6} n={k['requests']:<4} p50 {k['p50_s']:.3f} s  p95 {k['p95_s']:.3f} s  "
                  f"p99 {k['p99_s']:.3f} s  max {k['max_s']} s  errors {k['errors']}")
    print(f"  statuses: {res['statuses']}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0 if a["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
