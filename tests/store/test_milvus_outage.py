"""Milvus outages: the retry policy (pure, on a fake clock) and a backfill through a server restart.

The restart test stops the Milvus server right after the backfill's first write, starts it again
a few seconds later on the same base dir and ports, and checks that the job ends with every video
indexed exactly once and that the retries were logged.
"""
from __future__ import annotations

import logging
import threading
import time

import grpc
import numpy as np
import pytest
from pymilvus import MilvusException

from astradup.catalog import Catalog
from astradup.config import load_config
from astradup.pipeline import index
from astradup.records import STATUS_OK
from astradup.search import Query, Searcher
from astradup.store.retry import (NO_RETRY, RetryPolicy, is_connection_error, is_dead_channel, is_not_loaded,
                                  is_transient, retry_call)
from astradup.store.vectors import VectorStore
from tests.media import SOURCES, make_video
from tests.milvus_harness import milvus_server


class FakeClock:
    """Records the waits instead of sleeping them."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)


class Rpc(grpc.RpcError):
    """A gRPC error with a status code, as the channel raises it."""

    def __init__(self, code: grpc.StatusCode, details: str = "") -> None:
        super().__init__(details)
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def failing(errors: list[BaseException], value: str = "done"):
    """A call that raises each of ``errors`` in turn, then returns ``value``; counts its calls."""
    calls = [0]

    def fn() -> str:
        calls[0] += 1
        if calls[0] <= len(errors):
            raise errors[calls[0] - 1]
        return value

    return fn, calls


# ------------------------------------------------------------------ the policy, on a fake clock

def test_backoff_doubles_up_to_the_cap_and_defaults_follow_the_config():
    assert list(RetryPolicy(8, 0.5, 30.0).delays()) == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    assert RetryPolicy(8, 0.5, 30.0).total_wait == 61.5
    assert list(RetryPolicy(5, 1.0, 3.0).delays()) == [1.0, 2.0, 3.0, 3.0]
    assert list(NO_RETRY.delays()) == []
    cfg = load_config(overrides={"retry": {"attempts": 3, "backoff": 0.25, "max_backoff": 0.4}})
    assert RetryPolicy.from_config(cfg.retry) == RetryPolicy(3, 0.25, 0.4)
    assert RetryPolicy.from_config(load_config().retry) == RetryPolicy()
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(backoff=-1)


def test_transient_errors_are_retried_on_schedule_and_each_retry_is_logged(caplog):
    clock = FakeClock()
    down = MilvusException(code=2, message="Fail connecting to server on 127.0.0.1:19530")
    fn, calls = failing([down, Rpc(grpc.StatusCode.UNAVAILABLE, "connection refused"), ConnectionResetError()])
    seen: list[tuple[str, int]] = []
    with caplog.at_level(logging.WARNING, logger="astradup.store"):
        out = retry_call(fn, RetryPolicy(8, 0.5, 30.0), "upsert frames", sleep=clock.sleep,
                         before_retry=lambda e, n: seen.append((type(e).__name__, n)))
    assert out == "done" and calls[0] == 4
    assert clock.waits == [0.5, 1.0, 2.0]
    assert seen == [("MilvusException", 2), ("Rpc", 3), ("ConnectionResetError", 4)]
    logged = [r for r in caplog.records if r.name == "astradup.store"]
    assert len(logged) == 3 and all(r.levelno == logging.WARNING for r in logged)
    assert "upsert frames" in logged[0].getMessage() and "try 1 of 8" in logged[0].getMessage()
    assert "retrying in 0.50 s" in logged[0].getMessage()


def test_the_last_error_is_raised_once_the_tries_are_spent(caplog):
    clock = FakeClock()
    err = Rpc(grpc.StatusCode.UNAVAILABLE, "down")
    fn, calls = failing([err] * 10)
    with caplog.at_level(logging.WARNING, logger="astradup.store"), pytest.raises(Rpc) as info:
        retry_call(fn, RetryPolicy(4, 1.0, 2.5), "search", sleep=clock.sleep)
    assert info.value is err and calls[0] == 4 and clock.waits == [1.0, 2.0, 2.5]
    assert [r.levelno for r in caplog.records if r.name == "astradup.store"] == [logging.WARNING] * 3 + [logging.ERROR]


def test_errors_that_waiting_cannot_fix_are_raised_at_once():
    for err in (MilvusException(code=100, message="collection not found[collection=x]"),
                MilvusException(code=1, message="Unexpected error, message=<bad filter>"),
                Rpc(grpc.StatusCode.INVALID_ARGUMENT, "bad"), ValueError("dim mismatch"), KeyError("x")):
        clock = FakeClock()
        fn, calls = failing([err])
        with pytest.raises(type(err)):
            retry_call(fn, RetryPolicy(), "query", sleep=clock.sleep)
        assert calls[0] == 1 and clock.waits == [], err


def test_which_errors_are_transient_and_which_need_a_new_channel():
    unavailable = Rpc(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses")
    assert is_transient(unavailable) and is_connection_error(unavailable) and not is_dead_channel(unavailable)
    assert is_transient(Rpc(grpc.StatusCode.DEADLINE_EXCEEDED)) and not is_connection_error(
        Rpc(grpc.StatusCode.DEADLINE_EXCEEDED))
    assert not is_transient(Rpc(grpc.StatusCode.RESOURCE_EXHAUSTED, "message larger than max"))
    connect = MilvusException(code=2, message="Fail connecting to server on 127.0.0.1:19530")
    assert is_transient(connect) and is_connection_error(connect)
    assert is_transient(MilvusException(code=1, message="service not ready[server=standalone]"))
    assert is_transient(MilvusException(code=8, message="rate limit exceeded"))
    assert is_transient(MilvusException(code=65535, message="x", retriable=True))
    closed = ValueError("Cannot invoke RPC on closed channel!")
    assert is_transient(closed) and is_dead_channel(closed) and is_connection_error(closed)
    assert is_transient(ConnectionRefusedError()) and is_transient(TimeoutError())
    assert not is_transient(ValueError("vector dim 16 does not match 32"))
    assert not is_transient(MilvusException(code=101, message="collection not loaded"))


def test_a_caller_may_retry_an_error_it_knows_how_to_repair():
    not_loaded = MilvusException(code=101, message="collection not loaded[collection=4707]")
    assert is_not_loaded(not_loaded) and not is_transient(not_loaded)
    clock, repaired = FakeClock(), []
    fn, calls = failing([not_loaded])
    assert retry_call(fn, RetryPolicy(), "search", sleep=clock.sleep, retry_if=is_not_loaded,
                      before_retry=lambda e, n: repaired.append((e, n))) == "done"
    assert repaired == [(not_loaded, 2)] and clock.waits == [0.5] and calls[0] == 2
    fn, calls = failing([not_loaded])
    with pytest.raises(MilvusException):  # without the caller's say-so it is not retried
        retry_call(fn, RetryPolicy(), "search", sleep=clock.sleep)
    assert calls[0] == 1


# ------------------------------------------------------------------ a real server, restarted mid-backfill

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from milvus_server(tmp_path_factory, "outage_milvus")


def test_a_closed_channel_gets_a_new_client_and_an_unloaded_collection_is_loaded(server, caplog):
    with VectorStore(server.uri, prefix="dead", visual_dim=4, audio_dim=2,
                     retry=RetryPolicy(4, 0.1, 0.5)) as store:
        first = store.client
        first._handler.close()  # what a channel torn down under a long-lived client looks like
        with caplog.at_level(logging.WARNING, logger="astradup.store"):
            assert store.count() == {"frames": 0, "phash": 0, "audio": 0}
        assert store.client is not first
        msgs = [r.getMessage() for r in caplog.records if r.name == "astradup.store"]
        assert any("closed channel" in m and "retrying" in m for m in msgs), msgs
        assert any("replaced by a new connection" in m for m in msgs), msgs

        # A restarted server answers "collection not loaded" until it has reloaded its collections;
        # a released collection gives the same answer, and the store loads it and carries on.
        caplog.clear()
        store.client.release_collection(store.frames)
        with caplog.at_level(logging.WARNING, logger="astradup.store"):
            assert store.search_frames(np.ones((1, 4), np.float32), k=1) == [[]]
        assert any("not loaded" in r.getMessage() for r in caplog.records if r.name == "astradup.store")


def test_backfill_through_a_milvus_restart_indexes_every_video_once(server, tmp_path, caplog, monkeypatch):
    videos = tmp_path / "videos"
    videos.mkdir()
    n = 4
    for i in range(n):
        make_video(videos / f"v{i}.mp4", seconds=3, size=(160, 120), source=SOURCES[i], audio="music", seed=i)
    cfg = load_config(overrides={
        "data_dir": str(tmp_path / "data"), "milvus_uri": server.uri, "collection_prefix": "outage",
        # The driver writes (not writer actors, auto's choice on a server): the outage is timed
        # from its Catalog.write, and its retries are logged in this process.
        "pipeline": {"dashboard": False, "decode_concurrency": 1, "write_batch": 1, "writers": "driver"},
        # Up to ~2 min of waiting: a restart takes 10-60 s on this machine, more when it is busy.
        "retry": {"attempts": 16, "backoff": 0.5, "max_backoff": 10.0}})
    cat = Catalog(cfg)
    outage: dict[str, float] = {}
    restart_error: list[BaseException] = []

    def restart_later() -> None:
        try:
            time.sleep(3)
            server.start()
            outage["up"] = time.time()
        except BaseException as e:  # pytest.fail/skip raise BaseException subclasses
            restart_error.append(e)

    write = cat.write
    restarter = threading.Thread(target=restart_later)

    def write_then_stop_the_server(batch) -> None:
        write(batch)
        if "down" not in outage:  # right after the first batch is stored: the rest meet the outage
            server.stop()
            outage["down"] = time.time()
            restarter.start()

    cat.write = write_then_stop_the_server  # index() writes through catalog.write
    with caplog.at_level(logging.WARNING, logger="astradup.store"):
        report = index([str(videos)], cfg, catalog=cat)
    restarter.join(timeout=300)
    assert not restart_error, restart_error
    assert report.indexed == n and not report.failed, report.summary()

    retries = [r for r in caplog.records if r.name == "astradup.store" and "retrying in" in r.getMessage()]
    assert retries, "no retry was logged"
    assert all(outage["down"] <= r.created <= outage["up"] + 30 for r in retries)
    store_log = [r.getMessage() for r in caplog.records if r.name == "astradup.store"]
    print(f"outage {outage['up'] - outage['down']:.1f} s, {len(retries)} retries logged:", *store_log, sep="\n  ")

    status = cat.shards.latest_status()
    assert len(status) == n and all(r["status"] == STATUS_OK for r in status.values())
    feats = cat.shards.load_features(status)
    assert cat.vectors.video_ids() == set(status)
    proj = getattr(cat.vectors, "projection", None)
    for vid, f in feats.items():
        g = proj.reduce(f) if proj is not None else f
        t = len(np.asarray(g.timestamps).reshape(-1))
        # No pHash collection (vectors.phash: auto makes none, on a server too): the restart's
        # "not loaded" recovery loads the two collections in use, nothing else.
        assert cat.vectors.count(vid) == {"frames": t, "phash": 0,
                                          "audio": len(np.asarray(g.audio_windows).reshape(-1, 2))}, vid
        ts, _ = cat.vectors.get_frames(vid)
        assert len(ts) == len(np.unique(ts)) == t
    searcher = Searcher(cfg, cat)  # and the restarted server answers searches
    for vid, f in feats.items():
        assert searcher.search(Query(f, None))[0].source_id == vid
    cat.vectors.close()
