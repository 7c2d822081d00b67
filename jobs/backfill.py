"""Backfill job: index a whole corpus (local folders or s3:// prefixes) into shards + Milvus.

The same command runs on a laptop and on a cluster; only the addresses change::

    python -m jobs.backfill --source ./videos
    ray job submit --working-dir . -- python -m jobs.backfill \\
        --source s3://bucket/videos --shards s3://bucket/features --milvus-uri http://milvus-host:19530

Under ``ray job submit`` the driver joins the cluster through RAY_ADDRESS (set by Ray); without
it a local Ray starts. On Kubernetes the same command is the entrypoint of a KubeRay RayJob
(deploy/kuberay/rayjob-backfill.yaml). A re-run skips what the status rows say is done, so a killed job is
resumed by submitting it again. Local paths are made absolute here, because a submitted job
runs inside a temporary copy of the working dir and a relative path would land in that copy.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from typing import Any

from astradup.config import Config, load_config_or_exit
from astradup.io.remote import absolute, absolute_paths

SUMMARY_TAG = "BACKFILL_SUMMARY"  # the machine-readable last line of the job log
PROG = "python -m jobs.backfill"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--source", action="append", required=True,
                   help="file, folder or s3://bucket/prefix to index (repeatable)")
    p.add_argument("--shards", help="Parquet shards root (local path or s3://bucket/prefix); "
                                    "default <data-dir>/shards")
    p.add_argument("--milvus-uri", help="http://host:19530 for a server, or a Milvus Lite .db path; "
                                        "default <data-dir>/milvus.db")
    p.add_argument("--milvus-token", help="Milvus token (user:password), if the server wants one")
    p.add_argument("--collection-prefix", help="Milvus collection name prefix")
    p.add_argument("--data-dir", help="local data dir for the defaults above")
    p.add_argument("--s3-endpoint", help="S3 endpoint URL (a local S3, MinIO...); default: AWS / "
                                         "AWS_ENDPOINT_URL. Credentials: the standard AWS chain")
    p.add_argument("--config", help="YAML config (else $ASTRADUP_CONFIG, then configs/default.yaml)")
    p.add_argument("--write-batch", type=int, help="videos per Parquet shard / Milvus write "
                                                   "(config pipeline.write_batch, default 100)")
    p.add_argument("--decode-concurrency", type=int, default=0,
                   help="most decode tasks at once; 0 (default) = one per free CPU of the cluster")
    p.add_argument("--embed-concurrency", type=int, help="embedder actors to start with")
    p.add_argument("--embed-gpus", type=float, help="GPUs per embedder actor when the cluster has GPUs")
    p.add_argument("--rehash", action="store_true",
                   help="read and hash every file, even those whose (uri, size) is already indexed")
    p.add_argument("--summary-json", help="also write the summary as JSON to this local path")
    p.add_argument("--report", metavar="DIR", help="when the backfill ends, write the duplicate report "
                                                   "(report.html, report.csv, thumbs/) to this local folder")
    p.add_argument("--webhook", metavar="URL", help="POST a JSON summary here when the backfill ends "
                                                    "(default: config notify.webhook_url); never fails the job")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> Config:
    over: dict[str, Any] = {}
    pipe: dict[str, Any] = {"decode_concurrency": args.decode_concurrency}
    for key, val in (("shards_dir", args.shards), ("milvus_uri", args.milvus_uri),
                     ("milvus_token", args.milvus_token), ("collection_prefix", args.collection_prefix),
                     ("data_dir", args.data_dir), ("s3_endpoint", args.s3_endpoint)):
        if val is not None:
            over[key] = val
    for key, val in (("write_batch", args.write_batch), ("embed_concurrency", args.embed_concurrency),
                     ("embed_num_gpus", args.embed_gpus)):
        if val is not None:
            pipe[key] = val
    over["pipeline"] = pipe
    cfg = load_config_or_exit(PROG, args.config, overrides=over)  # bad config: one line, exit status 2
    cfg = absolute_paths(cfg)  # a submitted job runs in a temporary copy of the working dir
    if getattr(args, "webhook", None):
        cfg.notify.webhook_url = args.webhook
    return cfg


def _write_report(cfg: Config, catalog, out_dir: str, log) -> dict[str, Any]:
    """The duplicate report over the whole index. It runs the dedup job first (astradup.dedup, on this
    Ray: only the videos not joined before are searched), so the driver lets go of its vector store:
    a Milvus Lite file takes one process, here the job's worker. A report that fails is logged and
    reported, not fatal: the videos are indexed either way, and `astradup report` can make it again."""
    from astradup.report.write import write_report

    log(f"writing the duplicate report to {out_dir}")
    try:
        catalog.close_vectors()
        info = write_report(cfg, out_dir)
    except Exception as e:
        log(f"report NOT written: {type(e).__name__}: {e}")
        return {"error": f"{type(e).__name__}: {e}"}
    log(f"report: {info['html']} ({info['groups']} group(s), {info['pairs']} pair(s))")
    return info


def main(argv: list[str] | None = None) -> int:
    from astradup.catalog import Catalog
    from astradup.notify import notify_backfill_end
    from astradup.pipeline import index

    args = parse_args(argv)
    cfg = config_from_args(args)
    from astradup.logs import setup_logging

    setup_logging(cfg.log)  # the driver's own records (write batches); workers set up theirs in their tasks
    sources = [absolute(s) for s in args.source]
    log = lambda msg: print(f"[backfill {time.strftime('%H:%M:%S')}] {msg}", flush=True)  # noqa: E731
    log(f"sources {sources} -> shards {cfg.resolved_shards_dir}, milvus {cfg.resolved_milvus_uri} "
        f"(write batch {cfg.pipeline.write_batch})")
    report_info: dict[str, Any] | None = None
    vectors = None
    try:
        try:
            catalog = Catalog(cfg)
            vectors = catalog.vectors  # connect now: a wrong Milvus address fails before any decoding
            report = index(sources, cfg, catalog=catalog, progress=log, trust_listing=not args.rehash)
        except Exception as e:  # tell the webhook the job died, then fail as before
            notify_backfill_end(cfg.notify, {"error": f"{type(e).__name__}: {e}"}, log=log)
            raise
        counts = vectors.count()
        # Damaged shards were skipped, and the videos they held indexed again by this run (their ids
        # had no readable ok status, or ShardStore.lost_ids); the files stay for the operator.
        quarantined = catalog.shards.quarantined(refresh=False)
        for path, reason in quarantined.items():
            log(f"quarantined shard (left on disk, skipped): {path}: {reason}")
        if args.report:
            report_info = _write_report(cfg, catalog, absolute(args.report), log)
    finally:
        if vectors is not None:
            vectors.close()
    summary = report.to_dict()
    summary["vectors"] = counts
    summary["shards_quarantined"] = len(quarantined)
    if report_info is not None:
        summary["report"] = report_info
        if report_info.get("error"):
            summary["report_error"] = report_info["error"]
    report_html = (report_info or {}).get("html")
    summary["notify"] = notify_backfill_end(cfg.notify, summary, report_path=report_html, log=log)
    summary["driver_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(report.summary(), flush=True)
    print(f"{SUMMARY_TAG} {json.dumps(summary, sort_keys=True)}", flush=True)
    if args.summary_json:
        with open(args.summary_json, "w") as f:
            json.dump(summary, f, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
