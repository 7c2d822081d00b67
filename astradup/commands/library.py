"""`astradup index`, `delete`, `stats` and `reindex`: the commands that fill, trim, count and rebuild
the index."""
from __future__ import annotations

import json
import sys

from astradup.commands.output import progress_of
from astradup.config import Config


def cmd_index(args, cfg: Config) -> int:
    from astradup.pipeline import index

    pr = progress_of(args)
    with pr:
        report = index(args.paths, cfg, progress=pr.teller("index"), tick=pr.tick("index", "file"))
    if args.json:
        print(json.dumps({"listed": report.listed, "indexed": report.indexed, "skipped": report.skipped,
                          "failed": [{"uri": u, "reason": r} for u, r in report.failed],
                          "media_seconds": report.media_seconds, "wall_seconds": report.wall_seconds,
                          "video_ids": report.video_ids}, indent=2))
    else:
        print(report.summary())
    return 0 if report.indexed or report.skipped or not report.failed else 1


def cmd_delete(args, cfg: Config) -> int:
    from astradup.catalog import DELETE_ALREADY, DELETE_DONE, Catalog

    res = Catalog(cfg).remove(args.video_id)
    if res.state == DELETE_DONE:
        print(f"deleted {args.video_id}: {res.vectors_removed} vectors removed")
        return 0
    print(f"{args.video_id}: already deleted" if res.state == DELETE_ALREADY
          else f"{args.video_id}: not in the index")
    return 1


def cmd_stats(args, cfg: Config) -> int:
    from astradup.catalog import Catalog

    print(json.dumps(Catalog(cfg).stats(), indent=2))
    return 0


def cmd_reindex(args, cfg: Config) -> int:
    from astradup.catalog import Catalog

    catalog = Catalog(cfg)
    pr = progress_of(args)
    with pr:
        n = catalog.reindex(tick=pr.tick("reindex", "video"))
    print(f"rebuilt the vector store from the Parquet shards: {n} videos")
    return report_quarantine(catalog)


def report_quarantine(catalog) -> int:
    """After a rebuild: name each damaged (quarantined) shard and what re-does its videos; 1 if any.

    The rebuild used every readable shard. A quarantined features shard's videos are missing from
    it; their ids still have ok status rows, and ``lost_ids`` lists them. A quarantined status
    shard's rows cannot be read at all, so its videos have no status and are simply not done. Both
    kinds are what an index / backfill over the original sources indexes again (it skips only ids
    with a readable ok status and readable features), so that is the command to run.
    """
    bad = catalog.shards.quarantined()
    if not bad:
        return 0
    for path, reason in bad.items():
        print(f"astradup: quarantined shard (left on disk, skipped): {path}: {reason}", file=sys.stderr)
    lost = catalog.shards.lost_ids()
    print(f"astradup: {len(bad)} damaged shard(s) skipped; {len(lost)} indexed video(s) lost their features. "
          "Run `astradup index <sources>` (or python -m jobs.backfill --source ...) over the original "
          "videos to re-index what they held, then move the damaged files away.", file=sys.stderr)
    return 1
