"""Common segments as the library grows: does the common rule mark a real query's own content
common when more unrelated videos look alike to it?

A real query's audio windows find more chance look-alikes at the match floor the larger the
library (5 s MFCC summaries of unrelated music); counted by the common rule, they made real content
"common" and masked it, frames included, out of the real copy (docs/scaling.md, seventh and eighth
rounds). Rebuilding a 100 000 library takes hours here, so this script stands in for a larger one
by lowering the audio floor the common rule reads, by each of ``--offsets``: more videos then reach
it per window, as they would in a larger library (the script prints how many, median over the
windows of the first query). For each offset it runs the 13 real queries of a
``benchmarks/library_scale.py --real`` library through ``Searcher.knn`` + ``score`` (the service's
search after feature extraction), with ``common.audio_support`` off and on, interleaved, and prints
recall@1, seconds marked common per query and the KNN time.

    .venv/bin/python benchmarks/common_scale.py --real /work/benchdata/dev8 --n 10000 [--milvus-uri URI]
        [--offsets 0,0.03,0.06,0.1]

The library must be built (``library_scale.py --real DIR --sizes N --build-only``). Not part of
``make test``.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import library_scale as ls  # noqa: E402
from astradup.catalog import Catalog  # noqa: E402
from astradup.match.common import row_videos  # noqa: E402
from astradup.search import Searcher  # noqa: E402


def with_offset(cfg, catalog: Catalog, offset: float, support: float) -> Searcher:
    """A searcher whose common rule reads the audio floor lowered by ``offset``, support as given."""

    class Lowered(Searcher):
        @property
        def _knn_floors(self) -> tuple[float, float]:
            vis, aud = Searcher._knn_floors.fget(self)
            return vis, aud - offset

    common = dataclasses.replace(cfg.common, audio_support=support)
    return Lowered(dataclasses.replace(cfg, common=common), catalog)


def density(s: Searcher, q) -> int:
    """Median distinct videos per audio window at the (lowered) floor, the query's copies included."""
    av = np.asarray(q.features.audio_vectors)
    if not len(av):
        return 0
    vs, (_, aud) = s.catalog.vectors, s._knn_floors
    hits = vs.search_audio(av, s.cfg.common.search_k)
    return int(np.median([len(v) for v in row_videos(hits, aud)]))


def run(s: Searcher, queries: dict, truth: dict[str, str]) -> tuple[int, list[str], float]:
    hits, marks, knn = 0, [], []
    for name, q in queries.items():
        t0 = time.perf_counter()
        found = s.knn(q, pruned=True)
        knn.append(time.perf_counter() - t0)
        ms = [m for m in s.score(q, found.candidates, pruned=True, common=found.common) if m.reportable]
        ok = bool(ms) and ms[0].source_id == truth[name]
        hits += ok
        secs = sum(c.q_end - c.q_start for c in found.common)
        marks.append(f"{name}:{secs:.0f}s{'' if ok else '(miss)'}")
    return hits, marks, float(np.mean(knn)) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--real", required=True, help="the dev benchmark dir the library was built with")
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--cache", default="", help="library_scale's cache (default benchmarks/out/library_scale_<name>)")
    ap.add_argument("--milvus-uri", default="", help="a running server holding the cache's collections")
    ap.add_argument("--offsets", default="0,0.03,0.06,0.1")
    ap.add_argument("--support", type=float, default=2.5, help="common.audio_support when on")
    args = ap.parse_args()
    real = Path(args.real).resolve()
    cache = Path(args.cache or ROOT / "benchmarks" / "out" / f"library_scale_{real.name}").resolve()
    from tests.milvus_harness import MilvusHarness

    server = None if args.milvus_uri else MilvusHarness(cache / "milvus")
    uri = args.milvus_uri or server.start()
    try:
        cfg = ls.cfg_for(cache, args.n, uri)
        info = ls.cached(cfg, args.n)
        if info is None:
            print(f"no library of {args.n} under {cache}: build it with library_scale.py --build-only")
            return 2
        _, files = ls.bench_media(real)
        catalog = Catalog(cfg)
        base = Searcher(cfg, catalog)
        queries = {p.stem: base.query_from_file(str(p)) for p in sorted(files)}
        truth = {p.stem: info["real_ids"][str(src)] for p, src in files.items()}
        print(f"# common rule against library size: N={args.n}, {len(queries)} real queries, "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        first = next((n for n, q in queries.items() if len(q.features.audio_vectors)), next(iter(queries)))
        for off in [float(x) for x in args.offsets.split(",") if x]:
            for support in (0.0, args.support, 0.0, args.support):  # interleaved: two passes each
                s = with_offset(cfg, catalog, off, support)
                hits, marks, knn = run(s, queries, truth)
                print(f"floor -{off:.2f} (median {density(s, queries[first])} videos per window of {first}) "
                      f"support {support:>3}: recall@1 {hits}/{len(queries)}, KNN mean {knn:.0f} ms; "
                      f"common {' '.join(marks)}", flush=True)
        catalog.vectors.close()
    finally:
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
