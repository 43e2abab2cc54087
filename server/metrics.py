"""Prometheus metrics: requests and latency by route, batch sizes, model and extraction time.

Each app owns its registry, so several apps (tests, workers) never share counters. With
`--workers N` set PROMETHEUS_MULTIPROC_DIR (the CLI does) and /metrics merges all workers.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """The service's metric families, registered on one registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "asl_http_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "asl_http_request_duration_seconds",
            "Time from request start to the end of the response body, by route.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "asl_predict_batch_size",
            "Videos per model forward.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_requests = Histogram(
            "asl_predict_batch_requests",
            "Requests merged into one model forward.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.model_seconds = Histogram(
            "asl_model_seconds",
            "Model forward time per batch (store read excluded).",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.read_seconds = Histogram(
            "asl_store_read_seconds",
            "Feature store read time per prediction batch.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.extract_seconds = Histogram(
            "asl_extract_seconds",
            "Decode and feature extraction time per uploaded clip.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def render(self) -> tuple[bytes, str]:
        """The exposition text (all workers merged in multiprocess mode)."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            merged = CollectorRegistry()
            MultiProcessCollector(merged)
            return generate_latest(merged), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware on the hot path).

    Labels use the matched route's template (`/v1/videos/{video_id}`), never the raw path,
    so label cardinality stays bounded whatever clients send.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        # (route, method, status) -> its counter and histogram, looked up once: `labels()`
        # takes a lock and checks its arguments on every call (~5% of a cached lookup).
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            key = (template, method, status)
            children = self._children.get(key)
            if children is None:
                children = self._children[key] = (
                    self.metrics.requests.labels(template, method, str(status)),
                    self.metrics.latency.labels(template, method),
                )
            children[0].inc()
            children[1].observe(time.perf_counter() - start)
