import json

import pytest

from astradup.cli import main as cli_main


def test_eval_cli_prints_the_scores_as_json(tmp_path, capsys):
    truth = tmp_path / "truth.csv"
    pred = tmp_path / "pred.csv"
    truth.write_text("query_id,query_segment,source_id,source_segment,transform\n"
                     "q1,0-10,s1,5-15,partial\nq2,0-20,s2,0-20,reencode\n")
    # q1 half right on both axes: iou 0.5 x 0.5 = 0.25; q2 exact; one extra row for a pair not in truth
    pred.write_text("query_id,query_segment,source_id,source_segment,score\n"
                    "q1,5-15,s1,10-20,0.9\nq2,0-20,s2,0-20,0.8\nq3,0-5,s9,0-5,0.1\n")
    assert cli_main(["eval", "--truth", str(truth), "--pred", str(pred), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"f1", "iou", "score", "segment_uap"} <= set(out)
    # TP 2, FP 1, FN 0 -> F1 = 4/5; IoU = (1/9 + 1) / (2 + 1): q1 axes overlap 5 of 15 s each
    assert abs(out["f1"] - 0.8) < 1e-9
    assert abs(out["iou"] - (1 / 9 + 1) / 3) < 1e-9
    assert set(out["per_transform"]) == {"partial", "reencode"}


def test_eval_cli_names_the_bad_file(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("query_id,query_segment,source_id,source_segment\nq1,ten-20,s1,0-5\n")
    assert cli_main(["eval", "--truth", str(bad), "--pred", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.csv" in err and "line 2" in err


HEADER = "query_id,query_segment,source_id,source_segment,score\n"
GOOD = "q1,0-10,s1,0-10,0.9\n"


def _run_bad(tmp_path, capsys, body: bytes) -> str:
    """Run `astradup eval` with a hostile prediction file; it must end in one line on stderr, exit 2."""
    truth = tmp_path / "truth.csv"
    truth.write_text("query_id,query_segment,source_id,source_segment\nq1,0-10,s1,0-10\n")
    bad = tmp_path / "bad.csv"
    bad.write_bytes(body)
    assert cli_main(["eval", "--truth", str(truth), "--pred", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # no scores printed for a file that was not read
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("astradup: error: ") and str(bad) in lines[0], err
    assert len(lines[0]) < 600  # the reason quotes a bad value cut short, never the whole field
    return lines[0]


def test_eval_cli_non_utf8_csv_is_one_line_error(tmp_path, capsys):
    line = _run_bad(tmp_path, capsys, (HEADER + GOOD).encode() + b"q2,0-5,s\xff\xfe2,0-5,0.5\n")
    assert "line 3" in line and "not UTF-8" in line and "0xff" in line


def test_eval_cli_field_over_128k_is_one_line_error(tmp_path, capsys):
    line = _run_bad(tmp_path, capsys, (HEADER + GOOD + "q2,0-5," + "s" * 200_000 + ",0-5,0.5\n").encode())
    assert "line 3" in line and "KiB" in line


def test_eval_cli_field_over_128k_even_with_a_raised_csv_limit(tmp_path, capsys):
    import csv

    old = csv.field_size_limit(1 << 30)  # another part of the process raised the global limit
    try:
        line = _run_bad(tmp_path, capsys, (HEADER + GOOD + '"' + "q" * 200_000 + '",0-5,s2,0-5,0.5\n').encode())
    finally:
        csv.field_size_limit(old)
    assert "line 3" in line and "field 1 is over 128 KiB" in line


def test_eval_cli_huge_line_is_bounded(tmp_path, capsys):
    # 3 MB without a newline: refused after the first MiB, never read whole into one string.
    line = _run_bad(tmp_path, capsys, (HEADER + GOOD).encode() + b"q," * 1_500_000)
    assert "line 3" in line and "record longer than" in line


def test_eval_cli_400_digit_segment_bound_is_one_line_error(tmp_path, capsys):
    # Used to parse as inf, then print "segAP nan" and exit 0.
    line = _run_bad(tmp_path, capsys, (HEADER + GOOD + "q2,0-" + "9" * 400 + ",s2,0-5,0.5\n").encode())
    assert "line 3" in line and "400 characters" in line


def test_eval_cli_segment_bound_over_limit_is_one_line_error(tmp_path, capsys):
    line = _run_bad(tmp_path, capsys, (HEADER + GOOD + "q2,0-5,s2,0-99999999999,0.5\n").encode())
    assert "line 3" in line and "seconds" in line


@pytest.mark.parametrize("score", ["nan", "inf", "-inf", "1e999", "1_0", "9" * 400])
def test_eval_cli_non_finite_or_long_score_is_one_line_error(tmp_path, capsys, score):
    line = _run_bad(tmp_path, capsys, (HEADER + GOOD + f"q2,0-5,s2,0-5,{score}\n").encode())
    assert "line 3" in line and "score" in line


def test_eval_cli_truth_file_is_checked_the_same_way(tmp_path, capsys):
    truth = tmp_path / "truth.csv"
    truth.write_bytes(b"query_id,query_segment,source_id,source_segment\nq1,0-1e400,s1,0-10\n")
    pred = tmp_path / "pred.csv"
    pred.write_text(HEADER + GOOD)
    assert cli_main(["eval", "--truth", str(truth), "--pred", str(pred)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "truth.csv" in err and "line 2" in err
