"""VSC22 descriptor micro-AP of the files `astradup export-descriptors` writes, scored as vsc2022
scores a descriptor submission: every (query, reference) pair by the max inner product of their
rows, all pairs ranked together. One benchmark or several pooled (the --hard seeds), each indexed
on its own; any export flags (say ``--audio-share 0`` for frames alone) pass through.

    .venv/bin/python benchmarks/descriptor_files.py --bench DIR [DIR ...] [--data-dir D] [-- EXPORT FLAGS]

Default flags: ``--normalise 0.5`` (the export's default audio share). ``segments_bench.py``
prints the table of each step on the same features; this is the figure a user's files get.
"""
from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from astradup.cli import main as cli_main
from astradup.config import load_config
from astradup.eval.metrics import vsc_descriptor_micro_ap
from astradup.match.score_norm import pair_scores
from astradup.pipeline import index


def rows_by_video(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        ids, x = z["video_ids"], z["features"]
    return {str(v): x[ids == v] for v in np.unique(ids)}


def one(bench: Path, data_dir: Path, flags: list[str]) -> tuple[set, dict, dict]:
    """Index ``bench`` (unless ``data_dir`` holds it already), export both sides, score the pairs."""
    if not (data_dir / "shards").exists():
        index([str(bench / "sources")], load_config(None, {"data_dir": str(data_dir)}))
    out = Path(tempfile.mkdtemp(prefix="astradup-desc-"))
    try:
        t0 = time.time()
        base = ["-q", "--data-dir", str(data_dir), "export-descriptors"]
        if cli_main([*base, str(out / "refs.npz"), *flags]) != 0:
            raise SystemExit(f"{bench}: exporting the index failed")
        t_refs = time.time() - t0
        queries = sorted(str(p) for p in (bench / "queries").glob("*.mp4"))
        if cli_main([*base, str(out / "queries.npz"), "--query", *queries, *flags]) != 0:
            raise SystemExit(f"{bench}: exporting the queries failed")
        t_q = time.time() - t0 - t_refs
        q, r = rows_by_video(out / "queries.npz"), rows_by_video(out / "refs.npz")
        dim = next(iter(r.values())).shape[1] if r else 0
    finally:
        shutil.rmtree(out, ignore_errors=True)
    with open(bench / "truth.csv", newline="") as fh:
        truth = {(row["query_id"], row["source_id"]) for row in csv.DictReader(fh) if row["source_id"]}
    return truth, pair_scores(q, r), {"dim": dim, "export_refs_s": t_refs, "export_queries_s": t_q}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True, nargs="+", help="benchmark folder(s) from make_bench.py")
    ap.add_argument("--data-dir", default="", help="index folder (one sub-folder per benchmark, kept); "
                                                   "default temporary")
    args, flags = ap.parse_known_args()
    flags = [f for f in flags if f != "--"] or ["--normalise", "0.5"]
    root = Path(args.data_dir or tempfile.mkdtemp(prefix="astradup-descbench-"))
    pooled_t, pooled_s = set(), {}
    print(f"export flags: {' '.join(flags)}")
    for b in map(Path, args.bench):
        truth, scores, info = one(b, root / b.name, flags)
        print(f"{b.name}: micro-AP {vsc_descriptor_micro_ap(truth, scores):.3f} ({len(truth)} copied pairs, "
              f"{info['dim']}-d rows; export {info['export_refs_s']:.1f} s index, {info['export_queries_s']:.1f} s "
              "queries)", flush=True)
        pooled_t |= {(b.name, *k) for k in truth}
        pooled_s.update({(b.name, *k): v for k, v in scores.items()})
    if len(args.bench) > 1:
        print(f"pooled over {len(args.bench)}: micro-AP {vsc_descriptor_micro_ap(pooled_t, pooled_s):.3f}")
    if not args.data_dir:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
