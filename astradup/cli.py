"""`astradup` command line: index, search, fingerprint, export-descriptors, eval, dedup, report, delete, stats,
reindex, serve, demo."""
from __future__ import annotations

import argparse
import sys

from astradup.commands.duplicates import cmd_dedup, cmd_demo, cmd_report
from astradup.commands.hashes import cmd_export_hashes
from astradup.commands.library import cmd_delete, cmd_index, cmd_reindex, cmd_stats
from astradup.commands.search import cmd_fingerprint, cmd_search
from astradup.commands.serve import cmd_serve
from astradup.commands.vsc import cmd_eval, cmd_export_descriptors
from astradup.config import Config, load_config
from astradup.errors import AstraDupError
from astradup.match.joint_descriptor import DEFAULT_AUDIO_SHARE
from astradup.progress import Progress
from astradup.records import Label

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


def _moments_arg(value: str) -> int:
    """--moments: an integer 0..MAX_MOMENTS_PER_PAIR (argparse turns the error into one line, exit 2)."""
    from astradup.report.thumbs import MAX_MOMENTS_PER_PAIR

    try:
        n = int(value)
    except ValueError:
        n = -1
    if not 0 <= n <= MAX_MOMENTS_PER_PAIR:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to {MAX_MOMENTS_PER_PAIR}, got {value!r}")
    return n


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
    s.add_argument("--audio-share", type=float, default=DEFAULT_AUDIO_SHARE, metavar="S",
                   help=f"each row is the frame embedding joined by the audio window at that second, so inner "
                        f"products are (1-S) x frame + S x audio similarity (default {DEFAULT_AUDIO_SHARE}, measured "
                        "best; 0 = frame embeddings alone); export both sides with the same S")
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
    s = sub.add_parser("delete", help="remove videos' vectors and mark them deleted")
    s.add_argument("video_id", nargs="*", help="a video's id (32 hex characters, as search and dedup print it)")
    s.add_argument("--from", dest="from_file", metavar="FILE",
                   help="also the ids in FILE, one per line ('-' = stdin; blank lines and # comments skipped)")
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
