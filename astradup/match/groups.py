"""Duplicate groups: connected components of the pairs judged copies of each other, by a union-find
over integer ids in numpy arrays (millions of pairs: the dedup job's whole library)."""
from __future__ import annotations

from typing import Iterable

import numpy as np


class UnionFind:
    """Disjoint sets over ints 0..n-1 in numpy arrays: union by size, path halving on find.

    ``union_many`` takes the pairs as two int arrays; the loop runs over Python ints taken from the
    arrays once (millions of pairs take seconds, memory is two int64 arrays of n)."""

    def __init__(self, n: int) -> None:
        self.parent = np.arange(n, dtype=np.int64)
        self.size = np.ones(n, dtype=np.int64)

    def find(self, x: int) -> int:
        p = self.parent
        while p[x] != x:
            p[x] = p[p[x]]
            x = int(p[x])
        return int(x)

    def union_many(self, a: np.ndarray, b: np.ndarray) -> None:
        parent = self.parent.tolist()
        size = self.size.tolist()
        for x, y in zip(np.asarray(a, dtype=np.int64).tolist(), np.asarray(b, dtype=np.int64).tolist()):
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            while parent[y] != y:
                parent[y] = parent[parent[y]]
                y = parent[y]
            if x == y:
                continue
            if size[x] < size[y]:
                x, y = y, x
            parent[y] = x
            size[x] += size[y]
        self.parent = np.asarray(parent, dtype=np.int64)
        self.size = np.asarray(size, dtype=np.int64)

    def roots(self) -> np.ndarray:
        """The root of every element (vectorised pointer jumping until nothing changes)."""
        r = self.parent.copy()
        while True:
            nxt = r[r]
            if np.array_equal(nxt, r):
                return r
            r = nxt


def components(a: Iterable[str], b: Iterable[str]) -> list[list[str]]:
    """Connected components of the pairs (a[i], b[i]) of string ids; sorted ids in each group,
    biggest group first (then by first id)."""
    a, b = np.asarray(list(a), dtype=object), np.asarray(list(b), dtype=object)
    if not len(a):
        return []
    names, inv = np.unique(np.concatenate([a, b]).astype(str), return_inverse=True)
    uf = UnionFind(len(names))
    uf.union_many(inv[: len(a)], inv[len(a):])
    roots = uf.roots()
    order = np.argsort(roots, kind="stable")
    cuts = np.flatnonzero(np.diff(roots[order])) + 1
    groups = [sorted(names[idx].tolist()) for idx in np.split(order, cuts)]
    return sorted(groups, key=lambda g: (-len(g), g[0]))
