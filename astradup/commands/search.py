"""`astradup search` and `astradup fingerprint`: which indexed videos a query video copies, and
the query features written to a file so the search can run elsewhere."""
from __future__ import annotations

import csv
import json
import sys

from astradup.commands.hashes import cmd_search_hashes
from astradup.commands.output import kind, verdict_mark
from astradup.config import Config
from astradup.errors import AstraDupError
from astradup.records import SegmentMatch


def fmt_matches(matches) -> str:
    """The matches as a table for a person: one row each, its notes under it."""
    if not matches:
        return "  no match in the index"
    rows = [f"  {'#':>2}  {'fused':>5}  {'label':<14} {'conf':>4}  {'visual':>6} {'audio':>5} {'meta':>5}  source"]
    for i, m in enumerate(matches, 1):
        a = m.scores.get("audio")
        flag = ("  [review]" if m.review else "") + verdict_mark(m)
        rows.append(f"  {i:>2}  {m.fused:5.3f}  {m.label:<14} {m.confidence:4.2f}  {m.scores['visual']:6.3f} "
                    f"{'  -  ' if a is None else f'{a:5.3f}'} {m.scores['metadata']:5.3f}  "
                    f"{m.source_id[:12]} {m.source_uri}{flag}")
        if m.notes:
            rows.append(f"{'':>8}notes: {'; '.join(m.notes)}")
    return "\n".join(rows)


def fmt_common(common) -> str:
    """The query's common segments (match/common.py), one line each: content many library videos
    share, listed once and counted in no match below; "" when there is none."""
    return "\n".join(f"  common q {c.q_start:.1f}-{c.q_end:.1f} s: in {c.videos} library videos "
                     f"({'+'.join(c.modalities)}), not counted as copying" for c in common)


SEGMENT_FIELDS = ["query", "query_segment", "source_id", "source_uri", "source_segment", "score", "modalities",
                  "decision"]


def segment_rows(query: str, matches) -> list[dict]:
    return [{"query": query, "query_segment": f"{s.q_start:g}-{s.q_end:g}", "source_id": m.source_id,
             "source_uri": m.source_uri, "source_segment": f"{s.s_start:g}-{s.s_end:g}", "score": s.score,
             "modalities": kind(s), "decision": m.decision or ""} for m in matches for s in m.copied()]


def vsc_rows(query_name: str, matches) -> list:
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

            write_rows(sys.stdout, vsc_rows(args.file, matches), layout=LAYOUT_VSC)
            return 0
        rows = segment_rows(args.file, matches)
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
                print(fmt_common(common))
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
            print(fmt_common(common))
        print(fmt_matches(matches))
    return 0


def cmd_fingerprint(args, cfg: Config) -> int:
    """The query features of a video as one file (astradup/fingerprint.py), to search elsewhere."""
    from astradup.fingerprint import write_fingerprint
    from astradup.search import Searcher

    searcher = Searcher(cfg)
    q = searcher.query_from_file(args.video)
    try:
        size = write_fingerprint(args.out, q.features, q.mirror, searcher.embedder.name, q.pitch, q.pitch_codes)
    except OSError as e:
        raise AstraDupError(f"{args.out}: cannot write: {e.strerror or e}") from None
    print(f"fingerprint of {args.video} ({q.features.video_id}): {len(q.features.timestamps)} frames, "
          f"{len(q.features.audio_windows)} audio windows, {size} bytes -> {args.out}")
    return 0
