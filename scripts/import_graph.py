"""The project's import graph, checked against its floors: no module imports one on a higher floor,
and no import circle exists (lazy imports inside functions count: they are still a dependency).

    .venv/bin/python scripts/import_graph.py          # prints violations; exit 1 when there are any

Floors, bottom up (a module may import its own floor and any below):
  0 base       astradup.{errors,config,records,logs,uris,telemetry,notify,raystart,progress,timeline}
  1 io         astradup.io
  2 features   astradup.features
  3 store/match/eval astradup.store, astradup.match, astradup.eval
  4 catalog    astradup.catalog, astradup.reviews
  5 search     astradup.search, astradup.pipeline (+ its decode_stage, embed_stage, write_stage),
               astradup.dedup, astradup.report, astradup.fingerprint, astradup.vpdq_search, astradup.demo_corpus
  6 shells     astradup.cli, astradup.commands, serve, jobs
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("astradup", "serve", "jobs")
FLOORS = [
    ("astradup.errors", "astradup.config", "astradup.records", "astradup.logs", "astradup.uris",
     "astradup.telemetry", "astradup.notify", "astradup.raystart", "astradup.progress", "astradup.timeline", "astradup.plain"),
    ("astradup.io",),
    ("astradup.features",),
    ("astradup.store", "astradup.match", "astradup.eval"),
    ("astradup.catalog", "astradup.reviews"),
    ("astradup.search", "astradup.pipeline", "astradup.decode_stage", "astradup.embed_stage", "astradup.write_stage",
     "astradup.dedup", "astradup.report", "astradup.fingerprint",
     "astradup.vpdq_search", "astradup.demo_corpus"),
    ("astradup.cli", "astradup.commands", "astradup.__main__", "serve", "jobs"),
]


def floor_of(module: str) -> int | None:
    if module in PACKAGES:
        return 0  # the packages' own (empty) __init__ modules
    best = None
    for i, prefixes in enumerate(FLOORS):
        for p in prefixes:
            if module == p or module.startswith(p + "."):
                if best is None or len(p) > best[1]:
                    best = (i, len(p))
    return None if best is None else best[0]


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Project modules ``path`` imports (anywhere in the file), resolved to the longest known name."""
    tree = ast.parse(path.read_text(), str(path))
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def check() -> list[str]:
    mods = modules()
    known = set(mods)
    graph = {m: imports(p, m, known) for m, p in mods.items()}
    problems = []
    for m, deps in sorted(graph.items()):
        fm = floor_of(m)
        if fm is None:
            problems.append(f"{m}: on no floor (add it to FLOORS in scripts/import_graph.py)")
            continue
        for d in sorted(deps):
            fd = floor_of(d)
            if fd is not None and fd > fm:
                problems.append(f"{m} (floor {fm}) imports {d} (floor {fd}): up a floor")
    for comp in cycles(graph):
        problems.append("import circle: " + " -> ".join(comp))
    return problems


def main() -> int:
    problems = check()
    for p in problems:
        print(p)
    print(f"{len(problems)} problem(s)" if problems else "import graph: no upward import, no circle")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
