"""`astradup dedup`, `astradup report` and `astradup demo`: the duplicate groups of the index (the
dedup job's pairs) on a terminal, as a report, and over a sample corpus."""
from __future__ import annotations

import json
import time
from pathlib import Path

from astradup.commands.output import fmt_pair, kind, progress_of
from astradup.config import Config


def cmd_dedup(args, cfg: Config) -> int:
    """The groups from the dedup job's pairs (the job runs first, on a local Ray, when its output is
    missing or stale: videos indexed since it last ran are joined against the library)."""
    from astradup.dedup.results import dedup_groups
    from astradup.reviews import Verdicts

    verdicts = Verdicts.load(cfg.data_dir)
    pr = progress_of(args)
    with pr:
        groups, best, uris, partial = dedup_groups(cfg, args.min_label, progress=pr.teller("dedup"),
                                                   verdicts=verdicts, tick=pr.tick("dedup join", "video"))
    if args.json:
        print(json.dumps({"groups": [
            {"videos": [{"video_id": v, "uri": uris.get(v, "")} for v in g],
             "pairs": [{"a": a, "b": b, **best[(a, b)].to_dict()} for (a, b) in best if a in g]}
            for g in groups],
            "partial_copies": [{"video_id": q, **sg.as_row(), "audio_copy": kind(sg) == "audio copy",
                                "decision": verdicts.decision(q, sg.source_id)} for q, sg in partial]}, indent=2))
        return 0
    print(f"{len(groups)} duplicate group(s) among {len(uris)} indexed video(s) (pairs at >= {args.min_label})")
    for qv, sg in partial:
        what = "audio copy" if kind(sg) == "audio copy" else "partial copy"
        mark = verdicts.decision(qv, sg.source_id)
        print(f"{what}: {uris.get(qv, qv)} {sg.q_start:g}-{sg.q_end:g} s <- "
              f"{uris.get(sg.source_id, sg.source_id)} {sg.s_start:g}-{sg.s_end:g} s (score {sg.score:.3f})"
              f"{'  [' + mark + ']' if mark else ''}")
    for i, g in enumerate(groups, 1):
        print(f"\ngroup {i}: {len(g)} videos")
        for v in g:
            print(f"  {v[:12]}  {uris.get(v, '')}")
        for (a, b), m in sorted(best.items(), key=lambda kv: -kv[1].fused):
            if a in g:
                print(f"    {fmt_pair(a[:12], b[:12], m)}{'  (' + '; '.join(m.notes) + ')' if m.notes else ''}")
    return 0


def cmd_report(args, cfg: Config) -> int:
    """HTML + CSV report of the duplicate groups (the same groups as dedup), with thumbnails."""
    from astradup.report.write import write_report

    pr = progress_of(args)
    with pr:
        summary = write_report(cfg, args.out, args.min_label, thumbs_per_video=args.thumbs,
                               embed_thumbs=args.embed_thumbs, moments_per_pair=args.moments,
                               tick_join=pr.tick("dedup join", "video"), tick_thumbs=pr.tick("thumbnails", "video"))
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{summary['groups']} duplicate group(s), {summary['pairs']} pair(s) among {summary['indexed_videos']} "
          f"indexed video(s) (pairs at >= {summary['min_label']}); {summary['thumbnails']} thumbnail(s), "
          f"{summary['moment_thumbnails']} at matched moments")
    for miss in summary["missing_files"]:
        print(f"  no thumbnail for {miss['uri']}: {miss['reason']}")
    print(f"report: {summary['html']}\ncsv:    {summary['csv']}")
    return 0


def cmd_demo(args, cfg: Config) -> int:
    """The main job on embedded defaults: build a sample corpus from real media, index it, list duplicates."""
    from astradup.catalog import Catalog
    from astradup.dedup.results import dedup_groups
    from astradup.demo_corpus.build import build_demo_corpus
    from astradup.pipeline import index

    out = Path(args.out)
    t0 = time.time()
    info = build_demo_corpus(out)
    print(f"[demo] sample corpus in {out}/videos ({time.time() - t0:.0f} s)")
    catalog = Catalog(cfg)
    pr = progress_of(args)
    report = index([str(out / "videos")], cfg, catalog=catalog, progress=pr.teller("index"))
    catalog.close_vectors()  # the dedup job's worker opens the Milvus Lite file next
    print(report.summary())
    groups, best, uris, partial = dedup_groups(cfg, "similar", progress=pr.teller("dedup"))
    name = {v: Path(u).name for v, u in uris.items()}
    print(f"\n{len(groups)} group(s) of copies found (pairs labelled similar or above):")
    for i, g in enumerate(groups, 1):
        print(f"\ngroup {i}: " + ", ".join(sorted(name[v] for v in g)))
        for (a, b), m in sorted(best.items(), key=lambda kv: -kv[1].fused):
            if a in g:
                print(f"  {fmt_pair(f'{name[a]:>12}', f'{name[b]:<12}', m)}")
    if partial:
        print("\npartial copies (a stretch of one video re-used in another):")
        for qv, sg in partial:
            print(f"  {name[qv]} {sg.q_start:g}-{sg.q_end:g} s  <-  {name[sg.source_id]} {sg.s_start:g}-{sg.s_end:g} s"
                  f"  score {sg.score:.3f} ({kind(sg)})")
    expected = info.get("copies") if isinstance(info, dict) else None
    if expected:
        print("\nexpected (truth.json):")
        for c in expected:
            print(f"  {c.get('file')} <- {c.get('source')} ({c.get('transform')})")
    return 0
