"""``GET /metrics``: the service's counters in the Prometheus text format (``prometheus-client``).

Series (one registry per app, so several apps in one process, as in the tests, do not mix):

- ``mner_requests_total{route, method, status}``: requests answered, by the route's template
  (``/predict``, ``/static``; ``unmatched`` for paths that match no route, so a scan of random
  paths cannot grow the series without bound), method and HTTP status;
- ``mner_request_duration_seconds{route}``: a histogram of the time from the request's arrival
  to its answer's last byte;
- ``mner_batch_item_errors_total{status, code}``: items of ``{"items": [...]}`` requests answered
  with an error object (the request itself answers 200, so ``mner_requests_total`` does not see
  them), by the status and code the item would have had alone;
- ``mner_batch_size``: a histogram of the items per model batch (:class:`.MicroBatcher`);
- ``mner_batch_duration_seconds``: a histogram of the model's time per batch;
- ``mner_queue_depth``: items waiting for the model now;
- ``mner_ready``: 1 once the model is loaded and warm, else 0.

With ``--workers N`` each worker process counts its own requests; a scrape reads the worker
that answered it (Prometheus' multiprocess mode is not set up).
"""

from __future__ import annotations

import time
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "Metrics", "MetricsMiddleware"]

#: the classic text format every Prometheus reads (the series' names need none of 1.0.0's escaping)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """The service's Prometheus series, in a registry of their own."""

    def __init__(self, queue_depth: Callable[[], float], ready: Callable[[], float]):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("mner_requests", "HTTP requests answered, by route, method and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("mner_request_duration_seconds", "Time from a request's arrival to its "
                                 "answer, by route", ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.item_errors = Counter("mner_batch_item_errors", "Items of batch requests answered with an error, "
                                   "by status and code", ["status", "code"], registry=r)
        self.batch_size = Histogram("mner_batch_size", "Items per model batch", buckets=BATCH_BUCKETS, registry=r)
        self.batch_seconds = Histogram("mner_batch_duration_seconds", "Model time per batch",
                                       buckets=LATENCY_BUCKETS, registry=r)
        Gauge("mner_queue_depth", "Items waiting for the model", registry=r).set_function(queue_depth)
        Gauge("mner_ready", "1 once the model is loaded and warm, else 0", registry=r).set_function(ready)

    def on_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def route_label(scope, router=None) -> str:
    """The matched route's template (``/predict``, a mount's prefix), never the raw path. A
    request refused before routing (413, 408 by the body limit) is matched here by ``router``."""
    route = scope.get("route")
    if route is None and router is not None:
        from starlette.routing import Match

        route = next((r for r in router.routes if r.matches(scope)[0] is Match.FULL), None)
    return getattr(route, "path", None) or "unmatched"


class MetricsMiddleware:
    """ASGI middleware counting every HTTP request by route, method and status, and its latency.

    A request whose handler raised (answered 500 by the server's error handler, outside this
    middleware) is counted as 500; one whose client went away before an answer, as 499."""

    def __init__(self, app, metrics: Metrics, router=None):
        self.app, self.metrics, self.router = app, metrics, router

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.perf_counter(), [None]

        async def counted(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counted)
        except Exception:
            if status[0] is None:
                status[0] = 500
            raise
        finally:
            route = route_label(scope, self.router)
            self.metrics.requests.labels(route, scope["method"], str(status[0] or 499)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - t0)
