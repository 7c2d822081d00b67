"""AstraDup's Ray metrics, defined in one place: names, kinds, tags and histogram buckets.

Everything goes through ``ray.util.metrics``, so the numbers reach each node's Prometheus endpoint
(``http://<node>:<MetricsExportPort>/metrics``) and the Ray dashboard's Metrics page without a
metrics server of our own; ``configs/grafana/astradup.json`` plots them. Ray exports a metric
named ``astradup_x`` as ``ray_astradup_x`` (counters get ``_total``, histograms ``_bucket``,
``_count`` and ``_sum``); ``MetricSpec.exported_names`` says which, and the dashboard test checks
every name the dashboard uses against it, so the two cannot drift apart.

Why a registry and lazy objects rather than module-level metrics:

* a metric object is only made when Ray is initialised in this process (driver, task worker,
  actor, Serve replica). Without Ray (unit tests, ``astradup search`` from the CLI) every call
  here is a no-op, and ``ray`` is not even imported for it;
* one object per name per process: Ray wants one definition of a name per process, and the
  decode tasks, the embedder actor, the driver and the Serve replicas all record into the same
  names from different processes (the metrics agent adds ``WorkerId``, so sum over it).

Tag keys are kept to ``stage``, ``status`` and ``kind``: every distinct tag value is a separate
time series in Prometheus, so a video id or a URI must never be a tag (those go in the logs).

Note: in Ray 2.60 a histogram's ``_sum`` is built from bucket midpoints, not the observed values;
quantiles from ``_bucket`` and counts from ``_count`` are exact, an average from ``_sum`` is not.
"""
from __future__ import annotations

import sys
import threading
import time
import functools
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"
EXPORT_PREFIX = "ray_"  # what Ray puts in front of a custom metric's name on export

# Per-video stage times go from milliseconds (pHash of a short clip) to many minutes (decoding a
# feature film on one core), so the buckets span 10 ms .. ~40 min.
STAGE_BOUNDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)
# A search's parts (KNN, scoring) take milliseconds; decoding a long uploaded query can take a minute.
QUERY_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# The HTTP search, end to end (the gateway's buckets since it first had metrics).
SEARCH_BOUNDS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)


@dataclass(frozen=True)
class MetricSpec:
    """One metric as Ray is told about it: enough to create it lazily in any process."""

    name: str
    kind: str  # COUNTER | GAUGE | HISTOGRAM
    description: str
    tag_keys: tuple[str, ...] = ()
    boundaries: tuple[float, ...] = ()  # histograms only

    def exported_names(self) -> tuple[str, ...]:
        """The series names Prometheus sees for this metric (what a dashboard may query)."""
        base = EXPORT_PREFIX + self.name
        if self.kind == COUNTER:
            return (base + "_total",)
        if self.kind == HISTOGRAM:
            return (base + "_bucket", base + "_count", base + "_sum")
        return (base,)


# --- indexing (driver, decode tasks, embedder actors)
VIDEOS_PROCESSED = "astradup_videos_processed"
MEDIA_SECONDS = "astradup_media_seconds"
INDEX_STAGE_LATENCY = "astradup_index_stage_latency_s"
BACKFILL_QUEUE = "astradup_backfill_queue_depth"
# --- search (Searcher in the CLI or the search replica, the Serve gateway)
QUERY_STAGE_LATENCY = "astradup_query_stage_latency_s"
SEARCH_INFLIGHT = "astradup_search_inflight"
SEARCHES = "astradup_searches"
SEARCH_LATENCY = "astradup_search_latency_s"
HTTP_ERRORS = "astradup_http_errors"
# --- the dedup job (jobs/dedup.py, astradup dedup)
DEDUP_BATCHES_DONE = "astradup_dedup_batches_done"
DEDUP_BATCHES_TOTAL = "astradup_dedup_batches_total"

SPECS: dict[str, MetricSpec] = {s.name: s for s in (
    MetricSpec(VIDEOS_PROCESSED, COUNTER,
               "Videos whose record was written: status ok (indexed), failed (record says why), "
               "skipped (already indexed)", ("status",)),
    MetricSpec(MEDIA_SECONDS, COUNTER,
               "Seconds of media indexed (its rate is the x-realtime throughput)"),
    MetricSpec(INDEX_STAGE_LATENCY, HISTOGRAM,
               "Seconds per video spent in one indexing stage: decode (probe, frames, PCM), features "
               "(pHash, Chromaprint, MFCC), embed (share of the batched embed call), write_milvus and "
               "write_parquet (per write batch); stages that fail are not observed",
               ("stage",), STAGE_BOUNDS),
    MetricSpec(BACKFILL_QUEUE, GAUGE,
               "Videos listed by the running index job and not yet written (0 when it ends)"),
    MetricSpec(QUERY_STAGE_LATENCY, HISTOGRAM,
               "Seconds per search in one stage: decode, features, embed (query side), knn "
               "(candidates), score (evidence, fusion, segments), search (Searcher.search in all)",
               ("stage",), QUERY_BOUNDS),
    MetricSpec(SEARCH_INFLIGHT, GAUGE,
               "Searches being answered by a search replica right now (Serve)"),
    MetricSpec(SEARCHES, COUNTER, "Searches answered, by kind and outcome", ("kind", "outcome")),
    MetricSpec(SEARCH_LATENCY, HISTOGRAM, "Search latency in seconds", ("kind",), SEARCH_BOUNDS),
    MetricSpec(HTTP_ERRORS, COUNTER, "HTTP responses with status >= 400", ("status",)),
    MetricSpec(DEDUP_BATCHES_DONE, GAUGE, "Batches of query videos the running dedup job has joined and written"),
    MetricSpec(DEDUP_BATCHES_TOTAL, GAUGE, "Batches of query videos the running dedup job has to join"),
)}

# Ray Serve's own metrics that the Grafana dashboard also plots (not defined here; Ray makes them).
# The dashboard test checks each still exists in the installed Ray.
RAY_SERVE_METRICS = ("ray_serve_deployment_queued_queries",)


def exported_names() -> set[str]:
    """Every series name AstraDup's metrics produce on a Prometheus endpoint."""
    return {n for s in SPECS.values() for n in s.exported_names()}


class _NoOp:
    """Stands in for a metric when Ray is not running here: same methods, records nothing."""

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        pass

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        pass

    def set(self, value: float | None, tags: dict[str, str] | None = None) -> None:
        pass


NOOP = _NoOp()
_lock = threading.Lock()
_live: dict[str, Any] = {}


def ray_active() -> bool:
    """Whether this process is part of a running Ray (driver, worker or replica).

    Looked up in ``sys.modules`` so that code paths without Ray never pay for importing it."""
    ray = sys.modules.get("ray")
    return ray is not None and bool(ray.is_initialized())


def metric(name: str) -> Any:
    """The Ray metric object for ``name`` (made on first use in this process), or a no-op one.

    An unknown name raises KeyError: a typo must fail loudly, not record into nothing.
    Objects survive a ``ray.shutdown()`` / ``ray.init()`` in the same process (Ray re-binds them).
    """
    spec = SPECS[name]
    if not ray_active():
        return NOOP
    with _lock:
        m = _live.get(name)
        if m is None:
            from ray.util import metrics as rm

            if spec.kind == COUNTER:
                m = rm.Counter(spec.name, description=spec.description, tag_keys=spec.tag_keys)
            elif spec.kind == GAUGE:
                m = rm.Gauge(spec.name, description=spec.description, tag_keys=spec.tag_keys)
            else:
                m = rm.Histogram(spec.name, description=spec.description, boundaries=list(spec.boundaries),
                                 tag_keys=spec.tag_keys)
            _live[name] = m
    return m


def _tags(name: str, tags: dict[str, str]) -> dict[str, str] | None:
    keys = SPECS[name].tag_keys
    if set(tags) != set(keys):
        raise ValueError(f"{name} takes tags {keys}, got {tuple(tags)}")
    return {k: str(v) for k, v in tags.items()} or None


def inc(name: str, value: float = 1.0, **tags: str) -> None:
    """Add ``value`` to a counter; zero or less adds nothing (Ray rejects it, and it means nothing)."""
    t = _tags(name, tags)
    if value > 0:
        metric(name).inc(float(value), tags=t)


def observe(name: str, value: float, **tags: str) -> None:
    """Record one histogram observation."""
    metric(name).observe(float(value), tags=_tags(name, tags))


GAUGE_REFRESH_S = 5.0
_gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
_refresher: threading.Thread | None = None


def set_gauge(name: str, value: float, **tags: str) -> None:
    """Set a gauge, and keep it set: Ray (2.60) exports a gauge only in the report interval after
    it was last set, so a queue depth set once per write batch would vanish from Prometheus
    between batches. A daemon thread re-sets every gauge of this process every few seconds."""
    t = _tags(name, tags)
    if not ray_active():
        return
    m = metric(name)
    global _refresher
    with _lock:  # with the refresher's loop: a stale value cannot land after this newer one
        m.set(float(value), tags=t)
        _gauges[(name, tuple(sorted((t or {}).items())))] = float(value)
        if _refresher is None or not _refresher.is_alive():
            _refresher = threading.Thread(target=_refresh_gauges, name="astradup-gauges", daemon=True)
            _refresher.start()


def _refresh_gauges() -> None:
    while True:
        time.sleep(GAUGE_REFRESH_S)
        if not ray_active():
            continue
        with _lock:
            for (name, tags), value in _gauges.items():
                try:
                    _live[name].set(value, tags=dict(tags) or None)
                except Exception:  # a metric must never take its process down
                    pass


class Stopwatch:
    """What ``timed`` yields: the elapsed seconds, readable after the block (for a log line)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.seconds = 0.0

    def stop(self) -> float:
        self.seconds = time.perf_counter() - self.t0
        return self.seconds


@contextmanager
def timed(name: str, **tags: str) -> Iterator[Stopwatch]:
    """Time the block into histogram ``name``; a block that raises is not observed (a failure is
    counted elsewhere, and half a stage's time would skew the stage's quantiles)."""
    _tags(name, tags)  # a wrong tag fails here, before the work, not after it
    sw = Stopwatch()
    yield sw
    observe(name, sw.stop(), **tags)


class Inflight:
    """A gauge of how many calls are inside a block right now, in this process.

    Use ``inflight(name)``: one counter per name per process. Pickling (Ray Serve ships a
    deployment class, decorated methods and all, to its replicas) yields that process's counter
    for the name, so every method decorated with it counts into the same number there.
    """

    def __init__(self, name: str) -> None:
        SPECS[name]  # unknown names fail here
        self.name = name
        self.n = 0
        self._lock = threading.Lock()

    def __reduce__(self) -> tuple[Callable[[str], Inflight], tuple[str]]:
        return inflight, (self.name,)

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            self.n += 1
            set_gauge(self.name, self.n)
        try:
            yield
        finally:
            with self._lock:
                self.n -= 1
                set_gauge(self.name, self.n)

    def track(self, fn: F) -> F:
        """Decorator form, for methods whose bodies should not be re-indented under a ``with``."""
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self():
                return fn(*args, **kwargs)
        return wrapper  # type: ignore[return-value]


_inflight: dict[str, Inflight] = {}


def inflight(name: str) -> Inflight:
    """This process's in-flight counter for gauge ``name``."""
    with _lock:
        g = _inflight.get(name)
        if g is None:
            g = _inflight[name] = Inflight(name)
    return g
