"""Dev-benchmark figures for whole-video search: recall@1 of the true source per transform, and the
share of distractor queries wrongly labelled duplicate (and labelled anything at all).

    .venv/bin/python benchmarks/search_recall.py --bench DIR [--data-dir D] [--json OUT]

DIR is made by ../shared/bench/make_bench.py (sources/, queries/, truth.csv). The sources are
indexed through the real pipeline (Ray Data -> Parquet + Milvus Lite) into a fresh data dir, then
every query is searched from the file, as a user would.
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from astradup.config import load_config
from astradup.pipeline import index
from astradup.search import Searcher


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True)
    ap.add_argument("--data-dir", default="")
    ap.add_argument("--config", default=None)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    bench = Path(args.bench)
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="astradup-bench-")
    if not args.data_dir:
        shutil.rmtree(data_dir, ignore_errors=True)
    cfg = load_config(args.config, {"data_dir": data_dir})

    truth: dict[str, set[str]] = defaultdict(set)
    transform: dict[str, str] = {}
    with open(bench / "truth.csv") as fh:
        for row in csv.DictReader(fh):
            truth[row["query_id"]].add(row["source_id"])
            transform[row["query_id"]] = row["transform"]

    t0 = time.time()
    rep = index([str(bench / "sources")], cfg)
    print(rep.summary(), file=sys.stderr)
    t_index = time.time() - t0
    searcher = Searcher(cfg)
    id_to_stem = {}
    for batch in searcher.catalog.shards.iter_features():
        for f in batch:
            id_to_stem[f.video_id] = Path(f.uri).stem

    per = defaultdict(lambda: [0, 0])  # transform -> [hits, total]
    distractors = dup_false = any_false = 0
    rows = []
    t1 = time.time()
    queries = sorted((bench / "queries").glob("*.mp4"))
    for qp in queries:
        qid = qp.stem
        _, matches = searcher.search_file(str(qp), top=5)
        top = matches[0] if matches else None
        top_stem = id_to_stem.get(top.source_id, "") if top else ""
        row = {"query": qid, "transform": transform.get(qid, "distractor"), "top1": top_stem,
               "fused": round(top.fused, 4) if top else None, "label": top.label if top else "none",
               "scores": top.scores if top else {}}
        if qid in truth:
            ok = top_stem in truth[qid]
            per[transform[qid]][0] += int(ok)
            per[transform[qid]][1] += 1
            row["correct"] = ok
        else:
            distractors += 1
            dup_false += int(bool(top) and top.label == "duplicate")
            any_false += int(bool(top) and top.label != "none")
        rows.append(row)
    t_search = time.time() - t1

    print(f"{'transform':<14} {'recall@1':>8}  n")
    tot_h = tot_n = 0
    for t in sorted(per):
        h, n = per[t]
        tot_h += h
        tot_n += n
        print(f"{t:<14} {h / n:8.3f}  {n}")
    print(f"{'ALL copies':<14} {tot_h / max(tot_n, 1):8.3f}  {tot_n}")
    print(f"index: {rep.indexed} sources, {rep.media_seconds:.0f} s media in {t_index:.1f} s; "
          f"search: {len(queries)} queries in {t_search:.1f} s")
    print(f"distractors: {distractors}; labelled duplicate: {dup_false} "
          f"({dup_false / max(distractors, 1):.3f}); labelled similar or above: {any_false} "
          f"({any_false / max(distractors, 1):.3f})")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
