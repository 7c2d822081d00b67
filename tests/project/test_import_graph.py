"""The house's floors (scripts/import_graph.py): no import runs up a floor, no import circle."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
graph = importlib.util.module_from_spec(spec)
spec.loader.exec_module(graph)


def test_the_code_base_has_no_upward_import_and_no_circle():
    assert graph.check() == []


def test_the_checker_sees_an_upward_lazy_import_and_a_circle(tmp_path):
    """A function-level import of the CLI from io is still a dependency up three floors."""
    mod = tmp_path / "bad.py"
    mod.write_text("def f():\n    from astradup.cli import main\n    from . import decode\n")
    known = {"astradup.cli", "astradup.io.decode", "astradup.io.bad"}
    deps = graph.imports(mod, "astradup.io.bad", known)
    assert deps == {"astradup.cli", "astradup.io.decode"}
    assert graph.floor_of("astradup.cli") > graph.floor_of("astradup.io.bad")
    assert graph.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
