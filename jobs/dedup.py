"""Dedup job: every indexed video not yet joined, searched against the whole library on Ray workers.

The same command runs on a laptop and on a cluster; only the addresses change::

    python -m jobs.dedup --data-dir ./astradup_data
    ray job submit --working-dir . -- python -m jobs.dedup \\
        --data-dir /srv/astradup --shards s3://bucket/features --milvus-uri http://host:19530

Pairs go to ``<data-dir>/dedup/parts/*.parquet`` with ``<data-dir>/dedup/manifest.jsonl`` (see
``astradup/dedup/``); ``astradup dedup``, ``astradup report`` and the service's review queue read
them. Submitting it again after a kill resumes (finished batches are skipped); after a backfill it
joins only the new videos. Progress: one line per batch here, and the dashboard gauges
``ray_astradup_dedup_batches_done`` / ``_total``; the last line is ``DEDUP_SUMMARY {json}``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from astradup.config import Config

SUMMARY_TAG = "DEDUP_SUMMARY"
PROG = "python -m jobs.dedup"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from astradup.dedup.job import DEFAULT_BATCH

    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", help="data dir (dedup output, reviews, Milvus Lite file, shards by default)")
    p.add_argument("--shards", help="Parquet shards root (local path or s3://bucket/prefix)")
    p.add_argument("--milvus-uri", help="http://host:19530 for a server, or a Milvus Lite .db path")
    p.add_argument("--milvus-token", help="Milvus token (user:password), if the server wants one")
    p.add_argument("--collection-prefix", help="Milvus collection name prefix")
    p.add_argument("--s3-endpoint", help="S3 endpoint URL (a local S3, MinIO...)")
    p.add_argument("--config", help="YAML config (else $ASTRADUP_CONFIG, then configs/default.yaml)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH,
                   help=f"query videos per batch / Parquet part (default {DEFAULT_BATCH})")
    p.add_argument("--concurrency", type=int, default=0,
                   help="search actors on a Milvus server (0 = one per CPU); always 1 on a Milvus Lite file")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> Config:
    from astradup.config import load_config_or_exit
    from astradup.config.paths import absolute_paths

    over = {}
    for key, val in (("shards_dir", args.shards), ("milvus_uri", args.milvus_uri),
                     ("milvus_token", args.milvus_token), ("collection_prefix", args.collection_prefix),
                     ("data_dir", args.data_dir), ("s3_endpoint", args.s3_endpoint)):
        if val is not None:
            over[key] = val
    # a submitted job runs in a temporary copy of the working dir: local paths made absolute here
    return absolute_paths(load_config_or_exit(PROG, args.config, overrides=over))  # bad config: exit 2


def main(argv: list[str] | None = None) -> int:
    from astradup.dedup.job import run_job
    from astradup.logs import setup_logging

    args = parse_args(argv)
    cfg = config_from_args(args)
    setup_logging(cfg.log)
    log = lambda msg: print(f"[dedup {time.strftime('%H:%M:%S')}] {msg}", flush=True)  # noqa: E731
    log(f"shards {cfg.resolved_shards_dir}, milvus {cfg.resolved_milvus_uri} -> {cfg.data_dir}/dedup")
    summary = run_job(cfg, batch_size=args.batch_size, concurrency=args.concurrency, progress=log)
    print(f"{SUMMARY_TAG} {json.dumps(summary.to_dict(), sort_keys=True)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
