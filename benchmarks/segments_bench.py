"""Partial-copy benchmark: index a benchmark's sources, search every query for copied segments,
write predictions in the truth CSV's format, and print the LCT-2024 score and VSC22 segment
micro-AP overall and per transform, the VSC22 descriptor micro-AP, distractor false alarms, and a
sweep table over alignment settings (one row per setting) so the defaults are chosen by measurement;
segment-level tables per edit chain, per edit, per copied length and (on ``make_bench.py --hard``
benchmarks) per audio kept or replaced.

    .venv/bin/python benchmarks/segments_bench.py --bench DIR [DIR ...] [--data-dir D] [--pred OUT.csv] [--sweep]

With several benchmarks (the --hard variant over four seeds), each is indexed on its own and the
LCT-2024 / segment micro-AP and the segment tables are then printed pooled over all of them.

Query features and candidates are computed once; each sweep row re-runs only the alignment (and,
for audio window settings, the audio features of queries and candidates from cached PCM).
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from astradup.config import load_config
from astradup.eval.metrics import evaluate, length_bin, segments_found, transform_of, vsc_descriptor_micro_ap
from astradup.eval.segments_csv import read_rows, write_rows
from astradup.eval.vsc_format import MAX_DIM
from astradup.features.audio import vector_dim
from astradup.features.descriptor import basis_within
from astradup.match import joint_descriptor as jd
from astradup.match.align import suppress_overlaps
from astradup.match.score_norm import background, fold, pad_refs, pair_scores
from astradup.match.scoring import backgrounds, informative, pair_segments
from astradup.records import SegmentMatch
from astradup.pipeline import index
from astradup.search import Searcher


def predict(cache, seg_cfg, stem) -> list[SegmentMatch]:
    rows = []
    for qid, (q, cands) in cache.items():
        bgs = backgrounds(q.features, {s.video_id: s for s in cands}, seg_cfg, q.mirror)
        segs = [m for s in cands for m in pair_segments(q.features, s, seg_cfg, q.mirror, bgs[s.video_id], q.pitch,
                                                        q_pitch_codes=q.pitch_codes)]
        for m in suppress_overlaps(segs):
            rows.append(SegmentMatch(qid, m.q_start, m.q_end, stem[m.source_id], m.s_start, m.s_end, m.score))
    return rows


def sweep_audio(cache, sources, cfg, truth, qids, stem, bench) -> None:
    """Audio window length and steps: audio features of sources and queries recomputed from PCM
    (decoded once), candidates kept, alignment at the default settings."""
    from astradup.features.audio import audio_features
    from astradup.io.decode import decode_audio

    sr = cfg.decode.sample_rate
    pcm = {vid: decode_audio(f.uri, sr) for vid, f in sources.items()}
    qpcm = {qid: decode_audio(str(bench / "queries" / f"{qid}.mp4"), sr) for qid in cache}
    print("\nsweep (audio windows; alignment at defaults)")
    print(f"{'window':>7} {'index step':>10} {'query step':>10} |  score  segAP  clean  audio_only")
    for window, step, qstep in [(3.0, 1.0, 1.0), (5.0, 1.0, 1.0), (5.0, 1.0, 0.5), (5.0, 0.5, 0.5),
                                (7.0, 1.0, 1.0), (10.0, 1.0, 1.0)]:
        acfg = dataclasses.replace(cfg.audio, window=window, step=step, query_step=qstep)

        def with_audio(f, x, st):
            a = audio_features(x, sr, acfg, step=st)
            return dataclasses.replace(f, audio_windows=a["windows"], audio_vectors=a["vectors"])

        src2 = {vid: with_audio(f, pcm[vid], step) for vid, f in sources.items()}
        c2 = {}
        for qid, (q, cands) in cache.items():
            q2 = dataclasses.replace(q, features=with_audio(q.features, qpcm[qid], qstep))
            c2[qid] = (q2, [src2[c.video_id] for c in cands])
        # the pad is half a window; the edge keeps its share of the window (align._edges)
        seg = dataclasses.replace(cfg.segments, audio_pad=window / 2,
                                  audio_edge=min(cfg.segments.audio_edge * window / cfg.audio.window, window / 2))
        pred = predict(c2, seg, stem)
        r = evaluate(truth, pred, all_query_ids=qids)
        nd, nfa = r.get("distractor_queries", 0), r.get("distractors_with_prediction", 0)
        ao = r.get("per_transform", {}).get("audio_only", {}).get("score", float("nan"))
        print(f"{window:>7} {step:>10} {qstep:>10} | {r['score']:6.3f} {r['segment_uap']:6.3f} "
              f"{(nd - nfa) / max(nd, 1):6.3f}  {ao:6.3f}")


def audio_kept(bench: Path) -> dict[tuple[str, str], str]:
    """(query id, query segment) -> "audio kept" / "audio replaced" from a --hard manifest ({} else)."""
    try:
        man = json.loads((bench / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}
    out = {}
    for q in man.get("queries", []):
        for g in (q.get("hard") or {}).get("segments", []):
            out[(q["id"], g["query_segment"])] = "audio kept" if g.get("audio") else "audio replaced"
    return out


def print_found_tables(truth, pred, audio: dict[tuple[str, str], str]) -> None:
    """Segment-level tables: per edit chain, per single edit, per copied length and (on the hard
    variant, ``audio`` from :func:`audio_kept`) per audio kept/replaced, so a failure is traced to
    what was done to the copy."""
    keys = {
        "chain": lambda r: [transform_of(r)],
        "edit": lambda r: transform_of(r).split("+"),
        "length": lambda r: [length_bin(r)],
    }
    if audio:
        keys["audio"] = lambda r: [audio.get((r.query_id, f"{r.q_start:g}-{r.q_end:g}"), "unknown")]
    for name, key in keys.items():
        table = segments_found(truth, pred, key)
        print(f"\n{'copied segments by ' + name:<40} {'n':>3} {'found':>6} {'cover':>6}")
        for g, r in table.items():
            print(f"{g:<40} {r['n']:>3.0f} {r['found']:6.3f} {r['coverage']:6.3f}")


def descriptor_track(cache, sources, stem, truth, adim: int, basis=None) -> float:
    """VSC22 descriptor micro-AP (pair score: max inner product of per-second descriptors; frames
    alone: blank and common frames left out) for each step the VSC22 descriptor winners took, with its cost: the
    mirrored query, score normalisation against the library as background (match/score_norm.py)
    over a few beta / k (``export-descriptors --normalise`` writes k=2), then the descriptor joined
    by the audio at each second (match/joint_descriptor.py) over a few shares, plain and normalised
    per modality (what ``export-descriptors`` writes by default, its frames cut by ``basis`` to keep
    a row within VSC22's 512 dimensions). Returns the figure of the export's default (share 0.4,
    normalised with beta 0.5)."""
    gt = {(r.query_id, r.source_id) for r in truth}
    refs = {stem[v]: s.embeddings[informative(s)] for v, s in sources.items() if len(s.embeddings)}
    # the joined rows as export-descriptors writes them: every frame, blank pictures keeping their sound
    ref_rows = {stem[v]: jd.rows_of(s, adim, basis=basis, blank=s.blank_rows())
                for v, s in sources.items() if len(s.embeddings)}
    lib = list(refs.values())
    queries, q_joint, mirrors = {}, {}, {}
    for qid, (q, _) in cache.items():
        keep = informative(q.features) if len(q.features.embeddings) else np.zeros(0, bool)
        queries[qid] = q.features.embeddings[keep] if keep.any() else np.zeros((0, 1), np.float32)
        q_joint[qid] = jd.rows_of(q.features, adim, basis=basis, blank=q.features.blank_rows())
        mirrors[qid] = q.mirror[keep] if q.mirror is not None and len(q.mirror) and keep.any() else None

    def timed(fn):
        t = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - t

    dim = next(iter(lib)).shape[1] if lib else 0
    plain, t_plain = timed(lambda: pair_scores(queries, refs))
    kept = {"frames, plain": plain}
    rows = [("plain max inner product", vsc_descriptor_micro_ap(gt, plain), t_plain, 4 * dim)]
    with_mirror = {q: np.vstack([x, mirrors[q]]) if mirrors[q] is not None else x for q, x in queries.items()}
    mir, t_mir = timed(lambda: pair_scores(with_mirror, refs))
    rows.append(("+ mirrored query rows", vsc_descriptor_micro_ap(gt, mir), t_mir, 4 * dim * 2))
    # normalisation on the plain rows (the mirror adds size and, above, nothing to the ranking)
    for k in (1, 2, 3):
        bg, t_bg = timed(lambda: {q: background(x, lib, k) for q, x in queries.items()})
        for beta in (0.25, 0.5, 1.0):
            sc, t_sc = timed(lambda: pair_scores({q: fold(x, bg[q], beta) for q, x in queries.items()},
                                                 {r: pad_refs(x) for r, x in refs.items()}))
            rows.append((f"normalised, k={k}, beta={beta}", vsc_descriptor_micro_ap(gt, sc), t_bg + t_sc,
                         4 * (dim + 1)))
            if (k, beta) == (2, 0.5):
                kept["frames, normalised"] = sc
    # joined by the audio at each second; normalised per modality, k=2, beta=0.5
    chosen = 0.0

    def joint_bg(q):
        b = jd.JointBackground(*q_joint[q], k=2)
        for fr, au in ref_rows.values():
            b.add(fr, au)
        return b
    # each modality's background does not depend on the share: one library pass, weighed per share
    bgs, t_bg = timed(lambda: {q: joint_bg(q) for q in q_joint})
    for share in (0.2, 0.3, 0.4, 0.5):
        (jq, jr), t_join = timed(lambda: ({q: jd.join(*x, share) for q, x in q_joint.items()},
                                          {r: jd.join(*x, share) for r, x in ref_rows.items()}))
        jdim = next(iter(jr.values())).shape[1] if jr else 0
        sc, t_sc = timed(lambda: pair_scores(jq, jr))
        rows.append((f"+ audio, share {share}", vsc_descriptor_micro_ap(gt, sc), t_join + t_sc, 4 * jdim))
        sc, t_sc = timed(lambda: pair_scores({q: fold(jq[q], bgs[q].value(share), 0.5) for q in jq},
                                             {r: pad_refs(x) for r, x in jr.items()}))
        uap = vsc_descriptor_micro_ap(gt, sc)
        rows.append((f"+ audio, share {share}, normalised", uap, t_join + t_bg + t_sc, 4 * (jdim + 1)))
        if share == jd.DEFAULT_AUDIO_SHARE:
            chosen = uap
            kept[f"joined with audio (share {share}), normalised"] = sc
    print(f"\n{'descriptor track (VSC22 micro-AP)':<36} {'uAP':>6} {'time s':>7} {'x plain':>7} {'bytes/s':>8}")
    for name, uap, t, size in rows:
        print(f"{name:<36} {uap:6.3f} {t:7.3f} {t / max(t_plain, 1e-9):7.1f} {size:>8}")
    print("(k=1 takes the best library video, the source itself for a copy: shown as the wrong choice; "
          "bytes per query second, float32; 'normalised' with audio: per modality, k=2, beta=0.5, what "
          f"export-descriptors writes by default at share {jd.DEFAULT_AUDIO_SHARE}; with audio the frames are "
          f"{'cut to ' + str(basis.shape[1]) + ' by the descriptor basis' if basis is not None else 'whole'})")
    return chosen, {name: (gt, sc) for name, sc in kept.items()}


def run_one(bench: Path, args, data_dir: str, pred_path: str):
    """Index one benchmark's sources, search its queries, print its tables (and sweeps); returns
    its truth rows, predictions and query ids for the pooled figures."""
    t_all = time.time()
    cfg = load_config(args.config, {"data_dir": data_dir})
    truth = read_rows(bench / "truth.csv")
    queries = sorted((bench / "queries").glob("*.mp4"))
    qids = [p.stem for p in queries]
    print(f"\n=== {bench}")

    t0 = time.time()
    rep = index([str(bench / "sources")], cfg)
    print(rep.summary(), file=sys.stderr)
    t_index = time.time() - t0
    searcher = Searcher(cfg)
    sources = {f.video_id: f for b in searcher.catalog.shards.iter_features() for f in b}
    stem = {vid: Path(f.uri).stem for vid, f in sources.items()}

    t1 = time.time()
    cache = {}
    for qp in queries:
        q = searcher.query_from_file(str(qp))
        cands = searcher.candidates(q)
        cache[qp.stem] = (q, [sources[c] for c in cands if c in sources])
    t_feat = time.time() - t1

    t2 = time.time()
    pred = predict(cache, cfg.segments, stem)
    t_align = time.time() - t2
    write_rows(pred_path, pred)
    res = evaluate(truth, pred, all_query_ids=qids)

    adim = vector_dim(cfg.audio.n_mfcc)
    width = next((s.embeddings.shape[1] for s in sources.values() if len(s.embeddings)), 0)
    basis = basis_within(cfg.embedder.pca_file, MAX_DIM - adim - 1, kind=cfg.embedder.kind,
                         model=cfg.embedder.model, full_dim=width)  # as export-descriptors cuts them
    desc_uap, desc_scores = descriptor_track(cache, sources, stem, truth, adim, basis)
    print(f"\n{'transform':<14} {'n':>3} {'f1':>6} {'iou':>6} {'score':>6} {'segAP':>6}")
    for t, r in sorted(res.get("per_transform", {}).items()):
        print(f"{t:<14} {r['n_queries']:>3} {r['f1']:6.3f} {r['iou']:6.3f} {r['score']:6.3f} {r['segment_uap']:6.3f}")
    print(f"{'ALL':<14} {len(truth):>3} {res['f1']:6.3f} {res['iou']:6.3f} {res['score']:6.3f} {res['segment_uap']:6.3f}")
    print_found_tables(truth, pred, audio_kept(bench))
    nd = res.get("distractor_queries", 0)
    nfa = res.get("distractors_with_prediction", 0)
    print(f"distractor queries: {nd}, with any segment: {nfa} ({(nd - nfa) / max(nd, 1):.3f} clean)")
    print(f"VSC22 descriptor micro-AP (export default: joined with audio, normalised): {desc_uap:.3f}")
    print(f"predictions: {pred_path} ({len(pred)} rows)")
    print(f"time: index {t_index:.1f} s, query features+KNN {t_feat:.1f} s, alignment {t_align:.2f} s")

    if args.sweep:
        base = cfg.segments
        grid = {
            "cell_threshold": [0.4, 0.5, 0.6],
            "min_score": [0.5, 0.6, 0.65, 0.7],
            "full_len": [6.0, 8.0, 10.0],
            "audio_pad": [2.0, 2.5],
        }
        print(f"\nsweep (alignment settings; audio window {cfg.audio.window} s, index step {cfg.audio.step} s, "
              f"query step {cfg.audio.query_step} s)")
        print(" | ".join(f"{k:>14}" for k in grid) + " |  score  segAP  clean")
        for values in itertools.product(*grid.values()):
            sc = dataclasses.replace(base, **dict(zip(grid, values)))
            r = evaluate(truth, predict(cache, sc, stem), all_query_ids=qids)
            nd, nfa = r.get("distractor_queries", 0), r.get("distractors_with_prediction", 0)
            print(" | ".join(f"{v:>14}" for v in values) +
                  f" | {r['score']:6.3f} {r['segment_uap']:6.3f} {(nd - nfa) / max(nd, 1):6.3f}")
        sweep_audio(cache, sources, cfg, truth, qids, stem, bench)
    print(f"total wall time {time.time() - t_all:.1f} s")
    return truth, pred, qids, desc_scores


def _tagged(rows, tag: str):
    """Rows with query and source ids prefixed by their benchmark, so several pool without clashes."""
    return [dataclasses.replace(r, query_id=f"{tag}/{r.query_id}", source_id=f"{tag}/{r.source_id}") for r in rows]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True, nargs="+",
                    help="benchmark folder(s) from make_bench.py; with several (say four --hard seeds) the "
                         "pooled figures follow the per-benchmark ones")
    ap.add_argument("--data-dir", default="", help="index folder (one sub-folder per benchmark); default temporary")
    ap.add_argument("--config", default=None)
    ap.add_argument("--pred", default="predictions.csv",
                    help="predictions CSV (with several benchmarks: <name>_<PRED> beside it)")
    ap.add_argument("--sweep", action="store_true", help="alignment and audio-window sweeps, per benchmark")
    args = ap.parse_args()
    root = args.data_dir or tempfile.mkdtemp(prefix="astradup-segbench-")
    benches = [Path(b) for b in args.bench]
    pooled_truth, pooled_pred, pooled_q, audio = [], [], [], {}
    pooled_desc: dict[str, tuple[set, dict]] = {}
    for bench in benches:
        if len(benches) == 1:
            data_dir, pred_path = root, args.pred
        else:
            data_dir = str(Path(root) / bench.name)
            pred_path = str(Path(args.pred).with_name(f"{bench.name}_{Path(args.pred).name}"))
        truth, pred, qids, desc = run_one(bench, args, data_dir, pred_path)
        for name, (gt, sc) in desc.items():
            g, p = pooled_desc.setdefault(name, (set(), {}))
            g.update((f"{bench.name}/{q}", r) for q, r in gt)
            p.update({(f"{bench.name}/{q}", r): v for (q, r), v in sc.items()})
        pooled_truth += _tagged(truth, bench.name)
        pooled_pred += _tagged(pred, bench.name)
        pooled_q += [f"{bench.name}/{q}" for q in qids]
        audio.update({(f"{bench.name}/{q}", seg): v for (q, seg), v in audio_kept(bench).items()})
    if len(benches) > 1:
        res = evaluate(pooled_truth, pooled_pred, all_query_ids=pooled_q)
        print(f"\n=== pooled over {len(benches)} benchmarks: {', '.join(b.name for b in benches)}")
        print(f"LCT-2024 {res['score']:.3f} (F1 {res['f1']:.3f}, IoU {res['iou']:.3f}), segment micro-AP "
              f"{res['segment_uap']:.3f}, {len(pooled_truth)} copied segments")
        print_found_tables(pooled_truth, pooled_pred, audio)
        nd, nfa = res.get("distractor_queries", 0), res.get("distractors_with_prediction", 0)
        print(f"distractor / hard-negative queries: {nd}, with any segment: {nfa} ({nfa / max(nd, 1):.3f})")
        print("VSC22 descriptor micro-AP, pooled: " + ", ".join(
            f"{name} {vsc_descriptor_micro_ap(g, p):.3f}" for name, (g, p) in pooled_desc.items()))
    if not args.data_dir:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
