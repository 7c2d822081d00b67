import json

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
