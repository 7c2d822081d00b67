"""Localisation metrics on hand-computed cases; each expected number is derived in a comment."""
from __future__ import annotations

import random

import numpy as np
from math import sqrt

import pytest

from astradup.errors import MediaError
from astradup.eval.metrics import (
    length_bin,
    segments_found,
    transform_of,
    _intersect_length, _union, evaluate, lct2024_score, vsc_descriptor_micro_ap,
    vsc_segment_micro_ap,
)
from astradup.eval.segments_csv import read_rows, write_rows
from astradup.records import SegmentMatch


def row(q, qs, qe, s, ss, se, score=1.0, **extra):
    return SegmentMatch(q, float(qs), float(qe), s, float(ss), float(se), float(score),
                        extra={k: str(v) for k, v in extra.items()})


TRUTH = [
    row("q1", 0, 10, "s1", 5, 15),
    row("q1", 20, 30, "s1", 40, 50),
    row("q2", 0, 5, "s2", 0, 5),
]


# ---------------------------------------------------------------------------------------- LCT


def test_perfect_prediction_scores_one_everywhere():
    pred = [row(r.query_id, r.q_start, r.q_end, r.source_id, r.s_start, r.s_end, sc)
            for r, sc in zip(TRUTH, (0.9, 0.8, 0.7))]
    m = lct2024_score(TRUTH, pred)
    assert (m["tp"], m["fp"], m["fn"]) == (3, 0, 0)
    assert m["f1"] == m["iou"] == m["score"] == 1.0
    # uAP: truth length 20 (q1,s1: 10+10) + 5 (q2,s2) = 25 per axis. Ranks add recall 10/25,
    # 10/25, 5/25 at precision 1 -> 0.4 + 0.4 + 0.2 = 1.
    assert vsc_segment_micro_ap(TRUTH, pred) == pytest.approx(1.0)
    assert vsc_descriptor_micro_ap({("q1", "s1"), ("q2", "s2")},
                                   {("q1", "s1"): 0.9, ("q2", "s2"): 0.8}) == 1.0
    e = evaluate(TRUTH, pred)
    assert e["f1"] == e["iou"] == e["score"] == 1.0 and e["segment_uap"] == pytest.approx(1.0)


def test_half_overlap_on_both_axes():
    truth = [row("q", 0, 10, "s", 0, 10)]
    pred = [row("q", 5, 15, "s", 5, 15, 0.9)]
    # iou per axis = overlap 5 / union 15 = 1/3; product 1/9. TP=1 so F1=1.
    # IoU = (1/9) / (1 truth row + 0 FP) = 1/9; score = 2*(1/9)*1 / (1/9 + 1) = (2/9)/(10/9) = 0.2
    m = lct2024_score(truth, pred)
    assert m["f1"] == 1.0
    assert m["iou"] == pytest.approx(1 / 9)
    assert m["score"] == pytest.approx(0.2)
    # uAP: per axis intersection 5, predicted 10, truth 10 -> P=R=0.5 on each axis;
    # P = sqrt(.5*.5) = .5, R = .5, AP = 0.5 * 0.5 = 0.25
    assert vsc_segment_micro_ap(truth, pred) == pytest.approx(0.25)


def test_half_overlap_on_query_axis_only():
    truth = [row("q", 0, 10, "s", 0, 10)]
    pred = [row("q", 5, 15, "s", 0, 10, 0.9)]
    # iou: query 5/15 = 1/3, source 10/10 = 1 -> 1/3; F1 = 1; score = 2*(1/3)/(4/3) = 0.5
    m = lct2024_score(truth, pred)
    assert m["iou"] == pytest.approx(1 / 3)
    assert m["score"] == pytest.approx(0.5)
    # uAP: query axis P=R=5/10, ref axis P=R=1 -> P = R = sqrt(0.5); AP = sqrt(.5)*sqrt(.5) = 0.5
    assert vsc_segment_micro_ap(truth, pred) == pytest.approx(0.5)


def test_extra_row_is_fp_and_missing_row_is_fn():
    truth = [row("qa", 0, 10, "sa", 0, 10),
             row("qb", 0, 10, "sb", 0, 10), row("qb", 20, 30, "sb", 20, 30)]
    pred = [row("qa", 0, 10, "sa", 0, 10), row("qa", 50, 60, "sa", 50, 60),  # 2 rows for 1 truth
            row("qb", 0, 10, "sb", 0, 10)]  # 1 row for 2 truth
    # pair a: t=1 p=2 -> TP 1, FP 1; pair b: t=2 p=1 -> TP 1, FN 1.
    # F1 = 2*2 / (4 + 1 + 1) = 2/3.
    # best ious: a row -> 1; b row 1 -> 1; b row 2 (20-30) vs pred 0-10 -> 0. Sum 2.
    # IoU = 2 / (3 truth rows + 1 FP) = 0.5; score = 2*0.5*(2/3) / (0.5 + 2/3) = (2/3)/(7/6) = 4/7
    m = lct2024_score(truth, pred)
    assert (m["tp"], m["fp"], m["fn"]) == (2, 1, 1)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["iou"] == pytest.approx(0.5)
    assert m["score"] == pytest.approx(4 / 7)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)


def test_prediction_for_pair_not_in_truth():
    truth = [row("q1", 0, 10, "s1", 0, 10)]
    pred = [row("q1", 0, 10, "s1", 0, 10, 0.9), row("q1", 0, 10, "s9", 0, 10, 0.5)]
    # TP 1, FP 1 (unknown pair), FN 0: F1 = 2/(2+1) = 2/3; IoU = 1/(1+1) = 0.5;
    # score = 2*0.5*(2/3)/(0.5+2/3) = 4/7
    m = lct2024_score(truth, pred)
    assert (m["tp"], m["fp"], m["fn"]) == (1, 1, 0)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["iou"] == pytest.approx(0.5)
    assert m["score"] == pytest.approx(4 / 7)
    # Ranked after the true positive, the false pair adds no recall: AP stays 1 * 1 = 1.
    assert vsc_segment_micro_ap(truth, pred) == pytest.approx(1.0)


def test_empty_inputs():
    both = lct2024_score([], [])
    assert both["f1"] == both["iou"] == both["score"] == 1.0
    only_pred = lct2024_score([], [row("q", 0, 1, "s", 0, 1)])
    assert only_pred["fp"] == 1 and only_pred["score"] == 0.0
    only_truth = lct2024_score([row("q", 0, 1, "s", 0, 1)], [])
    assert only_truth["fn"] == 1 and only_truth["score"] == 0.0
    assert vsc_segment_micro_ap([], []) == 1.0
    assert vsc_segment_micro_ap([], [row("q", 0, 1, "s", 0, 1)]) == 0.0
    assert vsc_segment_micro_ap([row("q", 0, 1, "s", 0, 1)], []) == 0.0
    assert vsc_descriptor_micro_ap(set(), {}) == 1.0
    assert vsc_descriptor_micro_ap(set(), {("q", "s"): 0.3}) == 0.0


# ------------------------------------------------------------------------------- VSC22 segment


def test_ranking_matters_for_segment_micro_ap():
    truth = [row("q1", 0, 10, "s1", 0, 10)]
    good = row("q1", 0, 10, "s1", 0, 10, 0.5)
    bad = row("q1", 0, 10, "s9", 0, 10, 0.9)  # false pair ranked first
    # rank 1 (bad): intersection 0, predicted 10 per axis -> P=0, R=0, adds 0.
    # rank 2 (good): intersection 10, predicted 20 per axis -> P=0.5, R=1, adds 0.5 * 1.
    # AP = 0.5, down from 1.0 when the true positive ranks first (previous test).
    assert vsc_segment_micro_ap(truth, [bad, good]) == pytest.approx(0.5)
    assert vsc_segment_micro_ap(truth, [good, bad]) == pytest.approx(0.5)  # order of input irrelevant


def test_equal_scores_are_one_group():
    truth = [row("q1", 0, 10, "s1", 0, 10)]
    good = row("q1", 0, 10, "s1", 0, 10, 0.7)
    bad = row("q1", 0, 10, "s9", 0, 10, 0.7)
    # vsc groups equal scores: P and R read once after both -> P = 10/20, R = 1 -> AP 0.5,
    # whichever comes first (per-item reading would give 1.0 with good first).
    assert vsc_segment_micro_ap(truth, [good, bad]) == pytest.approx(0.5)
    assert vsc_segment_micro_ap(truth, [bad, good]) == pytest.approx(0.5)


def test_truth_counts_only_when_hit_in_two_d():
    truth = [row("q", 0, 10, "s", 0, 10), row("q", 20, 30, "s", 100, 110)]
    # The prediction covers query 20-30 (truth 2's query span) and ref 0-10 (truth 1's ref span),
    # but its 2-D box overlaps neither truth box, so vsc's gts_to_consider is empty: AP = 0.
    assert vsc_segment_micro_ap(truth, [row("q", 20, 30, "s", 0, 10, 0.9)]) == 0.0
    # Adding the first truth box exactly (lower score) makes truth 1 considered (truth 2 still not).
    # Truth total per axis: 10 + 10 = 20.
    # query axis: predicted 0-10 u 20-30 = 20, intersection with truth 1's 0-10 = 10 -> P .5, R .5
    # ref axis: predicted 0-10 u 0-10 = 10, intersection 10 -> P 1, R 10/20 = .5
    # P = sqrt(.5 * 1), R = sqrt(.5 * .5) = .5 -> AP = sqrt(.5) * .5 (without the 2-D rule the first
    # prediction alone would already score on the query axis)
    pred = [row("q", 20, 30, "s", 0, 10, 0.9), row("q", 0, 10, "s", 0, 10, 0.8)]
    assert vsc_segment_micro_ap(truth, pred) == pytest.approx(sqrt(0.5) * 0.5)


def test_overlapping_predictions_are_unioned():
    truth = [row("q", 0, 10, "s", 0, 10)]
    pred = [row("q", 0, 6, "s", 0, 6, 0.9), row("q", 4, 10, "s", 4, 10, 0.8)]
    # rank 1: intersection 6, predicted 6 -> P=1, R=0.6: adds 0.6.
    # rank 2: union 0-10: intersection 10, predicted 10 (not 12) -> P=1, R=1: adds 0.4. AP = 1.
    assert vsc_segment_micro_ap(truth, pred) == pytest.approx(1.0)


def test_interval_intersection_matches_brute_force():
    rng = random.Random(0)
    for _ in range(200):
        a = [(s, s + rng.randint(0, 5)) for s in (rng.randint(0, 30) for _ in range(rng.randint(0, 4)))]
        b = [(s, s + rng.randint(0, 5)) for s in (rng.randint(0, 30) for _ in range(rng.randint(0, 4)))]
        cells_a = {t for s, e in a for t in range(s, e)}
        cells_b = {t for s, e in b for t in range(s, e)}
        assert _intersect_length(_union(a), _union(b)) == len(cells_a & cells_b)


# ---------------------------------------------------------------------------- VSC22 descriptor


def test_descriptor_ap_scaled_by_share_of_truth_retrieved():
    truth = {("q1", "r1"), ("q2", "r2")}
    # ranked: (q1,r1) correct P=1/1, (q3,r3) wrong; (q2,r2) never scored.
    # AP = (1) / 2 truth pairs = 0.5
    assert vsc_descriptor_micro_ap(truth, {("q1", "r1"): 0.9, ("q3", "r3"): 0.5}) == pytest.approx(0.5)
    # false pair first: ranks wrong, right (P=1/2), right (P=2/3) -> (0.5 + 2/3) / 2 = 7/12
    scores = {("q1", "r1"): 0.5, ("q3", "r3"): 0.9, ("q2", "r2"): 0.4}
    assert vsc_descriptor_micro_ap(truth, scores) == pytest.approx(7 / 12)


# ------------------------------------------------------------------------------------ evaluate


def test_evaluate_per_transform_and_distractors():
    truth = [row("q1", 0, 10, "s1", 0, 10, transform="crop"),
             row("q2", 0, 10, "s2", 0, 10, transform="blur")]
    pred = [row("q1", 0, 10, "s1", 0, 10, 0.9),
            row("q2", 5, 15, "s2", 0, 10, 0.8),
            row("q3", 0, 10, "s3", 0, 10, 0.7)]  # q3 is a distractor
    e = evaluate(truth, pred, all_query_ids={"q1", "q2", "q3", "q4"})
    # overall: TP 2, FP 1 (q3), FN 0 -> F1 = 4/5; IoU = (1 + 1/3) / (2 + 1) = 4/9;
    # score = 2*(4/9)*(4/5) / (4/9 + 4/5) = (32/45)/(56/45) = 4/7
    assert e["f1"] == pytest.approx(0.8)
    assert e["iou"] == pytest.approx(4 / 9)
    assert e["score"] == pytest.approx(4 / 7)
    # uAP, truth 20 per axis. rank 1: P=1, R=10/20 -> adds 0.5. rank 2: query inter 15 of 20
    # predicted, ref 20 of 20 -> P = R = sqrt(0.75); adds sqrt(.75)*(sqrt(.75) - 0.5).
    # rank 3 adds no recall. AP = 0.5 + 0.75 - 0.5*sqrt(0.75)
    assert e["segment_uap"] == pytest.approx(1.25 - 0.5 * sqrt(0.75))
    per = e["per_transform"]
    assert set(per) == {"crop", "blur"}
    assert per["crop"] == pytest.approx({"f1": 1.0, "iou": 1.0, "score": 1.0, "segment_uap": 1.0,
                                         "n_queries": 1})
    # blur alone is the query-axis half overlap: iou 1/3, score 0.5, uAP 0.5
    assert per["blur"] == pytest.approx({"f1": 1.0, "iou": 1 / 3, "score": 0.5, "segment_uap": 0.5,
                                         "n_queries": 1})
    assert e["distractor_queries"] == 2  # q3, q4
    assert e["distractors_with_prediction"] == 1  # q3
    plain = evaluate([row("q1", 0, 10, "s1", 0, 10)], [])
    assert "per_transform" not in plain and plain["distractor_queries"] is None


# ----------------------------------------------------------------------------------------- CSV


def test_csv_round_trip(tmp_path):
    rows = [row("q1", 0, 10.5, "s1", 3.25, 13.75, 0.91234, transform="crop"),
            row("q2", 7, 9, "s2", 0, 2, 0.5, transform="")]
    path = tmp_path / "pred.csv"
    write_rows(path, rows)
    text = path.read_text()
    assert text.splitlines()[0] == "query_id,query_segment,source_id,source_segment,score,transform"
    assert "q1,0-10.5,s1,3.25-13.75,0.9123,crop" in text
    back = read_rows(path)
    assert back[1] == rows[1]
    assert back[0].score == 0.9123 and back[0].extra == {"transform": "crop"}
    assert (back[0].q_start, back[0].q_end, back[0].s_start, back[0].s_end) == (0, 10.5, 3.25, 13.75)


def test_truth_without_score_reads_score_one(tmp_path):
    path = tmp_path / "truth.csv"
    write_rows(path, [row("q1", 0, 10, "s1", 5, 15)], with_score=False)
    assert path.read_text().splitlines() == ["query_id,query_segment,source_id,source_segment",
                                             "q1,0-10,s1,5-15"]
    (r,) = read_rows(path)
    assert r.score == 1.0 and r.extra == {}


@pytest.mark.parametrize("bad,reason", [
    ("q2,0-5,s2,abc", "segment 'abc'"),
    ("q2,9-5,s2,0-4", "ends before it starts"),
    ("q2,0-5,s2", "3 fields"),
    (",0-5,s2,0-4", "empty query_id"),
])
def test_malformed_line_names_file_and_line(tmp_path, bad, reason):
    path = tmp_path / "truth.csv"
    path.write_text("query_id,query_segment,source_id,source_segment\nq1,0-10,s1,0-10\n" + bad + "\n")
    with pytest.raises(MediaError) as ei:
        read_rows(path)
    assert ei.value.path == str(path)
    assert "line 3" in ei.value.reason and reason in ei.value.reason


def test_missing_column_and_bad_score(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("query_id,query_segment,source_id\nq1,0-10,s1\n")
    with pytest.raises(MediaError, match="source_segment"):
        read_rows(path)
    path.write_text("query_id,query_segment,source_id,source_segment,score\nq1,0-10,s1,0-10,nan\n")
    with pytest.raises(MediaError, match="line 2: score 'nan'"):
        read_rows(path)


def test_segments_found_counts_each_copy_under_its_own_chain_and_length():
    """Two copies in one long query under different chains: each chain is charged only its own copy
    (a query-level table would count the other copy's rows against it)."""
    truth = [row("q", 10, 14, "a", 0, 4, transform="hflip+overlay"),
             row("q", 60, 72, "b", 5, 17, transform="crop_rescale+speed"),
             row("r", 0, 6, "a", 20, 26, transform="hflip+color")]
    pred = [row("q", 61, 69, "b", 6, 14, 0.9),      # 8 of 12 s of the second copy
            row("q", 10, 14, "b", 0, 4, 0.8),       # right place, wrong source: not a find
            row("r", 0, 6, "a", 40, 46, 0.7)]       # right query seconds, wrong source seconds
    chain = segments_found(truth, pred, lambda r: [transform_of(r)])
    assert chain["crop_rescale+speed"] == {"n": 1, "found": 1.0, "coverage": pytest.approx(8 / 12)}
    assert chain["hflip+overlay"]["found"] == 0.0 and chain["hflip+color"]["found"] == 0.0
    edits = segments_found(truth, pred, lambda r: transform_of(r).split("+"))
    assert edits["hflip"] == {"n": 2, "found": 0.0, "coverage": 0.0}
    assert edits["speed"]["found"] == 1.0
    lengths = segments_found(truth, pred, lambda r: [length_bin(r)])
    assert set(lengths) == {"3-5 s", "8-15 s", "5-8 s"} and lengths["8-15 s"]["found"] == 1.0


def test_score_normalisation_ranks_a_distinct_match_above_a_generic_one_and_folds_into_descriptors():
    """Query a's row matches ref A at 0.8 and nothing else; query b's row matches B at 0.9 but every
    other reference at 0.85 too (a generic scene). Raw max IP ranks b-B first; normalised against the
    library background, a-A ranks first, and the folded descriptors give the same scores."""
    from astradup.match.score_norm import background, fold, pad_refs, pair_scores

    def unit(v):
        v = np.asarray(v, np.float32)
        return v / np.linalg.norm(v)

    e = np.eye(8, dtype=np.float32)
    refs = {"A": e[[0]], "B": unit(e[1] + 0.5 * e[3])[None], "C": unit(e[3] + 0.02 * e[4])[None],
            "D": unit(e[3] - 0.02 * e[4])[None]}
    qa = unit(0.8 * e[0] + 0.6 * e[5])[None]
    qb = unit(e[1] + 0.9 * e[3])[None]
    raw = pair_scores({"a": qa, "b": qb}, refs)
    assert raw[("b", "B")] > raw[("a", "A")]
    lib = list(refs.values())
    bg = {q: background(x, lib, k=2) for q, x in (("a", qa), ("b", qb))}
    norm = {(q, r): s - float(bg[q].max()) for (q, r), s in raw.items()}
    assert norm[("a", "A")] > norm[("b", "B")] and max(norm, key=norm.get) == ("a", "A")
    folded = pair_scores({"a": fold(qa, bg["a"], 1.0), "b": fold(qb, bg["b"], 1.0)},
                         {r: pad_refs(x) for r, x in refs.items()})
    assert folded == pytest.approx(norm, abs=1e-6)
    assert background(qa, lib[:1], k=2).tolist() == [0.0]  # too small a library: no background
