"""`astradup` command line: index, search, eval, dedup, report, delete, stats, reindex, serve, demo."""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

from astradup.config import Config, load_config
from astradup.errors import AstraDupError


def package_version() -> str:
    """The installed distribution's version: pyproject.toml is its one source, and a bug report
    should name what pip installed, not what a source file says."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("astradup")
    except PackageNotFoundError:  # a source tree run without `pip install` (scripts/install.sh does one)
        return "unknown (not installed)"


def _cfg(args: argparse.Namespace) -> Config:
    over: dict = {}
    if args.data_dir:
        over["data_dir"] = args.data_dir
    if args.milvus_uri:
        over["milvus_uri"] = args.milvus_uri
    return load_config(args.config, over)


def _fmt_matches(matches, catalog=None) -> str:
    if not matches:
        return "  no match in the index"
    rows = [f"  {'#':>2}  {'fused':>5}  {'label':<14} {'conf':>4}  {'visual':>6} {'audio':>5} {'meta':>5}  source"]
    for i, m in enumerate(matches, 1):
        a = m.scores.get("audio")
        flag = "  [review]" if m.review else ""
        rows.append(f"  {i:>2}  {m.fused:5.3f}  {m.label:<14} {m.confidence:4.2f}  {m.scores['visual']:6.3f} "
                    f"{'  -  ' if a is None else f'{a:5.3f}'} {m.scores['metadata']:5.3f}  "
                    f"{m.source_id[:12]} {m.source_uri}{flag}")
        if m.notes:
            rows.append(f"{'':>8}notes: {'; '.join(m.notes)}")
    return "\n".join(rows)


def _fmt_common(common) -> str:
    """The query's common segments (match/common.py), one line each: content many library videos
    share, listed once and counted in no match below; "" when there is none."""
    return "\n".join(f"  common q {c.q_start:.1f}-{c.q_end:.1f} s: in {c.videos} library videos "
                     f"({'+'.join(c.modalities)}), not counted as copying" for c in common)


def _fmt_pair(a: str, b: str, m) -> str:
    """One line for a pair of indexed videos judged copies (dedup and demo print the same)."""
    aud = m.scores.get("audio")
    return (f"{a} ~ {b}  fused {m.fused:.3f}  {m.label:<14} conf {m.confidence:.2f}"
            f"  visual {m.scores['visual']:.3f} audio {'-' if aud is None else f'{aud:.3f}'}"
            f" meta {m.scores['metadata']:.3f}{'  [review]' if m.review else ''}")


def cmd_index(args, cfg: Config) -> int:
    from astradup.pipeline import index

    report = index(args.paths, cfg, progress=lambda s: print(f"[index] {s}", file=sys.stderr))
    if args.json:
        print(json.dumps({"listed": report.listed, "indexed": report.indexed, "skipped": report.skipped,
                          "failed": [{"uri": u, "reason": r} for u, r in report.failed],
                          "media_seconds": report.media_seconds, "wall_seconds": report.wall_seconds,
                          "video_ids": report.video_ids}, indent=2))
    else:
        print(report.summary())
    return 0 if report.indexed or report.skipped or not report.failed else 1


def _kind(sg) -> str:
    """How a copied stretch is shown: "audio copy" for a copied soundtrack, else its modalities."""
    from astradup.records import AudioCopy

    return AudioCopy.FLAG if isinstance(sg, AudioCopy) else "+".join(sg.modalities)


def _segment_rows(query: str, matches) -> list[dict]:
    return [{"query": query, "query_segment": f"{s.q_start:g}-{s.q_end:g}", "source_id": m.source_id,
             "source_uri": m.source_uri, "source_segment": f"{s.s_start:g}-{s.s_end:g}", "score": s.score,
             "modalities": _kind(s)} for m in matches for s in m.copied()]


def cmd_search(args, cfg: Config) -> int:
    from astradup.search import Searcher

    if args.hashes is not None:
        return cmd_search_hashes(args, cfg)
    if args.file is None:
        raise AstraDupError("search needs a video FILE (or --hashes FILE.txt, a vPDQ hash file)")
    searcher = Searcher(cfg)
    q = searcher.query_from_file(args.file)
    matches, common = searcher.search_common(q, top=args.top)
    if args.segments:
        matches = [m for m in matches if m.copied()]
        rows = _segment_rows(args.file, matches)
        if args.csv:
            w = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else
                               ["query", "query_segment", "source_id", "source_uri", "source_segment", "score",
                                "modalities"])
            w.writeheader()
            w.writerows(rows)
        elif args.json:
            print(json.dumps({"query": args.file, "query_id": q.features.video_id, "segments": rows,
                              "common": [c.to_dict() for c in common]}, indent=2))
        else:
            print(f"query {args.file}: {len(rows)} copied segment(s)")
            if common:
                print(_fmt_common(common))
            for r in rows:
                print(f"  query {r['query_segment']:>11} s  <-  {r['source_id'][:12]} {r['source_segment']:>11} s"
                      f"  score {r['score']:.3f}  ({r['modalities']})  {r['source_uri']}")
        return 0
    if args.csv:
        w = csv.writer(sys.stdout)
        w.writerow(["rank", "source_id", "source_uri", "fused", "label", "confidence", "review", "visual", "audio",
                    "metadata"])
        for i, m in enumerate(matches, 1):
            w.writerow([i, m.source_id, m.source_uri, f"{m.fused:.4f}", m.label, f"{m.confidence:.4f}", m.review,
                        *(("" if m.scores.get(k) is None else f"{m.scores[k]:.4f}")
                          for k in ("visual", "audio", "metadata"))])
        return 0
    if args.json:
        print(json.dumps({"query": args.file, "query_id": q.features.video_id,
                          "query_has_audio": q.features.has_audio,
                          "matches": [m.to_dict() for m in matches],
                          "common": [c.to_dict() for c in common]}, indent=2))
    else:
        d = q.features.meta.get("duration") or 0.0
        print(f"query {args.file} ({d:.1f} s, audio {'yes' if q.features.has_audio else 'no'})")
        if common:
            print(_fmt_common(common))
        print(_fmt_matches(matches))
    return 0


def _read_hash_file(path: str):
    """A vPDQ hash file from disk, its size checked before it is read (io/vpdq_file.py checks the rest)."""
    from astradup.io.vpdq_file import MAX_BYTES, HashFileError, parse_vpdq

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{path}: no such hash file")
    if p.stat().st_size > MAX_BYTES:
        raise HashFileError(f"{path}: {p.stat().st_size} bytes, more than the {MAX_BYTES} a hash file may have")
    try:
        return parse_vpdq(p.read_bytes())
    except HashFileError as e:
        raise HashFileError(f"{path}: {e}") from None


def cmd_search_hashes(args, cfg: Config) -> int:
    """`search --hashes FILE.txt`: a vPDQ hash file (another tool's video) matched by vPDQ's rule
    against the PDQ hashes stored for every indexed video; the result rows are the normal search's."""
    from astradup.catalog import Catalog
    from astradup.vpdq_search import search_hashes

    if args.file is not None:
        raise AstraDupError("give either a video FILE or --hashes FILE.txt, not both")
    if args.segments:
        raise AstraDupError("--segments needs a video query: a vPDQ hash matches frames as a set, without segments")
    query = _read_hash_file(args.hashes)
    matches = search_hashes(Catalog(cfg).shards, query, top=args.top or cfg.search.top)
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


def _progress(msg: str) -> None:
    print(f"[dedup] {msg}", file=sys.stderr)


def cmd_dedup(args, cfg: Config) -> int:
    """The groups from the dedup job's pairs (the job runs first, on a local Ray, when its output is
    missing or stale: videos indexed since it last ran are joined against the library)."""
    from astradup.dedup import dedup_groups

    groups, best, uris, partial = dedup_groups(cfg, args.min_label, progress=_progress)
    if args.json:
        print(json.dumps({"groups": [
            {"videos": [{"video_id": v, "uri": uris.get(v, "")} for v in g],
             "pairs": [{"a": a, "b": b, **best[(a, b)].to_dict()} for (a, b) in best if a in g]}
            for g in groups],
            "partial_copies": [{"video_id": q, **sg.__dict__, "audio_copy": _kind(sg) == "audio copy"}
                               for q, sg in partial]}, indent=2))
        return 0
    print(f"{len(groups)} duplicate group(s) among {len(uris)} indexed video(s) (pairs at >= {args.min_label})")
    for qv, sg in partial:
        what = "audio copy" if _kind(sg) == "audio copy" else "partial copy"
        print(f"{what}: {uris.get(qv, qv)} {sg.q_start:g}-{sg.q_end:g} s <- "
              f"{uris.get(sg.source_id, sg.source_id)} {sg.s_start:g}-{sg.s_end:g} s (score {sg.score:.3f})")
    for i, g in enumerate(groups, 1):
        print(f"\ngroup {i}: {len(g)} videos")
        for v in g:
            print(f"  {v[:12]}  {uris.get(v, '')}")
        for (a, b), m in sorted(best.items(), key=lambda kv: -kv[1].fused):
            if a in g:
                print(f"    {_fmt_pair(a[:12], b[:12], m)}{'  (' + '; '.join(m.notes) + ')' if m.notes else ''}")
    return 0


def cmd_report(args, cfg: Config) -> int:
    """HTML + CSV report of the duplicate groups (the same groups as dedup), with thumbnails."""
    from astradup.report import write_report

    summary = write_report(cfg, args.out, args.min_label, thumbs_per_video=args.thumbs,
                           embed_thumbs=args.embed_thumbs)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{summary['groups']} duplicate group(s), {summary['pairs']} pair(s) among {summary['indexed_videos']} "
          f"indexed video(s) (pairs at >= {summary['min_label']}); {summary['thumbnails']} thumbnail(s)")
    for miss in summary["missing_files"]:
        print(f"  no thumbnail for {miss['uri']}: {miss['reason']}")
    print(f"report: {summary['html']}\ncsv:    {summary['csv']}")
    return 0


def cmd_eval(args, cfg: Config) -> int:
    from astradup.eval.metrics import evaluate
    from astradup.eval.segments_csv import read_rows

    res = evaluate(read_rows(args.truth), read_rows(args.pred))
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"LCT-2024: f1 {res['f1']:.4f}  iou {res['iou']:.4f}  score {res['score']:.4f}")
    print(f"VSC22 segment micro-AP: {res['segment_uap']:.4f}")
    for t, r in sorted(res.get("per_transform", {}).items()):
        print(f"  {t:<14} f1 {r['f1']:.3f} iou {r['iou']:.3f} score {r['score']:.3f} segAP {r['segment_uap']:.3f}")
    return 0


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
    n = catalog.reindex()
    print(f"rebuilt the vector store from the Parquet shards: {n} videos")
    return _report_quarantine(catalog)


def _report_quarantine(catalog) -> int:
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


def cmd_serve(args, cfg: Config) -> int:
    """HTTP API + web page on Ray Serve over this index, until Ctrl-C. The search deployment opens
    the Milvus Lite file, so no other astradup process may hold it meanwhile."""
    import signal

    from astradup.errors import ConfigError
    from serve import local
    from serve.settings import args_from_env

    def _stop(signum, frame):
        raise KeyboardInterrupt  # SIGTERM too shuts Serve down, rather than orphaning its actors

    # The builder's arguments (serve.app:build), as `serve run serve.app:build key=value` gives them;
    # the ASTRADUP_* service variables lie under them.
    given = {"embedder_max_replicas": max(1, args.embedder_replicas), "insecure": args.insecure,
             "config": args.config, "data_dir": args.data_dir, "milvus_uri": args.milvus_uri}
    if args.max_upload_mb:
        given["max_upload_mb"] = args.max_upload_mb
    try:
        app_args = args_from_env(**{k: v for k, v in given.items() if v is not None})
    except ValueError as e:
        raise ConfigError(str(e)) from None
    url = local.start_args(app_args, host=args.host, port=args.port)
    signal.signal(signal.SIGTERM, _stop)  # after start: ray.init installs a handler of its own
    print(f"AstraDup is serving {url}/ (API docs {url}/docs; API key {'required' if app_args.api_key else 'off'})."
          " Ctrl-C stops it.", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        local.stop()
    return 0


def cmd_demo(args, cfg: Config) -> int:
    """The main job on embedded defaults: build a sample corpus from real media, index it, list duplicates."""
    from astradup.demo_corpus import build_demo_corpus
    from astradup.pipeline import index

    out = Path(args.out)
    t0 = time.time()
    info = build_demo_corpus(out)
    print(f"[demo] sample corpus in {out}/videos ({time.time() - t0:.0f} s)")
    from astradup.catalog import Catalog
    from astradup.dedup import release_vectors

    catalog = Catalog(cfg)
    report = index([str(out / "videos")], cfg, catalog=catalog,
                   progress=lambda s: print(f"[index] {s}", file=sys.stderr))
    release_vectors(catalog)  # the dedup job's worker opens the Milvus Lite file next
    print(report.summary())
    from astradup.dedup import dedup_groups

    groups, best, uris, partial = dedup_groups(cfg, "similar", progress=_progress)
    name = {v: Path(u).name for v, u in uris.items()}
    print(f"\n{len(groups)} group(s) of copies found (pairs labelled similar or above):")
    for i, g in enumerate(groups, 1):
        print(f"\ngroup {i}: " + ", ".join(sorted(name[v] for v in g)))
        for (a, b), m in sorted(best.items(), key=lambda kv: -kv[1].fused):
            if a in g:
                print(f"  {_fmt_pair(f'{name[a]:>12}', f'{name[b]:<12}', m)}")
    if partial:
        print("\npartial copies (a stretch of one video re-used in another):")
        for qv, sg in partial:
            print(f"  {name[qv]} {sg.q_start:g}-{sg.q_end:g} s  <-  {name[sg.source_id]} {sg.s_start:g}-{sg.s_end:g} s"
                  f"  score {sg.score:.3f} ({_kind(sg)})")
    expected = info.get("copies") if isinstance(info, dict) else None
    if expected:
        print("\nexpected (truth.json):")
        for c in expected:
            print(f"  {c.get('file')} <- {c.get('source')} ({c.get('transform')})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="astradup", description=__doc__)
    p.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    p.add_argument("--config", help="YAML config (default: astradup/config/default.yaml + ASTRADUP_* env)")
    p.add_argument("--data-dir", help="where the Milvus Lite file and Parquet shards live")
    p.add_argument("--milvus-uri", help="Milvus Lite file or server URI (http://host:19530)")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("index", help="index files, folders or s3:// prefixes")
    s.add_argument("paths", nargs="+")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_index)
    s = sub.add_parser("search", help="find indexed videos that FILE copies")
    s.add_argument("file", nargs="?")
    _add_hashes_option(s)
    s.add_argument("--top", type=int, default=None)
    s.add_argument("--segments", action="store_true", help="print the copied segments (partial copies)")
    out = s.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true")
    out.add_argument("--csv", action="store_true")
    s.set_defaults(fn=cmd_search)
    _add_export_hashes(sub)
    s = sub.add_parser("eval", help="score predicted segments against truth (LCT-2024 score, VSC22 micro-AP)")
    s.add_argument("--truth", required=True)
    s.add_argument("--pred", required=True)
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_eval)
    s = sub.add_parser("dedup", help="every duplicate group in the index")
    s.add_argument("--min-label", choices=["duplicate", "near-duplicate", "similar"], default="near-duplicate")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_dedup)
    s = sub.add_parser("report", help="HTML + CSV report of the duplicate groups, with thumbnails")
    s.add_argument("--out", default="astradup_report", help="folder for report.html, report.csv, thumbs/")
    s.add_argument("--min-label", type=lambda v: v.replace("_", "-"),
                   choices=["duplicate", "near-duplicate", "similar"], default="near-duplicate")
    s.add_argument("--thumbs", type=int, default=3, help="frames per video (ffmpeg, from the indexed file)")
    s.add_argument("--embed-thumbs", action="store_true",
                   help="inline the frames in report.html (one file to mail) instead of thumbs/")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    s.set_defaults(fn=cmd_report)
    s = sub.add_parser("delete", help="remove a video's vectors and mark it deleted")
    s.add_argument("video_id")
    s.set_defaults(fn=cmd_delete)
    s = sub.add_parser("stats", help="counts of videos, vectors and shards")
    s.set_defaults(fn=cmd_stats)
    s = sub.add_parser("reindex", help="rebuild Milvus from the Parquet shards")
    s.set_defaults(fn=cmd_reindex)
    s = sub.add_parser("serve", help="HTTP API and web page (Ray Serve) over the index")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for every interface)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--embedder-replicas", type=int, default=2, help="most embedder replicas (autoscaled from 1)")
    s.add_argument("--max-upload-mb", type=float, default=0,
                   help="upload size limit (default $ASTRADUP_MAX_UPLOAD_MB or 512)")
    s.add_argument("--insecure", action="store_true",
                   help="allow a non-loopback --host without $ASTRADUP_API_KEY (an open API)")
    s.set_defaults(fn=cmd_serve)
    s = sub.add_parser("demo", help="build a sample corpus from real media, index it, print duplicate groups")
    s.add_argument("--out", default="demo_corpus")
    s.set_defaults(fn=cmd_demo)
    return p


def _add_hashes_option(s: argparse.ArgumentParser) -> None:
    s.add_argument("--hashes", metavar="FILE.txt",
                   help="search with a vPDQ hash file (ThreatExchange vpdq's per-frame text) instead of a video")


def _add_export_hashes(sub) -> None:
    s = sub.add_parser("export-hashes", help="write indexed videos' per-frame hashes in another tool's format")
    s.add_argument("--format", choices=["vpdq"], required=True, help="vpdq: ThreatExchange vPDQ's text format")
    s.add_argument("out", metavar="OUT_DIR_OR_FILE", help="a folder (one <video_id>.txt each) or one .txt file")
    s.add_argument("video_ids", metavar="VIDEO_ID", nargs="*", help="videos to export (default: all)")
    s.set_defaults(fn=cmd_export_hashes)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = _cfg(args)
        from astradup.logs import setup_logging

        setup_logging(cfg.log)  # logs on stderr (JSON lines by default); results stay alone on stdout
        return args.fn(args, cfg)
    except (AstraDupError, FileNotFoundError, KeyError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"astradup: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
