from astradup.match.groups import components


def _components(pairs):
    return components([a for a, _ in pairs], [b for _, b in pairs])


def test_components_merge_transitively_and_sort_biggest_first():
    groups = _components([("b", "c"), ("x", "y"), ("a", "b"), ("c", "a")])
    assert groups == [["a", "b", "c"], ["x", "y"]]


def test_no_pairs_no_groups():
    assert _components([]) == []
