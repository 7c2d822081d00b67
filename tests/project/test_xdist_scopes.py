"""`make test`'s two pytest-xdist workers get whole units (tests/conftest.py ``module_scope``): a
module, or one of the groups that must not run on both workers at once."""
from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import module_scope
from tests.serve_harness import FIXTURE

ROOT = Path(__file__).resolve().parents[2]


def test_modules_sharing_the_served_app_or_starting_milvus_are_one_unit_each():
    served = ["tests/serve/test_serve.py", "tests/serve/test_serve_fuzz.py", "tests/serve/test_serve_browser.py"]
    milvus = ["tests/store/test_milvus_server.py", "tests/store/test_milvus_outage.py",
              "tests/jobs/test_write_paths.py", "tests/jobs/test_concurrency.py"]
    assert {module_scope(f"{p}::test_x", ROOT) for p in served} == {"served_app"}
    assert {module_scope(f"{p}::test_x[a::b]", ROOT) for p in milvus} == {"milvus_server"}
    # a module that only borrows a helper from the harness is its own unit
    for path in ("tests/serve/test_serve_guards.py", "tests/match/test_align.py", "tests/project/test_config.py"):
        assert module_scope(f"{path}::test_x", ROOT) == path


def test_every_module_that_uses_a_shared_server_is_grouped():
    """A module whose tests take the served app's fixture, or that starts a Milvus server, lands in
    its group (which ``module_scope`` finds by the module's import): otherwise both workers would
    start one. Found here by the use, not the import, so a module that gets the fixture another way
    fails this test."""
    uses_app = re.compile(rf"^\s*def test_\w+\([^)]*\b{FIXTURE}\b", re.M)
    found = {"served_app": 0, "milvus_server": 0}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        text = path.read_text()
        rel = str(path.relative_to(ROOT))
        if uses_app.search(text):
            assert module_scope(rel, ROOT) == "served_app", rel
            found["served_app"] += 1
        if re.search(r"\bmilvus_server\(tmp_path_factory", text):
            assert module_scope(rel, ROOT) == "milvus_server", rel
            found["milvus_server"] += 1
    assert found == {"served_app": 3, "milvus_server": 4}


def test_the_makefile_runs_the_grouped_scheduling():
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"pytest .*-n 2 --dist loadfile tests", make)
