from astradup.match.groups import connected_components


def test_components_merge_transitively_and_sort_biggest_first():
    groups = connected_components([("b", "c"), ("x", "y"), ("a", "b"), ("c", "a")])
    assert groups == [["a", "b", "c"], ["x", "y"]]


def test_no_pairs_no_groups():
    assert connected_components([]) == []
