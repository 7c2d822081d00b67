"""Copy-localisation metrics: the LCT 2024 interval score and the VSC22 micro-APs.

Two benchmarks, two philosophies, so both are reported:

* LCT 2024 (borrowing detection) counts rows per (query, source) pair and rewards per-row IoU; it
  ignores scores, so it measures the operating point the system chose.
* VSC22 (Meta's Video Similarity Challenge) ranks predictions by score and integrates precision
  over recall, so it measures the ranking independent of any threshold.

Rows are ``records.SegmentMatch``, the one segment record: the CSV reader's truth and prediction
rows and the search's found segments alike.

Empty inputs: when there is nothing to find and nothing was reported, every metric is 1.0 (the
system did exactly the right thing); with no truth but some predictions every metric is 0.0 (all
of them are false alarms). That keeps a distractor-only slice meaningful instead of NaN.
"""
from __future__ import annotations

import itertools
from collections import defaultdict
from math import sqrt
from typing import Any, Callable, Collection, Hashable, Iterable, Mapping, Sequence

from astradup.records import SegmentMatch

Interval = tuple[float, float]
Pair = tuple[str, str]


# ----------------------------------------------------------------------------------------------
# intervals


def _iou_1d(a0: float, a1: float, b0: float, b1: float) -> float:
    inter = max(0.0, min(a1, b1) - max(a0, b0))
    union = (a1 - a0) + (b1 - b0) - inter
    return inter / union if union > 0 else 0.0


def _union(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, merged intervals; touching ones merge (as vsc2022's ``Intervals._dedup``)."""
    out: list[Interval] = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def _length(merged: Sequence[Interval]) -> float:
    return sum(e - s for s, e in merged)


def _intersect_length(a: Sequence[Interval], b: Sequence[Interval]) -> float:
    """Overlap of two merged interval lists (two-pointer sweep)."""
    i = j = 0
    total = 0.0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if hi > lo:
            total += hi - lo
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def _pair(r: SegmentMatch) -> Pair:
    return (r.query_id, r.source_id)


def _by_pair(rows: Iterable[SegmentMatch]) -> dict[Pair, list[SegmentMatch]]:
    out: dict[Pair, list[SegmentMatch]] = defaultdict(list)
    for r in rows:
        out[_pair(r)].append(r)
    return out


def _harmonic(a: float, b: float) -> float:
    return 2 * a * b / (a + b) if a + b > 0 else 0.0


# ----------------------------------------------------------------------------------------------
# LCT 2024


def lct2024_score(truth: Sequence[SegmentMatch], pred: Sequence[SegmentMatch]) -> dict[str, Any]:
    """Interval score of the LCT 2024 borrowing-detection task.

    Counting follows the organisers' validation script: per (query, source) pair with t truth rows
    and p predicted rows, TP += min(t, p), FP += max(p - t, 0), FN += max(t - p, 0); rows of
    unknown pairs are FP, unanswered truth pairs FN. F1 = 2TP / (2TP + FP + FN) (their script adds
    1e-6 epsilons; we use the exact ratio). Each truth row scores its best iou(query) x iou(source)
    over predicted rows of the same pair; IoU = sum / (truth rows + FP), so surplus rows dilute it.
    score = harmonic mean of IoU and F1.
    """
    t_pairs, p_pairs = _by_pair(truth), _by_pair(pred)
    tp = fp = fn = 0
    for key, t_rows in t_pairs.items():
        t, p = len(t_rows), len(p_pairs.get(key, ()))
        tp += min(t, p)
        fp += max(p - t, 0)
        fn += max(t - p, 0)
    fp += sum(len(rows) for key, rows in p_pairs.items() if key not in t_pairs)

    iou_sum = 0.0
    for key, t_rows in t_pairs.items():
        cands = p_pairs.get(key, ())
        for tr in t_rows:
            best = 0.0
            for pr in cands:
                v = (_iou_1d(tr.q_start, tr.q_end, pr.q_start, pr.q_end)
                     * _iou_1d(tr.s_start, tr.s_end, pr.s_start, pr.s_end))
                best = max(best, v)
            iou_sum += best

    n_truth = len(truth)
    # 0/0 only happens with no truth and no predictions: nothing to find, nothing wrongly found.
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 1.0
    iou = iou_sum / (n_truth + fp) if (n_truth + fp) else 1.0
    precision = tp / (tp + fp) if (tp + fp) else (1.0 if fn == 0 else 0.0)
    recall = tp / (tp + fn) if (tp + fn) else (1.0 if fp == 0 else 0.0)
    return {"f1": f1, "iou": iou, "score": _harmonic(iou, f1), "tp": tp, "fp": fp, "fn": fn,
            "precision": precision, "recall": recall}


# ----------------------------------------------------------------------------------------------
# VSC22 matching track
#
# Follows facebookresearch/vsc2022, vsc/metrics.py (``match_metric`` with ``VideoPair`` and
# ``Intervals``), read at commit 30132b627f80bcba526fc9acf88985da202b05d5. Points kept on purpose:
#  * predictions sorted by score, descending, stable for ties; predictions sharing one score are
#    added as a group and precision/recall are read once after the group;
#  * per pair, the predicted intervals so far are unioned per axis; they are intersected with the
#    union of only those truth rows whose 2-D (query x ref) box overlaps some prediction so far with
#    positive area (vsc's ``gts_to_consider``): a prediction that hits truth on each axis separately
#    but not in 2-D earns nothing;
#  * per axis, intersections and predicted lengths are summed over ALL pairs (micro): precision is
#    sum(intersection) / sum(predicted length), recall is sum(intersection) / total truth length
#    (the union of truth intervals per pair, summed over pairs);
#  * P = sqrt(P_query * P_ref), R = sqrt(R_query * R_ref) and AP = sum P x delta R.
# Departures (vsc divides by zero there): an axis with no predicted length yet has precision 0;
# empty truth follows the module's empty-input rule.


class _PairState:
    """Truth and predictions of one (query, ref) pair, updated as ranked predictions arrive."""

    def __init__(self) -> None:
        self.gts: list[SegmentMatch] = []
        self.considered: list[bool] = []
        self.preds: list[SegmentMatch] = []
        self.inter = [0.0, 0.0]  # per axis: query, ref
        self.total = [0.0, 0.0]

    def add_gt(self, r: SegmentMatch) -> None:
        self.gts.append(r)
        self.considered.append(False)

    def add_prediction(self, p: SegmentMatch) -> tuple[list[float], list[float]]:
        self.preds.append(p)
        for i, g in enumerate(self.gts):
            # Predictions only accumulate, so a truth box, once hit, stays considered.
            if not self.considered[i] and _box_overlap(g, p):
                self.considered[i] = True
        gts = [g for g, c in zip(self.gts, self.considered) if c]
        d_inter, d_total = [0.0, 0.0], [0.0, 0.0]
        for axis in (0, 1):
            pred_u = _union(_axis(r, axis) for r in self.preds)
            gt_u = _union(_axis(r, axis) for r in gts)
            inter, total = _intersect_length(pred_u, gt_u), _length(pred_u)
            d_inter[axis], d_total[axis] = inter - self.inter[axis], total - self.total[axis]
            self.inter[axis], self.total[axis] = inter, total
        return d_inter, d_total


def _axis(r: SegmentMatch, axis: int) -> Interval:
    return (r.q_start, r.q_end) if axis == 0 else (r.s_start, r.s_end)


def _box_overlap(a: SegmentMatch, b: SegmentMatch) -> bool:
    dq = min(a.q_end, b.q_end) - max(a.q_start, b.q_start)
    ds = min(a.s_end, b.s_end) - max(a.s_start, b.s_start)
    return max(dq, 0.0) * max(ds, 0.0) > 0.0


def vsc_segment_micro_ap(truth: Sequence[SegmentMatch], pred: Sequence[SegmentMatch]) -> float:
    """VSC22 matching-track segment micro-AP (see the block comment above for the exact rules)."""
    pairs: dict[Pair, _PairState] = defaultdict(_PairState)
    for g in truth:
        pairs[_pair(g)].add_gt(g)
    gt_total = [0.0, 0.0]
    for st in pairs.values():
        for axis in (0, 1):
            gt_total[axis] += _length(_union(_axis(g, axis) for g in st.gts))
    if gt_total[0] <= 0 or gt_total[1] <= 0:
        # No truth length to recall (no truth rows, or only zero-length ones).
        return 1.0 if not pred else 0.0

    ranked = sorted(pred, key=lambda r: r.score, reverse=True)
    inter, total = [0.0, 0.0], [0.0, 0.0]
    recall = metric = 0.0
    for _, group in itertools.groupby(ranked, key=lambda r: r.score):
        for p in group:
            d_inter, d_total = pairs[_pair(p)].add_prediction(p)
            for axis in (0, 1):
                inter[axis] += d_inter[axis]
                total[axis] += d_total[axis]
        rec = [inter[a] / gt_total[a] for a in (0, 1)]
        prec = [inter[a] / total[a] if total[a] > 0 else 0.0 for a in (0, 1)]
        new_recall = sqrt(rec[0] * rec[1])
        precision = sqrt(prec[0] * prec[1])
        metric += precision * (new_recall - recall)
        recall = new_recall
    return metric


# ----------------------------------------------------------------------------------------------
# VSC22 descriptor track


def vsc_descriptor_micro_ap(truth_pairs: Collection[tuple[Hashable, Hashable]],
                            pair_scores: Mapping[tuple[Hashable, Hashable], float]) -> float:
    """VSC22 descriptor-track micro-AP over video pairs.

    As vsc2022 ``vsc/metrics.py::average_precision``: all scored pairs ranked globally by score
    (stable, so ties keep ``pair_scores`` order, as there), precision after each rank, and
    AP = sum over correct ranks of precision / number of truth pairs, so truth pairs never scored
    cap AP at the share retrieved. The pair score (max inner product of the two videos'
    descriptors) is the caller's job.
    """
    gt = set(truth_pairs)
    if not gt:
        return 1.0 if not pair_scores else 0.0
    ranked = sorted(pair_scores.items(), key=lambda kv: kv[1], reverse=True)
    hits = 0
    ap = 0.0
    for rank, (key, _) in enumerate(ranked, start=1):
        if key in gt:
            hits += 1
            ap += hits / rank
    return ap / len(gt)


# ----------------------------------------------------------------------------------------------
# report


def transform_of(r: SegmentMatch) -> str:
    return str(r.extra.get("transform", "")).strip() or "unspecified"


def _has_transform(rows: Iterable[SegmentMatch]) -> bool:
    return any("transform" in r.extra for r in rows)


LENGTH_BINS = ((0.0, 3.0), (3.0, 5.0), (5.0, 8.0), (8.0, 15.0), (15.0, float("inf")))


def length_bin(r: SegmentMatch) -> str:
    """The copied segment's length class (query side), as the hard benchmark's tables group them."""
    n = r.q_end - r.q_start
    lo, hi = next(b for b in LENGTH_BINS if b[0] <= n < b[1] or b == LENGTH_BINS[-1])
    return f"{lo:g}-{hi:g} s" if hi != float("inf") else f">={lo:g} s"


def segments_found(truth_rows: Sequence[SegmentMatch], pred_rows: Sequence[SegmentMatch],
                   key: Callable[[SegmentMatch], Iterable[str]]) -> dict[str, dict[str, float]]:
    """Per group of truth segments (``key`` names a row's groups: its edit chain, each edit of the
    chain, its length class): how many there are, the share found (a prediction for the same pair
    whose box overlaps the segment's) and the mean share of its query seconds covered by those
    predictions. Segment level, unlike ``per_transform``: a long query holding copies under two
    chains counts each copy under its own chain instead of charging one chain the other's rows."""
    by_pair = _by_pair(pred_rows)
    acc: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for r in truth_rows:
        hits = [p for p in by_pair.get(_pair(r), []) if _box_overlap(r, p)]
        covered = _intersect_length([(r.q_start, r.q_end)], _union((p.q_start, p.q_end) for p in hits))
        for g in key(r):
            a = acc[g]
            a[0] += 1
            a[1] += bool(hits)
            a[2] += covered / max(r.q_end - r.q_start, 1e-9)
    return {g: {"n": a[0], "found": a[1] / a[0], "coverage": a[2] / a[0]} for g, a in sorted(acc.items())}


def evaluate(truth_rows: Sequence[SegmentMatch], pred_rows: Sequence[SegmentMatch],
             all_query_ids: Collection[str] | None = None) -> dict[str, Any]:
    """Every localisation metric in one JSON-ready dict.

    Keys: ``f1, iou, score`` (LCT 2024), ``tp, fp, fn, precision, recall``, ``segment_uap`` (VSC22),
    ``n_truth_rows, n_pred_rows, n_queries``; ``per_transform`` when truth rows carry a ``transform``
    column (truth and predictions restricted to that transform's query ids); and
    ``distractor_queries`` / ``distractors_with_prediction`` (counts), which need ``all_query_ids``
    because a query with no truth row cannot be told from an unknown id by the truth file alone;
    they are None without it.
    """
    out: dict[str, Any] = dict(lct2024_score(truth_rows, pred_rows))
    out["segment_uap"] = vsc_segment_micro_ap(truth_rows, pred_rows)
    truth_queries = {r.query_id for r in truth_rows}
    out["n_truth_rows"] = len(truth_rows)
    out["n_pred_rows"] = len(pred_rows)
    out["n_queries"] = len(truth_queries)

    if _has_transform(truth_rows):
        groups: dict[str, set[str]] = defaultdict(set)
        for r in truth_rows:
            groups[transform_of(r)].add(r.query_id)
        per: dict[str, dict[str, Any]] = {}
        for name in sorted(groups):
            qids = groups[name]
            t = [r for r in truth_rows if r.query_id in qids]
            p = [r for r in pred_rows if r.query_id in qids]
            lct = lct2024_score(t, p)
            per[name] = {"f1": lct["f1"], "iou": lct["iou"], "score": lct["score"],
                         "segment_uap": vsc_segment_micro_ap(t, p), "n_queries": len(qids)}
        out["per_transform"] = per

    if all_query_ids is None:
        out["distractor_queries"] = None
        out["distractors_with_prediction"] = None
    else:
        distractors = set(all_query_ids) - truth_queries
        predicted = {r.query_id for r in pred_rows}
        out["distractor_queries"] = len(distractors)
        out["distractors_with_prediction"] = len(distractors & predicted)
    return out
