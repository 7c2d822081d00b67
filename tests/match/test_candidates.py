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


def test_a_vote_floor_lets_a_few_strong_rows_beat_a_look_alike_that_is_every_rows_weak_neighbour():
    # a 2-minute query: every row has the look-alike "l" among its neighbours at 0.4; 5 rows hold
    # a copy of "s" at 0.9
    hits = [[("l", 0.0, 0.4)] for _ in range(120)] + [[("s", 0.0, 0.9), ("l", 0.0, 0.4)] for _ in range(5)]
    assert top_candidates(vote(hits), 1) == ["l"]  # 125 x 0.4 beats 5 x 0.9
    v = vote(hits, floor=0.5)
    assert top_candidates(v, 1) == ["s"]
    assert v["s"] == 5 * (0.9 - 0.5) and v["l"] == 0.0  # below the floor counts nothing


def test_the_video_a_modality_prefers_is_a_candidate_when_the_other_modality_outvotes_it():
    # a long soundtrack that sounds like many library tracks (a0..a9 at 2.0-2.9 each), and 4 frames
    # of a visual copy of "s" (0.98, floor 0.5): combined, s ranks 11th of 11 for 4 places
    f = vote([[("s", 0.0, 0.98)] for _ in range(4)], floor=0.5)
    a = {f"a{i}": 2.0 + i / 10 for i in range(10)}
    both = {v: f.get(v, 0.0) + a.get(v, 0.0) for v in {**f, **a}}
    assert "s" not in top_candidates(both, 4)
    got = top_candidates(both, 4, leaders=(f, a))
    assert len(got) == 4 and "s" in got
    assert got == sorted(got, key=lambda v: -both[v])  # still in vote order
    assert {"a9", "a8", "a7"} <= set(got)  # the audio's own leaders stay too
    # a modality whose best videos have no vote at all (all below its floor) reserves nothing
    none = vote([[("z", 0.0, 0.4)]], floor=0.5)
    assert top_candidates(both, 4, leaders=(none, a)) == ["a9", "a8", "a7", "a6"]
