"""AstraDup next to public peers (videohash, vPDQ, Chromaprint) on the same benchmark, in one run.

    .venv/bin/python benchmarks/peers_compare.py --bench /work/benchdata/dev20 \
        [--peers-python /tmp/peersvenv/bin/python] [--peers-script ../shared/bench/peers.py] \
        [--peers videohash,vpdq,chromaprint] [--cache /tmp/astradup-peerscache] [--json OUT]

The peers run through ``peers.py`` (the shared scorer) in their own virtualenv (``--peers-python``
or $PEERS_PYTHON; install: ``python3 -m venv /tmp/peersvenv && /tmp/peersvenv/bin/pip install
numpy videohash pyacoustid pdqhash vpdq``, vpdq needing Debian's libav*-dev). AstraDup's features
of the same sources and queries are computed in this process with one thread (decord, ONNX
Runtime, BLAS), and its whole-video scores (pair_evidence + fusion, every source a candidate)
are put through peers.py's own ``evaluate``, so recall@1 (ties split), micro-AP and the
distractor false-alarm rate are computed by the same code for every tool. AstraDup's match rule:
a label other than "none".

Speed is fingerprinting speed, media seconds per CPU second (children included), over sources
and queries, as peers.py measures it; with ``--cache`` both sides reuse their first measurement.
The last line says whether AstraDup beats every peer on recall@1 and micro-AP and stays within
2x of the fastest visual peer's speed.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread: CPU seconds comparable with the peers'

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fingerprint_size import extract_corpus, score_corpus  # noqa: E402

from astradup.config import load_config  # noqa: E402
from astradup.eval.segments_csv import read_rows  # noqa: E402

VISUAL_PEERS = ("videohash", "vpdq")
DEFAULT_SCRIPT = Path(__file__).resolve().parents[2] / "shared" / "bench" / "peers.py"


def load_peers_module(path: Path):
    spec = importlib.util.spec_from_file_location("peers_scorer", path)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def run_peer(python: str, script: Path, bench: Path, peer: str, out: Path, cache: Path | None) -> dict:
    cmd = [python, str(script), "--bench", str(bench), "--peer", peer, "--out", str(out)]
    if cache:
        cmd += ["--cache", str(cache / peer)]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"peers.py --peer {peer} failed ({p.returncode}): {p.stderr.strip()[-800:]}")
    res = json.loads(out.read_text())
    res["_wall_s"] = time.perf_counter() - t0
    return res


def astradup_result(bench: Path, peers_mod, cache: Path | None) -> dict:
    cfg = load_config(None, {})
    c = extract_corpus(bench, cfg, (cfg.embedder.short_side,), cache / "astradup" if cache else None)
    truth_rows = read_rows(bench / "truth.csv")
    r = score_corpus(c, truth_rows, cfg, segments=True)
    truth = peers_mod.load_truth(str(bench / "truth.csv"))
    S, match = r["fused"], r["labelled"]
    res = peers_mod.evaluate(r["qids"], r["sids"], S, match, truth, {"score": S})
    media = sum(c.media_s.values())
    cpu = sum(c.cpu.values())
    res["fingerprint"] = {"media_s": media, "cpu_s": cpu, "media_s_per_cpu_s": media / cpu, "stages_cpu_s": c.cpu}
    res["segments"] = {"lct": r["lct"], "seg_uap": r["seg_uap"]}
    return res


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True)
    ap.add_argument("--peers-python", default=os.environ.get("PEERS_PYTHON", "/tmp/peersvenv/bin/python"))
    ap.add_argument("--peers-script", default=str(DEFAULT_SCRIPT))
    ap.add_argument("--peers", default="videohash,vpdq,chromaprint")
    ap.add_argument("--cache", default="/tmp/astradup-peerscache", help="'' = measure everything afresh")
    ap.add_argument("--out-dir", default="/tmp/astradup-peers")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    bench = Path(args.bench).resolve()
    script = Path(args.peers_script).resolve()
    cache = Path(args.cache) if args.cache else None
    outdir = Path(args.out_dir)
    outdir.mkdir(parents=True, exist_ok=True)
    peers_mod = load_peers_module(script)
    print(f"# AstraDup vs peers on {bench}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
          f"(speed is CPU time, so load disturbs it less than wall time)")

    results: dict[str, dict] = {}
    for peer in [p for p in args.peers.split(",") if p]:
        try:
            results[peer] = run_peer(args.peers_python, script, bench, peer, outdir / f"{peer}.json", cache)
            print(f"  {peer}: done in {results[peer]['_wall_s']:.0f} s", file=sys.stderr, flush=True)
        except Exception as e:  # noqa: BLE001 - a peer that cannot run is reported as such
            print(f"  {peer}: NOT RUN ({e})")
    results["astradup"] = astradup_result(bench, peers_mod, cache)

    fastest_visual = max((results[p]["fingerprint"]["media_s_per_cpu_s"] for p in VISUAL_PEERS if p in results),
                         default=float("nan"))
    ad = results["astradup"]
    print(f"\n{'tool':<12} {'media-s/CPU-s':>13} {'vs fastest visual':>17} {'recall@1':>9} {'micro-AP':>9} "
          f"{'FA distr.':>9}  {'AstraDup/peer recall, AP':>24}")
    for name, r in results.items():
        sp = r["fingerprint"]["media_s_per_cpu_s"]
        rec, mAP = r["recall_at_1_overall"], r["micro_ap"]
        ratio = "" if name == "astradup" else \
            f"{ad['recall_at_1_overall'] / max(rec, 1e-9):8.2f}x, {ad['micro_ap'] / max(mAP, 1e-9):6.2f}x"
        print(f"{name:<12} {sp:13.1f} {sp / fastest_visual:16.2f}x {rec:9.3f} {mAP:9.3f} "
              f"{r['false_alarm_rate_distractors']:9.3f}  {ratio:>24}")
    transforms = sorted({t for r in results.values() for t in r["recall_at_1"]})
    print("\nrecall@1 per transform")
    print(f"{'transform':<14}" + "".join(f"{n:>12}" for n in results))
    for t in transforms:
        print(f"{t:<14}" + "".join(f"{r['recall_at_1'].get(t, float('nan')):12.3f}" for r in results.values()))
    print(f"\nAstraDup segments (no peer localises copies): LCT-2024 {ad['segments']['lct']:.3f}, "
          f"VSC22 segment micro-AP {ad['segments']['seg_uap']:.3f}; its CPU s by stage: "
          + ", ".join(f"{k} {v:.0f}" for k, v in ad["fingerprint"]["stages_cpu_s"].items()))
    if args.json:
        slim = {k: {kk: vv for kk, vv in v.items() if kk not in ("scores", "per_query")} for k, v in results.items()}
        Path(args.json).write_text(json.dumps(slim, indent=1, default=float))
    peers = [p for p in results if p != "astradup"]
    def better(p: str) -> bool:  # not worse on either figure, better on at least one
        a = (ad["recall_at_1_overall"], ad["micro_ap"])
        b = (results[p]["recall_at_1_overall"], results[p]["micro_ap"])
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    beats = all(better(p) for p in peers)
    speed_ratio = ad["fingerprint"]["media_s_per_cpu_s"] / fastest_visual
    print(f"\nAstraDup: recall@1 {ad['recall_at_1_overall']:.3f}, micro-AP {ad['micro_ap']:.3f}, "
          f"{ad['fingerprint']['media_s_per_cpu_s']:.1f} media-s per CPU-s = {speed_ratio:.2f}x the fastest visual peer; "
          f"beats every peer on quality: {'yes' if beats else 'NO'}; within 2x of its speed: "
          f"{'yes' if speed_ratio >= 0.5 else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
