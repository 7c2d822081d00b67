from astradup.match.candidates import top_candidates, vote


def test_many_frames_beat_one_lucky_neighbour():
    hits = [
        [("a", 1.0, 0.6), ("a", 2.0, 0.59), ("b", 0.0, 0.9)],  # b is nearest once
        [("a", 2.0, 0.7)],
        [("a", 3.0, 0.65), ("c", 1.0, 0.3)],
    ]
    v = vote(hits)
    assert v["a"] == 0.6 + 0.7 + 0.65  # best per query frame, not every neighbour
    assert top_candidates(v, 2) == ["a", "b"]


def test_votes_accumulate_across_modalities_with_weights():
    v = vote([[("a", 0.0, 0.5)]])
    vote([[("b", 0.0, 5.0, 0.8)]], weight=0.5, votes=v)
    assert v == {"a": 0.5, "b": 0.4}
    assert top_candidates(v, 1) == ["a"]
