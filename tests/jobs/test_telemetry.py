"""Observability: Ray metrics (astradup/telemetry.py) on the Prometheus endpoint, the Grafana
dashboard's metric names, and structured logs (astradup/logs.py) in the driver and Ray's workers.

The Ray test starts a Ray of its own (counters are per Ray session: one shared with earlier test
modules would already hold their videos), indexes 2 tiny videos and 1 broken file, searches once,
then reads the metrics agent's Prometheus endpoint until the exact counts appear.
"""
from __future__ import annotations

import json
import logging
import re
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from astradup import telemetry
from astradup.config import LogConfig, load_config
from astradup.errors import ConfigError
from astradup.logs import JsonFormatter, TextFormatter, setup_logging
from tests.media import make_broken, make_video

DASHBOARD = Path(__file__).resolve().parents[2] / "configs" / "grafana" / "astradup.json"
SCRAPE_TIMEOUT_S = 45  # Ray's core workers report metrics to the agent every ~10 s


@pytest.fixture()
def restore_logging():
    """setup_logging changes the process-wide ``astradup`` logger: put it back after the test."""
    logger = logging.getLogger("astradup")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield logger
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- metric registry (no Ray)


def test_metrics_are_noops_without_ray(monkeypatch):
    """The CLI and pure unit tests run without Ray: every call must do nothing and not import Ray."""
    monkeypatch.delitem(sys.modules, "ray", raising=False)
    assert telemetry.metric(telemetry.VIDEOS_PROCESSED) is telemetry.NOOP
    telemetry.inc(telemetry.VIDEOS_PROCESSED, 3, status="ok")
    telemetry.set_gauge(telemetry.BACKFILL_QUEUE, 5)
    with telemetry.timed(telemetry.INDEX_STAGE_LATENCY, stage="decode") as sw:
        time.sleep(0.01)
    assert sw.seconds >= 0.01
    assert "ray" not in sys.modules


def test_unknown_names_and_wrong_tags_fail_loudly(monkeypatch):
    monkeypatch.delitem(sys.modules, "ray", raising=False)
    with pytest.raises(KeyError):
        telemetry.inc("astradup_no_such_metric")
    with pytest.raises(ValueError, match="takes tags"):
        telemetry.inc(telemetry.VIDEOS_PROCESSED, 1)  # status missing
    with pytest.raises(ValueError, match="takes tags"):
        with telemetry.timed(telemetry.INDEX_STAGE_LATENCY, video_id="x"):
            pass


def test_exported_names_follow_rays_conventions():
    """Ray prefixes ray_; counters export <name>_total; histograms _bucket/_count/_sum."""
    names = telemetry.exported_names()
    assert "ray_astradup_videos_processed_total" in names
    assert "ray_astradup_media_seconds_total" in names
    assert {"ray_astradup_index_stage_latency_s_bucket", "ray_astradup_index_stage_latency_s_count"} <= names
    assert "ray_astradup_backfill_queue_depth" in names
    for spec in telemetry.SPECS.values():
        assert spec.name.startswith("astradup_") and re.fullmatch(r"[a-z_]+", spec.name), spec.name
        assert set(spec.tag_keys) <= {"stage", "status", "kind", "outcome"}, spec  # small, bounded tags
        if spec.kind == telemetry.HISTOGRAM:
            assert list(spec.boundaries) == sorted(spec.boundaries) and spec.boundaries[0] > 0


def test_inflight_gauge_counts_calls_inside_and_tracks_exceptions(monkeypatch):
    import pickle

    monkeypatch.delitem(sys.modules, "ray", raising=False)
    gauge = telemetry.inflight(telemetry.SEARCH_INFLIGHT)
    # Ray Serve pickles the deployment class with its decorated methods: they must all land on
    # the one counter of the replica's process, not on copies of their own.
    assert pickle.loads(pickle.dumps(gauge)) is gauge
    seen = []

    @gauge.track
    def work(fail: bool) -> int:
        seen.append(gauge.n)
        if fail:
            raise RuntimeError("boom")
        return 7

    assert work(False) == 7
    with pytest.raises(RuntimeError):
        work(True)
    assert seen == [1, 1] and gauge.n == 0


def test_ensure_ray_passes_the_configured_metrics_port(monkeypatch):
    """pipeline.metrics_export_port reaches ray.init; 0 leaves the port to Ray."""
    import ray

    from astradup.pipeline import ensure_ray

    calls = []
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    ensure_ray(load_config(overrides={"pipeline": {"metrics_export_port": 18080, "dashboard": False}}))
    ensure_ray(load_config(overrides={"pipeline": {"dashboard": False}}))
    assert calls[0]["_metrics_export_port"] == 18080
    assert "_metrics_export_port" not in calls[1]


# ---------------------------------------------------------------- Grafana dashboard


def _panels(dash: dict) -> list[dict]:
    out = []
    for p in dash["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def test_grafana_dashboard_uses_only_defined_metric_names():
    dash = json.loads(DASHBOARD.read_text())
    panels = _panels(dash)
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    assert exprs and len({p["id"] for p in panels}) == len(panels)
    used = {m for e in exprs for m in re.findall(r"\bray_[a-z0-9_]+", e)}
    ours = telemetry.exported_names()
    unknown = used - ours - set(telemetry.RAY_SERVE_METRICS)
    assert not unknown, f"dashboard names not defined in astradup/telemetry.py: {sorted(unknown)}"
    # Every metric we define is on the dashboard (a new one without a panel is a forgotten panel).
    unused = {s.name for s in telemetry.SPECS.values() if not set(s.exported_names()) & used}
    assert not unused, f"metrics without a panel: {sorted(unused)}"
    # Quantiles only from bucket series, aggregated keeping le.
    for e in exprs:
        if "histogram_quantile" in e:
            assert "_bucket[" in e and re.search(r"sum by \(le\b", e), e
    titles = " ".join(p["title"] for p in panels).lower()
    for word in ("videos/s", "x realtime", "failures", "p50", "p95", "search latency", "queue depth"):
        assert word in titles, word


def test_ray_serve_metrics_on_the_dashboard_exist_in_the_installed_ray():
    """Ray Serve's own names are not ours to define: check Ray still makes them."""
    import ray.serve._private.router as router

    src = Path(router.__file__).read_text()
    for name in telemetry.RAY_SERVE_METRICS:
        assert f'"{name.removeprefix("ray_")}"' in src, name


# ---------------------------------------------------------------- structured logs


def _record(msg: str = "decoded", level: int = logging.INFO, **extra) -> logging.LogRecord:
    rec = logging.LogRecord("astradup.pipeline", level, __file__, 1, msg, None, None)
    for k, v in extra.items():
        setattr(rec, k, v)
    return rec


def test_json_formatter_writes_one_parseable_object_with_the_extras():
    line = JsonFormatter().format(_record(video_id="ab" * 16, stage="decode", duration_s=1.234567,
                                          status="ok", path=Path("/x")))
    assert "\n" not in line
    d = json.loads(line)
    assert d["level"] == "INFO" and d["logger"] == "astradup.pipeline" and d["msg"] == "decoded"
    assert d["video_id"] == "ab" * 16 and d["stage"] == "decode" and d["status"] == "ok"
    assert d["duration_s"] == pytest.approx(1.2346) and d["path"] == "/x"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", d["ts"])
    try:
        raise ValueError("bad frame")
    except ValueError:
        rec = _record("failed", logging.ERROR)
        rec.exc_info = sys.exc_info()
    assert "ValueError: bad frame" in json.loads(JsonFormatter().format(rec))["exc"]


def test_text_formatter_keeps_the_same_fields():
    line = TextFormatter().format(_record(video_id="v1", stage="embed", duration_s=0.5))
    assert " INFO astradup.pipeline: decoded video_id=v1 stage=embed duration_s=0.5" in line


def test_level_from_config_filters_and_setup_is_idempotent(restore_logging, capsys):
    log = logging.getLogger("astradup.test")
    setup_logging(LogConfig(level="WARNING", json=True))
    setup_logging(LogConfig(level="WARNING", json=True))
    assert len(restore_logging.handlers) == 1
    log.info("hidden")
    log.warning("shown", extra={"stage": "write"})
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    assert [(x["msg"], x["level"], x["stage"]) for x in lines] == [("shown", "WARNING", "write")]
    setup_logging(LogConfig(level="DEBUG", json=False))  # switches in place, no second handler
    assert len(restore_logging.handlers) == 1
    log.debug("now plain")
    err = capsys.readouterr().err
    assert "DEBUG astradup.test: now plain" in err and not err.startswith("{")
    with pytest.raises(ConfigError):
        setup_logging(LogConfig(level="LOUD"))


def test_decoding_a_video_logs_its_id_stage_and_duration(tmp_path, restore_logging, capsys):
    from astradup.decode_stage import decode_batch

    good = make_video(tmp_path / "good.mp4", seconds=3, size=(160, 120), source="testsrc2", audio="sine", seed=1)
    bad = make_broken("not_video", tmp_path / "bad.mp4")
    cfg = load_config(overrides={"data_dir": str(tmp_path / "data"), "log": {"json": True, "level": "INFO"}})
    uris = [str(good), str(bad)]
    out = decode_batch({"uri": np.array(uris, dtype=object),
                        "size": np.array([p.stat().st_size for p in (good, bad)])}, cfg, frozenset())
    recs = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    by_uri = {r["uri"]: r for r in recs if r.get("stage") == "decode"}
    assert set(by_uri) == set(uris)
    ok, failed = by_uri[str(good)], by_uri[str(bad)]
    assert ok["video_id"] == out["video_id"][0] and ok["status"] == "ok" and ok["level"] == "INFO"
    assert 0 < ok["duration_s"] < 120
    assert failed["status"] == "failed" and failed["level"] == "WARNING" and failed["error"]
    assert failed["video_id"] == out["video_id"][1]


# ---------------------------------------------------------------- Ray metrics end to end


def _scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name.startswith("ray_astradup_"):
                out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def _value(samples: dict, name: str, **labels: str) -> float | None:
    """Sum over every series of ``name`` with these labels (Ray adds WorkerId etc.); None if absent."""
    rows = [v for lab, v in samples.get(name, []) if all(lab.get(k) == x for k, x in labels.items())]
    return sum(rows) if rows else None


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    """A fresh local Ray on a chosen metrics port; 2 videos + 1 broken file indexed, 1 search."""
    import ray

    from astradup.catalog import Catalog
    from astradup.pipeline import index
    from astradup.search import Searcher

    if ray.is_initialized():
        ray.shutdown()  # counters are per Ray session: earlier modules' videos must not count here
    root = tmp_path_factory.mktemp("telemetry")
    lib = root / "library"
    lib.mkdir()
    make_video(lib / "a.mp4", seconds=4, size=(160, 120), source="mandelbrot", audio="music", seed=1)
    make_video(lib / "b.mp4", seconds=5, size=(160, 120), source="life", audio=None, seed=2)
    make_broken("not_video", lib / "broken.mp4")
    port = _free_port()
    cfg = load_config(overrides={"data_dir": str(root / "data"),
                                 "pipeline": {"dashboard": False, "decode_concurrency": 1,
                                              "metrics_export_port": port}})
    catalog = Catalog(cfg)
    report = index([str(lib)], cfg, catalog=catalog)
    assert report.indexed == 2 and len(report.failed) == 1, report.summary()
    Searcher(cfg, catalog).search_indexed(report.video_ids[0])
    catalog.vectors.close()
    yield {"port": port, "report": report, "cfg": cfg, "done": time.monotonic()}
    ray.shutdown()  # the next module that needs Ray starts its own (ensure_ray)


def test_index_metrics_reach_the_prometheus_endpoint(indexed):
    import ray

    port, report = indexed["port"], indexed["report"]
    assert [n["MetricsExportPort"] for n in ray.nodes() if n["Alive"]] == [port]
    want = {
        ("ray_astradup_videos_processed_total", "status", "ok"): 2,
        ("ray_astradup_videos_processed_total", "status", "failed"): 1,
        ("ray_astradup_index_stage_latency_s_count", "stage", "decode"): 2,
        ("ray_astradup_index_stage_latency_s_count", "stage", "features"): 2,
        ("ray_astradup_index_stage_latency_s_count", "stage", "embed"): 2,
        ("ray_astradup_index_stage_latency_s_count", "stage", "write_milvus"): 1,
        ("ray_astradup_index_stage_latency_s_count", "stage", "write_parquet"): 1,
        ("ray_astradup_query_stage_latency_s_count", "stage", "knn"): 1,
        ("ray_astradup_query_stage_latency_s_count", "stage", "score"): 1,
        ("ray_astradup_query_stage_latency_s_count", "stage", "search"): 1,
    }
    deadline = time.monotonic() + SCRAPE_TIMEOUT_S
    while True:
        samples = _scrape(port)
        got = {k: _value(samples, k[0], **{k[1]: k[2]}) for k in want}
        media = _value(samples, "ray_astradup_media_seconds_total")
        queue = _value(samples, "ray_astradup_backfill_queue_depth")
        if (got == want and media is not None and queue is not None) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert got == want
    assert media == pytest.approx(report.media_seconds, rel=1e-6) and 8 < media < 10
    assert queue == 0  # the job ended: nothing listed is left unwritten
    # Histogram buckets are cumulative and end at +Inf with the count.
    inf = _value(samples, "ray_astradup_index_stage_latency_s_bucket", stage="decode", le="+Inf")
    assert inf == 2


def test_ray_workers_write_json_log_lines_per_video(indexed):
    """The decode tasks and the embedder actor set up logging themselves: their stderr files in
    Ray's session log dir hold one JSON line per video and stage."""
    import ray

    logs_dir = Path(ray._private.worker._global_node.get_logs_dir_path())
    recs = []
    for f in logs_dir.glob("worker-*.err"):
        for line in f.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    recs.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    report = indexed["report"]
    decoded = {r["video_id"]: r for r in recs if r.get("stage") == "decode"}
    embedded = {r["video_id"]: r for r in recs if r.get("stage") == "embed"}
    assert set(report.video_ids) <= set(decoded) and set(report.video_ids) == set(embedded)
    assert len(decoded) == 3 and sum(r["status"] == "failed" for r in decoded.values()) == 1
    for r in [*decoded.values(), *embedded.values()]:
        assert r["logger"] == "astradup.pipeline" and isinstance(r["duration_s"], (int, float))
        assert r["duration_s"] >= 0 and r["ts"]


def test_gauges_stay_on_the_endpoint_between_updates(indexed):
    """Ray exports a gauge only for a report interval or two after it was set (measured: gone
    ~30 s later); the queue depth is set once per write batch, so telemetry keeps re-setting it.
    35 s after the job set it to 0 for the last time, it must still be there."""
    time.sleep(max(0.0, indexed["done"] + 35 - time.monotonic()))
    assert _value(_scrape(indexed["port"]), "ray_astradup_backfill_queue_depth") == 0
