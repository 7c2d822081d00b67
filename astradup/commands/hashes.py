"""`astradup search --hashes` and `astradup export-hashes`: vPDQ hash files (another tool's
per-frame hashes) matched against the index, and the index's hashes written in that format."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from astradup.config import Config
from astradup.errors import AstraDupError


def read_hash_bytes(path: str) -> bytes:
    """A vPDQ hash file's bytes from disk, its size checked before it is read."""
    from astradup.io.vpdq_file import MAX_BYTES, HashFileError

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{path}: no such hash file")
    if p.stat().st_size > MAX_BYTES:
        raise HashFileError(f"{path}: {p.stat().st_size} bytes, more than the {MAX_BYTES} a hash file may have")
    return p.read_bytes()


def parse_hash_file(path: str, data: bytes):
    """Parsed as io/vpdq_file.py checks it; a refusal names the file."""
    from astradup.io.vpdq_file import HashFileError, parse_vpdq

    try:
        return parse_vpdq(data)
    except HashFileError as e:
        raise HashFileError(f"{path}: {e}") from None


def cmd_search_hashes(args, cfg: Config) -> int:
    """`search --hashes FILE.txt`: a vPDQ hash file (another tool's video) matched by vPDQ's rule
    against the PDQ hashes stored for every indexed video; the result rows are the normal search's."""
    from astradup.catalog import Catalog
    from astradup.reviews import Verdicts
    from astradup.vpdq_search import query_id, search_hashes

    if args.file is not None or args.fingerprint is not None:
        raise AstraDupError("give one query: a video FILE, --fingerprint FP or --hashes FILE.txt")
    if args.segments:
        raise AstraDupError("--segments needs a video query: a vPDQ hash matches frames as a set, without segments")
    data = read_hash_bytes(args.hashes)
    query = parse_hash_file(args.hashes, data)
    qid = query_id(data)
    top = args.top or cfg.search.top
    verdicts = Verdicts.load(cfg.data_dir, video_id=qid)
    matches = verdicts.matches(qid, search_hashes(Catalog(cfg).shards, query, top=top + verdicts.rejected_count()),
                               top)
    if args.json:
        print(json.dumps({"query": args.hashes, "query_frames": int(len(query.hashes)),
                          "matches": [m.to_dict() for m in matches]}, indent=2))
        return 0
    if args.csv:
        w = csv.writer(sys.stdout)
        w.writerow(["rank", "source_id", "source_uri", "label", "query_match_pct", "source_match_pct"])
        for i, m in enumerate(matches, 1):
            w.writerow([i, m.source_id, m.source_uri, m.label, f"{100 * m.scores['vpdq_query']:.1f}",
                        f"{100 * m.scores['vpdq_source']:.1f}"])
        return 0
    print(f"query {args.hashes} (vPDQ, {len(query.hashes)} frames)")
    if not matches:
        print("  no match in the index")
    for i, m in enumerate(matches, 1):
        print(f"  {i:>2}  {m.label:<14} query {100 * m.scores['vpdq_query']:5.1f}%  source "
              f"{100 * m.scores['vpdq_source']:5.1f}%  {m.source_id[:12]} {m.source_uri}")
    return 0


def cmd_export_hashes(args, cfg: Config) -> int:
    """`export-hashes --format vpdq OUT [VIDEO_ID...]`: the stored PDQ hashes in vPDQ's text format,
    one file per video (OUT a folder: <video_id>.txt) or one file (OUT ends in .txt: one video)."""
    from astradup.catalog import Catalog
    from astradup.io.vpdq_file import format_vpdq
    from astradup.vpdq_search import plan_export, stored_hashes

    plan = plan_export(Catalog(cfg).shards, args.video_ids)
    if plan.unknown:
        raise AstraDupError(f"not in the index: {', '.join(plan.unknown[:5])}"
                            + (f" and {len(plan.unknown) - 5} more" if len(plan.unknown) > 5 else ""))
    for vid in plan.without_pdq:
        print(f"astradup: {vid}: indexed before PDQ hashes were stored, skipped (re-index it to export it)",
              file=sys.stderr)
    out = Path(args.out)
    one_file = out.suffix.lower() == ".txt" and not out.is_dir()
    if one_file and len(plan.records) != 1:
        raise AstraDupError(f"{out} is one file but {len(plan.records)} videos have hashes to export: "
                            "name one VIDEO_ID, or give a folder")
    if not one_file:
        out.mkdir(parents=True, exist_ok=True)
    for f in plan.records:
        dst = out if one_file else out / f"{f.video_id}.txt"
        dst.write_text(format_vpdq(stored_hashes(f)))
        print(f"{f.video_id}  {len(f.pdq)} frames  {dst}")
    return 0 if plan.records else 1
