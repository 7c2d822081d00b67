"""A video is deleted exactly once: concurrent DELETEs of one id write one tombstone, and the
others are told it is already deleted (the API answers 409, the CLI says so)."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq

from astradup.catalog import DELETE_ALREADY, DELETE_DONE, DELETE_NOT_INDEXED, Catalog
from astradup.cli import main as cli_main
from astradup.config import load_config
from astradup.records import STATUS_DELETED
from astradup.store.shards import ShardStore
from tests.store.test_shards import make_features


class SlowVectors:
    """Stands in for Milvus: deleting takes a while, the window in which a second delete used to
    see the video still ``ok`` and write a tombstone of its own."""

    def __init__(self) -> None:
        self.deleted: list[str] = []

    def count(self, video_id: str | None = None) -> dict[str, int]:
        return {"frames": 7, "audio": 4}

    def delete_video(self, video_id: str) -> None:
        time.sleep(0.2)
        self.deleted.append(video_id)

    def delete_videos(self, video_ids) -> None:
        time.sleep(0.2)
        self.deleted.extend(video_ids)


def _catalog(root: Path) -> Catalog:
    cat = Catalog(load_config(overrides={"data_dir": str(root)}))
    cat._vectors = SlowVectors()
    return cat


def _tombstones(root: Path, video_id: str) -> int:
    return sum(1 for p in (root / "shards" / "status").glob("part-*.parquet")
               for r in pq.read_table(p).to_pylist() if r["video_id"] == video_id and r["status"] == STATUS_DELETED)


def _concurrently(n: int, fn) -> list:
    barrier = threading.Barrier(n)
    out: list = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        out[i] = fn(i)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return out


def test_three_concurrent_deletes_write_one_tombstone(tmp_path):
    cat = _catalog(tmp_path)
    cat.shards.write_features([make_features("v1")])
    # Three catalogs (three ShardStore objects on one root, as the server and a CLI would hold).
    cats = [cat, _catalog(tmp_path), _catalog(tmp_path)]
    res = _concurrently(3, lambda i: cats[i].remove("v1"))
    assert sorted(r.state for r in res) == sorted([DELETE_DONE, DELETE_ALREADY, DELETE_ALREADY])
    assert [r.vectors_removed for r in res if r.state == DELETE_DONE] == [11]
    assert _tombstones(tmp_path, "v1") == 1
    assert sum(len(c._vectors.deleted) for c in cats) == 1
    assert cat.delete("v1") is None and _tombstones(tmp_path, "v1") == 1  # old contract kept


def test_http_delete_answers_409_to_the_losers(tmp_path):
    """The search deployment's delete, the code the gateway's DELETE /videos/{id} calls."""
    from serve.search_service import SearchService

    svc = object.__new__(SearchService.func_or_class)
    svc.catalog = _catalog(tmp_path)
    svc.catalog.shards.write_features([make_features("v1")])
    res = _concurrently(3, lambda i: svc.delete("v1"))
    ok = [r for r in res if "error" not in r]
    assert ok == [{"deleted": "v1", "vectors_removed": 11}]
    assert sorted(r.get("status") for r in res if "error" in r) == [409, 409]
    assert all("already deleted" in r["error"] for r in res if "error" in r)
    assert _tombstones(tmp_path, "v1") == 1
    assert svc.delete("v2")["status"] == 404  # never indexed: still "not in the index"


def test_cli_delete_says_already_deleted(tmp_path, capsys):
    ShardStore(str(tmp_path / "shards")).write_features([make_features("v1")])
    ShardStore(str(tmp_path / "shards")).mark_deleted("v1")
    assert cli_main(["--data-dir", str(tmp_path), "delete", "v1"]) == 1
    assert capsys.readouterr().out.strip() == "v1: already deleted"
    assert _tombstones(tmp_path, "v1") == 1


def test_delete_guard_excludes_another_process(tmp_path):
    """The lock file extends the guard across processes on a local root (a CLI next to the server)."""
    root = tmp_path / "shards"
    marker = tmp_path / "held"
    code = ("import sys, time; from pathlib import Path; from astradup.store.shards import ShardStore\n"
            "with ShardStore(sys.argv[1]).delete_guard():\n"
            "    Path(sys.argv[2]).touch(); time.sleep(1.5)\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(root), str(marker)],
                             cwd=Path(__file__).resolve().parents[2])
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        t0 = time.monotonic()
        with ShardStore(str(root)).delete_guard():
            waited = time.monotonic() - t0
        assert waited > 0.5
    finally:
        child.wait(timeout=60)


def _hex(i: int) -> str:
    return f"{i:032x}"


def test_remove_many_deletes_each_ok_video_once_in_one_pass(tmp_path):
    cat = _catalog(tmp_path)
    ids = [_hex(i) for i in range(1, 6)]
    cat.shards.write_features([make_features(v) for v in ids])
    cat.remove(ids[0])
    cats = [cat, _catalog(tmp_path)]
    want = ids + [_hex(99), ids[2]]  # one never indexed, one listed twice
    res = _concurrently(2, lambda i: cats[i].remove_many(want))
    states = [{v: r.state for v, r in out.items()} for out in res]
    assert all(list(s) == want[:-1] for s in states)  # each id once, in the order given
    for v in ids[1:]:  # one of the two lists deleted it, the other found it deleted
        assert sorted(s[v] for s in states) == [DELETE_ALREADY, DELETE_DONE]
        assert _tombstones(tmp_path, v) == 1
    assert all(s[ids[0]] == DELETE_ALREADY and s[_hex(99)] == DELETE_NOT_INDEXED for s in states)
    assert sorted(v for c in cats for v in c._vectors.deleted) == sorted(ids)  # ids[0] by remove
    assert len(cats[0]._vectors.deleted) + len(cats[1]._vectors.deleted) == 5


def test_cli_delete_takes_a_takedown_list_and_refuses_a_bad_one_whole(tmp_path, capsys, monkeypatch):
    from astradup.commands import library

    ids = [_hex(i) for i in range(1, 4)]
    ShardStore(str(tmp_path / "shards")).write_features([make_features(v) for v in ids])
    monkeypatch.setattr(Catalog, "vectors", property(lambda self: SlowVectors()))
    bad = tmp_path / "bad.txt"
    for content, says in [(f"{ids[0]}\nnot-an-id\n".encode(), "line 2: video_id is not 32 lowercase hex"),
                          (b"\xff\xfe" + ids[0].encode(), "not UTF-8 text"),
                          (("# takedown\n" + ids[0] + "\n") * 40, "larger than")]:
        if says == "larger than":
            monkeypatch.setattr(library, "MAX_ID_LIST_BYTES", 1000)
        bad.write_bytes(content.encode() if isinstance(content, str) else content)
        assert cli_main(["--data-dir", str(tmp_path), "delete", "--from", str(bad)]) == 2
        assert says in capsys.readouterr().err
        assert all(_tombstones(tmp_path, v) == 0 for v in ids)  # nothing deleted
    assert cli_main(["--data-dir", str(tmp_path), "delete", "--from", str(tmp_path / "missing.txt")]) == 2
    assert "missing.txt" in capsys.readouterr().err
    assert cli_main(["--data-dir", str(tmp_path), "delete"]) == 2
    good = tmp_path / "takedown.txt"
    good.write_text(f"# takedown 2026-12\n{ids[0]}\n\n{ids[1]}  # second\n{_hex(77)}\n")
    assert cli_main(["--data-dir", str(tmp_path), "delete", ids[2], "--from", str(good)]) == 1  # one unknown
    out = capsys.readouterr().out
    assert f"{_hex(77)}: not in the index" in out and "deleted 3 of 4 videos" in out
    assert all(_tombstones(tmp_path, v) == 1 for v in ids)
