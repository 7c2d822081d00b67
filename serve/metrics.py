"""The gateway's counters: searches by kind and outcome, their latency, and HTTP errors by status."""
from __future__ import annotations

import threading


class Metrics:
    """Ray metrics (exported to Prometheus and the Ray dashboard) plus the same counts in memory,
    which /healthz reports."""

    def __init__(self) -> None:
        # Defined in astradup.telemetry with every other metric, which the Grafana dashboard is checked against.
        from astradup import telemetry

        self.searches = telemetry.metric(telemetry.SEARCHES)
        self.latency = telemetry.metric(telemetry.SEARCH_LATENCY)
        self.errors = telemetry.metric(telemetry.HTTP_ERRORS)
        self._lock = threading.Lock()
        self.counts = {"searches_ok": 0, "searches_rejected": 0, "searches_failed": 0, "errors_4xx": 0,
                       "errors_5xx": 0}

    def search(self, kind: str, outcome: str, seconds: float) -> None:
        """outcome: ok | rejected (bad input, 4xx) | failed (server fault)."""
        self.searches.inc(1, tags={"kind": kind, "outcome": outcome})
        if outcome == "ok":
            self.latency.observe(seconds, tags={"kind": kind})
        with self._lock:
            self.counts[f"searches_{outcome}"] += 1

    def error(self, status: int) -> None:
        self.errors.inc(1, tags={"status": str(status)})
        with self._lock:
            self.counts["errors_5xx" if status >= 500 else "errors_4xx"] += 1
