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


MAX_ID_LIST_BYTES = 64 << 20  # a takedown list of ~2 M ids; larger is refused before it is read


def read_id_list(path: str) -> list[str]:
    """Video ids from a file (or stdin), one per line: checked before anything is deleted, so a
    malformed list deletes nothing (a ValueError naming the line)."""
    from astradup.io.ids import check_video_id

    if path == "-":
        data = sys.stdin.buffer.read(MAX_ID_LIST_BYTES + 1)
    else:
        with open(path, "rb") as fh:
            data = fh.read(MAX_ID_LIST_BYTES + 1)
    if len(data) > MAX_ID_LIST_BYTES:
        raise ValueError(f"{path}: larger than {MAX_ID_LIST_BYTES >> 20} MB; split the list")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text (byte {e.start})") from None
    ids = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if line:
            try:
                ids.append(check_video_id(line))
            except ValueError as e:
                raise ValueError(f"{path}, line {n}: {e}") from None
    return ids


def cmd_delete(args, cfg: Config) -> int:
    from astradup.catalog import DELETE_ALREADY, DELETE_DONE, Catalog

    ids = list(args.video_id)
    if args.from_file:
        try:
            ids += read_id_list(args.from_file)
        except (OSError, ValueError) as e:
            print(f"astradup delete: {e}", file=sys.stderr)
            return 2
    if not ids:
        print("astradup delete: no video id given (ids as arguments, or --from FILE)", file=sys.stderr)
        return 2
    if len(ids) == 1:
        res = Catalog(cfg).remove(ids[0])
        if res.state == DELETE_DONE:
            print(f"deleted {ids[0]}: {res.vectors_removed} vectors removed")
            return 0
        print(f"{ids[0]}: already deleted" if res.state == DELETE_ALREADY else f"{ids[0]}: not in the index")
        return 1
    res = Catalog(cfg).remove_many(ids)
    for v, r in res.items():
        if r.state != DELETE_DONE:
            print(f"{v}: already deleted" if r.state == DELETE_ALREADY else f"{v}: not in the index")
    done = sum(r.state == DELETE_DONE for r in res.values())
    print(f"deleted {done} of {len(res)} videos")
    return 0 if done == len(res) else 1


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
