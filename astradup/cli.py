"""`astradup` command line: index, search, fingerprint, export-descriptors, eval, dedup, report, delete, stats,
reindex, serve, demo."""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

from astradup.config import Config, load_config
from astradup.errors import AstraDupError
from astradup.progress import Progress
from astradup.records import Label, SegmentMatch

EXAMPLES = """\
examples:
  astradup index ./videos s3://bucket/videos       index folders, files or s3:// prefixes
  astradup search clip.mp4 --top 5                 which indexed videos clip.mp4 copies
  astradup search clip.mp4 --segments --csv        the copied stretches, as CSV
  astradup dedup --min-label similar --json        every group of copies in the index
  astradup report --out ./report                   the groups as report.html + report.csv
  astradup --quiet reindex                         rebuild Milvus from the shards, no progress output
  astradup serve --port 8000                       HTTP API and web page (reviewers' verdicts)

A pair a reviewer rejected (web page or POST /reviews) is left out of search, dedup and report;
a confirmed one is marked "confirmed". Progress bars are drawn when stdout and stderr are a
terminal; --quiet turns them and the progress lines off.
"""


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


def _progress(args: argparse.Namespace) -> Progress:
    """The command's progress output (``main`` makes it from --quiet and the terminal)."""
    pr = getattr(args, "progress", None)
    return pr if pr is not None else Progress.for_cli(bool(getattr(args, "quiet", False)))


def _verdict_mark(m) -> str:
    """How a text line marks a pair a reviewer confirmed."""
    return f"  [{m.decision}]" if getattr(m, "decision", None) else ""


def _fmt_matches(matches, catalog=None) -> str:
    if not matches:
        return "  no match in the index"
    rows = [f"  {'#':>2}  {'fused':>5}  {'label':<14} {'conf':>4}  {'visual':>6} {'audio':>5} {'meta':>5}  source"]
    for i, m in enumerate(matches, 1):
        a = m.scores.get("audio")
        flag = ("  [review]" if m.review else "") + _verdict_mark(m)
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
            f" meta {m.scores['metadata']:.3f}{'  [review]' if m.review else ''}{_verdict_mark(m)}")


def cmd_index(args, cfg: Config) -> int:
    from astradup.pipeline import index

    pr = _progress(args)
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


def _kind(sg) -> str:
    """How a copied stretch is shown: "audio copy" for a copied soundtrack, else its modalities."""
    from astradup.records import AudioCopy

    return AudioCopy.FLAG if isinstance(sg, AudioCopy) else "+".join(sg.modalities)


SEGMENT_FIELDS = ["query", "query_segment", "source_id", "source_uri", "source_segment", "score", "modalities",
                  "decision"]


def _segment_rows(query: str, matches) -> list[dict]:
    return [{"query": query, "query_segment": f"{s.q_start:g}-{s.q_end:g}", "source_id": m.source_id,
             "source_uri": m.source_uri, "source_segment": f"{s.s_start:g}-{s.s_end:g}", "score": s.score,
             "modalities": _kind(s), "decision": m.decision or ""} for m in matches for s in m.copied()]


def _vsc_rows(query_name: str, matches) -> list:
    """Copied stretches as VSC22 matches: query_id and ref_id are file stems, as VSC22 names videos
    (an indexed video without a uri keeps its content id)."""
    from astradup.eval.vsc_format import vsc_id

    return [SegmentMatch(vsc_id(query_name), s.q_start, s.q_end, vsc_id(m.source_uri) if m.source_uri else m.source_id,
                         s.s_start, s.s_end, float(s.score)) for m in matches for s in m.copied()]


def cmd_search(args, cfg: Config) -> int:
    from astradup.reviews import Verdicts
    from astradup.search import Searcher

    if args.hashes is not None:
        return cmd_search_hashes(args, cfg)
    if args.top is not None and args.top < 1:
        raise AstraDupError(f"--top must be >= 1, got {args.top}")
    if (args.file is None) == (args.fingerprint is None):
        raise AstraDupError("search needs a video FILE, --fingerprint FP or --hashes FILE.txt (one of them)")
    if args.format == "vsc" and not (args.segments and args.csv):
        raise AstraDupError("--format vsc writes copied segments as CSV: add --segments --csv")
    searcher = Searcher(cfg)
    if args.fingerprint:
        q = searcher.query_from_fingerprint(args.fingerprint)
        args.file = q.features.uri.removeprefix("fingerprint:") or args.fingerprint  # the video it was made of
    else:
        q = searcher.query_from_file(args.file)
    qid = q.features.video_id
    top = args.top or cfg.search.top
    verdicts = Verdicts.load(cfg.data_dir, video_id=qid)
    # Asked for as many more as there are rejected pairs, so dropping them still leaves ``top``.
    matches, common = searcher.search_common(q, top=top + verdicts.rejected_count())
    matches = verdicts.matches(qid, matches, top)
    if args.segments:
        matches = [m for m in matches if m.copied()]
        if args.format == "vsc":
            from astradup.eval.segments_csv import LAYOUT_VSC, write_rows

            write_rows(sys.stdout, _vsc_rows(args.file, matches), layout=LAYOUT_VSC)
            return 0
        rows = _segment_rows(args.file, matches)
        if args.csv:
            w = csv.DictWriter(sys.stdout, fieldnames=SEGMENT_FIELDS)
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
                      f"  score {r['score']:.3f}  ({r['modalities']})  {r['source_uri']}"
                      f"{'  [' + r['decision'] + ']' if r['decision'] else ''}")
        return 0
    if args.csv:
        w = csv.writer(sys.stdout)
        w.writerow(["rank", "source_id", "source_uri", "fused", "label", "confidence", "review", "decision", "visual",
                    "audio", "metadata"])
        for i, m in enumerate(matches, 1):
            w.writerow([i, m.source_id, m.source_uri, f"{m.fused:.4f}", m.label, f"{m.confidence:.4f}", m.review,
                        m.decision or "", *(("" if m.scores.get(k) is None else f"{m.scores[k]:.4f}")
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


def _read_hash_bytes(path: str) -> bytes:
    """A vPDQ hash file's bytes from disk, its size checked before it is read."""
    from astradup.io.vpdq_file import MAX_BYTES, HashFileError

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{path}: no such hash file")
    if p.stat().st_size > MAX_BYTES:
        raise HashFileError(f"{path}: {p.stat().st_size} bytes, more than the {MAX_BYTES} a hash file may have")
    return p.read_bytes()


def _parse_hash_file(path: str, data: bytes):
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
    data = _read_hash_bytes(args.hashes)
    query = _parse_hash_file(args.hashes, data)
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


def cmd_dedup(args, cfg: Config) -> int:
    """The groups from the dedup job's pairs (the job runs first, on a local Ray, when its output is
    missing or stale: videos indexed since it last ran are joined against the library)."""
    from astradup.dedup import dedup_groups
    from astradup.reviews import Verdicts

    verdicts = Verdicts.load(cfg.data_dir)
    pr = _progress(args)
    with pr:
        groups, best, uris, partial = dedup_groups(cfg, args.min_label, progress=pr.teller("dedup"),
                                                   verdicts=verdicts, tick=pr.tick("dedup join", "video"))
    if args.json:
        print(json.dumps({"groups": [
            {"videos": [{"video_id": v, "uri": uris.get(v, "")} for v in g],
             "pairs": [{"a": a, "b": b, **best[(a, b)].to_dict()} for (a, b) in best if a in g]}
            for g in groups],
            "partial_copies": [{"video_id": q, **sg.as_row(), "audio_copy": _kind(sg) == "audio copy",
                                "decision": verdicts.decision(q, sg.source_id)} for q, sg in partial]}, indent=2))
        return 0
    print(f"{len(groups)} duplicate group(s) among {len(uris)} indexed video(s) (pairs at >= {args.min_label})")
    for qv, sg in partial:
        what = "audio copy" if _kind(sg) == "audio copy" else "partial copy"
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
                print(f"    {_fmt_pair(a[:12], b[:12], m)}{'  (' + '; '.join(m.notes) + ')' if m.notes else ''}")
    return 0


def _moments_arg(value: str) -> int:
    """--moments: an integer 0..MAX_MOMENTS_PER_PAIR (argparse turns the error into one line, exit 2)."""
    from astradup.report import MAX_MOMENTS_PER_PAIR

    try:
        n = int(value)
    except ValueError:
        n = -1
    if not 0 <= n <= MAX_MOMENTS_PER_PAIR:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to {MAX_MOMENTS_PER_PAIR}, got {value!r}")
    return n


def cmd_report(args, cfg: Config) -> int:
    """HTML + CSV report of the duplicate groups (the same groups as dedup), with thumbnails."""
    from astradup.report import write_report

    pr = _progress(args)
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


def cmd_fingerprint(args, cfg: Config) -> int:
    """The query features of a video as one file (astradup/fingerprint.py), to search elsewhere."""
    from astradup.fingerprint import write_fingerprint
    from astradup.search import Searcher

    searcher = Searcher(cfg)
    q = searcher.query_from_file(args.video)
    try:
        size = write_fingerprint(args.out, q.features, q.mirror, searcher.embedder.name)
    except OSError as e:
        raise AstraDupError(f"{args.out}: cannot write: {e.strerror or e}") from None
    print(f"fingerprint of {args.video} ({q.features.video_id}): {len(q.features.timestamps)} frames, "
          f"{len(q.features.audio_windows)} audio windows, {size} bytes -> {args.out}")
    return 0


def cmd_export_descriptors(args, cfg: Config) -> int:
    """Frame embeddings as a VSC22 descriptor file: the indexed videos', or with --query the given
    files' (embedded as a search embeds a query)."""
    from astradup.eval.vsc_format import export_descriptors, vsc_id

    from astradup.catalog import Catalog
    from astradup.match import score_norm

    step = 1.0 / cfg.decode.fps if cfg.decode.fps > 0 else 1.0
    beta = args.normalise
    if not (0.0 <= beta <= 4.0):
        raise AstraDupError(f"--normalise must be between 0 and 4, got {beta}")
    shards = Catalog(cfg).shards
    if args.query:
        from astradup.search import Searcher

        searcher = Searcher(cfg)
        feats = [(vsc_id(path), searcher.query_from_file(path).features) for path in args.query]
        folded = {}
        if beta > 0:
            # one scan of the library: each query row's 2nd-best indexed video (match/score_norm.py)
            bgs = [score_norm.Background(f.embeddings, k=2) for _, f in feats]
            for batch in shards.iter_features():
                for lib in batch:
                    for bg in bgs:
                        bg.add(lib.embeddings)
            folded = {i: score_norm.fold(f.embeddings, bg.value(), beta) for i, ((_, f), bg) in
                      enumerate(zip(feats, bgs))}

        def videos():
            for i, (name, f) in enumerate(feats):
                yield name, f.timestamps, folded.get(i, f.embeddings)
    else:
        def videos():
            for batch in shards.iter_features():
                for f in batch:
                    emb = score_norm.pad_refs(f.embeddings) if beta > 0 else f.embeddings
                    yield (vsc_id(f.uri) if f.uri else f.video_id), f.timestamps, emb
    res = export_descriptors(args.out, videos(), default_step=step)
    print(f"{res['videos']} video(s), {res['rows']} rows of {res['dim']}-d descriptors -> {res['path']}")
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
    pr = _progress(args)
    with pr:
        n = catalog.reindex(tick=pr.tick("reindex", "video"))
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
    pr = _progress(args)
    report = index([str(out / "videos")], cfg, catalog=catalog, progress=pr.teller("index"))
    release_vectors(catalog)  # the dedup job's worker opens the Milvus Lite file next
    print(report.summary())
    from astradup.dedup import dedup_groups

    groups, best, uris, partial = dedup_groups(cfg, "similar", progress=pr.teller("dedup"))
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
    p = argparse.ArgumentParser(prog="astradup", description=__doc__, epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {package_version()}",
                   help="print the installed version and exit")
    p.add_argument("--config", help="YAML config (default: astradup/config/default.yaml + ASTRADUP_* env)")
    p.add_argument("--data-dir", help="where the Milvus Lite file and Parquet shards live")
    p.add_argument("--milvus-uri", help="Milvus Lite file or server URI (http://host:19530)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bars or progress lines on stderr (results and errors only)")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND", help="what to do (COMMAND --help for more)")
    s = sub.add_parser("index", help="index files, folders or s3:// prefixes")
    s.add_argument("paths", nargs="+", help="video files, folders (searched recursively) or s3://bucket/prefix")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    s.set_defaults(fn=cmd_index)
    s = sub.add_parser("search", help="find indexed videos that FILE copies")
    s.add_argument("file", nargs="?", help="the query video, a local file (or give --fingerprint instead)")
    s.add_argument("--fingerprint", metavar="FP",
                   help="search with a fingerprint file (`astradup fingerprint`) instead of the video")
    _add_hashes_option(s)
    s.add_argument("--top", type=int, default=None, help="most matches to list (default: config search.top)")
    s.add_argument("--segments", action="store_true", help="print the copied segments (partial copies)")
    out = s.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the matches as JSON")
    out.add_argument("--csv", action="store_true", help="print the matches (or --segments) as CSV")
    s.add_argument("--format", choices=["astradup", "vsc"], default="astradup",
                   help="with --segments --csv: vsc writes VSC22's matches layout (query_id,ref_id,query_start,"
                        "query_end,ref_start,ref_end,score; ids are file stems, as VSC22's ground truth names "
                        "videos)")
    s.set_defaults(fn=cmd_search)
    s = sub.add_parser("fingerprint", help="write what a search needs from VIDEO to one Parquet file "
                                           "(search with it elsewhere, without the video)")
    s.add_argument("video", help="the video file (or s3:// object)")
    s.add_argument("-o", "--out", required=True, help="the fingerprint file to write (.parquet)")
    s.set_defaults(fn=cmd_fingerprint)
    s = sub.add_parser("export-descriptors", help="frame embeddings of the indexed videos as a VSC22 "
                                                  "descriptor file (.npz)")
    s.add_argument("out", help="the .npz file to write (keys video_ids, timestamps, features)")
    s.add_argument("--format", choices=["vsc"], default="vsc", help="descriptor layout (VSC22's, the only one)")
    s.add_argument("--query", nargs="+", metavar="FILE",
                   help="export these video files' descriptors (embedded as search queries) instead of the index's")
    s.add_argument("--normalise", type=float, default=0.0, metavar="BETA",
                   help="score normalisation as the VSC22 descriptor winners did (0 = off; 0.5 measured best): "
                        "query rows get a column -BETA x their similarity to the 2nd most similar indexed video, "
                        "indexed rows a column of 1, so inner products are normalised scores; export both sides "
                        "with the same BETA")
    s.set_defaults(fn=cmd_export_descriptors)
    _add_export_hashes(sub)
    s = sub.add_parser("eval", help="score predicted segments against truth (LCT-2024 score, VSC22 micro-AP)")
    s.add_argument("--truth", required=True,
                   help="truth CSV: astradup layout (query_segment, source_segment) or VSC22's (ref_id, "
                        "query_start...), told apart by the header")
    s.add_argument("--pred", required=True, help="predictions CSV, either layout (with a score column)")
    s.add_argument("--json", action="store_true", help="print the scores as JSON")
    s.set_defaults(fn=cmd_eval)
    s = sub.add_parser("dedup", help="every duplicate group in the index")
    s.add_argument("--min-label", choices=[lab.value for lab in Label.reportable()], default="near-duplicate",
                   help="weakest label that groups a pair (default near-duplicate); weaker pairs with a copied "
                        "stretch are listed as partial copies")
    s.add_argument("--json", action="store_true", help="print the groups and partial copies as JSON")
    s.set_defaults(fn=cmd_dedup)
    s = sub.add_parser("report", help="HTML + CSV report of the duplicate groups, with thumbnails")
    s.add_argument("--out", default="astradup_report", help="folder for report.html, report.csv, thumbs/")
    s.add_argument("--min-label", type=lambda v: v.replace("_", "-"),
                   choices=[lab.value for lab in Label.reportable()], default="near-duplicate",
                   help="weakest label that groups a pair (default near-duplicate)")
    s.add_argument("--thumbs", type=int, default=3, help="frames per video (ffmpeg, from the indexed file)")
    s.add_argument("--embed-thumbs", action="store_true",
                   help="inline the frames in report.html (one file to mail) instead of thumbs/")
    s.add_argument("--moments", type=_moments_arg, default=4,
                   help="copied intervals per pair pictured on both sides, best-scored first (0-16; 0: none)")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    s.set_defaults(fn=cmd_report)
    s = sub.add_parser("delete", help="remove a video's vectors and mark it deleted")
    s.add_argument("video_id", help="the video's id (32 hex characters, as search and dedup print it)")
    s.set_defaults(fn=cmd_delete)
    s = sub.add_parser("stats", help="counts of videos, vectors and shards")
    s.set_defaults(fn=cmd_stats)
    s = sub.add_parser("reindex", help="rebuild Milvus from the Parquet shards")
    s.set_defaults(fn=cmd_reindex)
    s = sub.add_parser("serve", help="HTTP API and web page (Ray Serve) over the index")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for every interface)")
    s.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    s.add_argument("--embedder-replicas", type=int, default=2, help="most embedder replicas (autoscaled from 1)")
    s.add_argument("--max-upload-mb", type=float, default=0,
                   help="upload size limit (default $ASTRADUP_MAX_UPLOAD_MB or 512)")
    s.add_argument("--insecure", action="store_true",
                   help="allow a non-loopback --host without $ASTRADUP_API_KEY (an open API)")
    s.set_defaults(fn=cmd_serve)
    s = sub.add_parser("demo", help="build a sample corpus from real media, index it, print duplicate groups")
    s.add_argument("--out", default="demo_corpus", help="folder for the sample corpus and its truth.json")
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
    args.progress = Progress.for_cli(args.quiet)
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
