"""`make test`'s two pytest-xdist workers get whole units (tests/conftest.py ``module_scope``): a
module, or one of the groups that must not run on both workers at once."""
from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import module_scope

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
    """A new module that takes the served app's fixture or starts a Milvus server lands in its group
    (found by its import): otherwise both workers would start one."""
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        text = path.read_text()
        rel = str(path.relative_to(ROOT))
        if re.search(r"^from tests\.serve_harness import .*\bsrv\b", text, re.M):
            assert module_scope(rel, ROOT) == "served_app", rel
        if re.search(r"\bmilvus_server\(tmp_path_factory", text):
            assert module_scope(rel, ROOT) == "milvus_server", rel


def test_the_makefile_runs_the_grouped_scheduling():
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"pytest .*-n 2 --dist loadfile tests", make)
