"""Prometheus metrics, served by the API at ``GET /metrics``: one scrape target for the service.

Two kinds of facts end up there:

- what the API saw (requests by route template and status, their latency, predictions by
  model version): ``prometheus_client`` metrics updated by :class:`MetricsMiddleware` and the
  predict route. Run as several processes (``python -m api.server``, :mod:`api.server`), they
  are kept in prometheus_client's multiprocess files, and a scrape, whichever process answers
  it, sums every process's (the per-process ``process_*`` and ``python_gc_*`` families are then
  left out: they would describe only the process that happened to answer). Run as one plain
  ``uvicorn`` process (and in tests), they live in a registry of the app's own;
- what the workers did (jobs by final status, training durations) and the state of the queues
  and workers: read from Redis when Prometheus scrapes, by :class:`RedisCollector`. The job
  store records job outcomes atomically with each final transition (see :mod:`shared.jobs.store`),
  so the numbers are right however many worker processes there are, and survive worker
  restarts; and workers need no port of their own.

If Redis does not answer a scrape, ``rvt_redis_up`` is 0, the Redis-backed families are
absent, and everything else is still served.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    multiprocess,
    values,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.services import Services
from shared.jobs.records import FINAL_STATUSES
from shared.queues import QUEUES, broker_lists

__all__ = ["ApiMetrics", "MetricsMiddleware", "RedisCollector", "multiprocess_folder"]

log = logging.getLogger(__name__)

# No ``*_created`` series: a sample per counter that dashboards here do not use.
disable_created_metrics()

#: Request latency buckets: /predict answers in milliseconds, uploads may take seconds.
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: A path that matched no route: one label value, so scanners cannot create series at will.
UNMATCHED_ROUTE = "<unmatched>"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: The job kinds the project has: their counters are exposed (as 0) before any job ends.
JOB_KINDS = ("training",)


def multiprocess_folder() -> str | None:
    """prometheus_client's multiprocess folder when this process runs in that mode, else None.
    The mode is fixed when prometheus_client is first imported: a folder named only later
    would be read by scrapes and never written, so that is refused."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
    if folder is not None and values.ValueClass is values.MutexValue:
        raise RuntimeError(
            "PROMETHEUS_MULTIPROC_DIR was set after prometheus_client was imported: set it "
            "before the process starts (python -m api.server does)"
        )
    return folder


class ApiMetrics:
    """The metrics of one app. Its own registry (not the process-global one), so that several
    apps in one process (the tests) never share counters; in multiprocess mode the registry
    reads every process's files instead."""

    def __init__(self, services: Callable[[], Services | None] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.folder = multiprocess_folder()
        if self.folder is not None:
            multiprocess.MultiProcessCollector(self.registry, path=self.folder)
            PlatformCollector(registry=self.registry)
            own: CollectorRegistry | None = None  # written to the files, read from them
        else:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
            own = self.registry
        self._requests = Counter(
            "rvt_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ("method", "route", "status"),
            registry=own,
        )
        self._latency = Histogram(
            "rvt_http_request_duration_seconds",
            "Time from a request's arrival to its last response byte, by route template.",
            ("method", "route"),
            buckets=HTTP_BUCKETS,
            registry=own,
        )
        self._predictions = Counter(
            "rvt_predictions",
            "Records scored by POST /predict, by the model version that scored them.",
            ("model_version",),
            registry=own,
        )
        # Labelled children looked up once per (method, route, status): the per-request cost
        # is then a dict lookup, an increment and an observation.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        if services is not None:
            self.registry.register(RedisCollector(services))

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            label = method if method in _METHODS else "other"
            children = (
                self._requests.labels(label, route, str(status)),
                self._latency.labels(label, route),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def count_predictions(self, model_version: str, records: int) -> None:
        self._predictions.labels(model_version).inc(records)

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The scrape body and its content type, in the format the scraper's ``Accept`` header
        asks for (Prometheus text 0.0.4 by default, as curl gets). Reads Redis for the
        worker-side families."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

    def process_exiting(self) -> None:
        """At the end of this process: prometheus_client's bookkeeping for a dead process (its
        counters stay counted; only live-gauge files go)."""
        if self.folder is not None:
            multiprocess.mark_process_dead(os.getpid(), self.folder)


class RedisCollector(Collector):
    """Reads the service-wide facts from Redis at scrape time, through the app's services
    (looked up at each scrape: the lifespan builds them after the app is created)."""

    def __init__(self, services: Callable[[], Services | None]) -> None:
        self._services = services

    def describe(self) -> Iterable[Metric]:
        return []  # nothing to check at registration; and no Redis call then

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "rvt_redis_up",
            "1 if Redis answered this scrape. When 0, the job, queue and worker families are "
            "absent from the scrape.",
        )
        services = self._services()
        try:
            if services is None:
                raise RuntimeError("the app's services are not set up")
            families = list(self._read(services))
        except Exception as exc:
            log.debug("metrics: Redis did not answer the scrape: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    @staticmethod
    def _read(services: Services) -> Iterator[Metric]:
        pipe = services.redis.pipeline(transaction=False)
        for queue in QUEUES:
            for name in broker_lists(queue):
                pipe.llen(name)
        lengths = iter(pipe.execute())
        depth = GaugeMetricFamily(
            "rvt_queue_depth",
            "Messages waiting in each Celery queue (not yet taken by a worker).",
            labels=["queue"],
        )
        for queue in QUEUES:
            depth.add_metric([queue], sum(next(lengths) for _ in broker_lists(queue)))
        yield depth

        workers = GaugeMetricFamily(
            "rvt_workers_alive",
            "Workers that announced their presence recently, per queue they consume.",
            labels=["queue"],
        )
        for queue in QUEUES:
            workers.add_metric([queue], len(services.presence.alive(queue)))
        yield workers

        recorded = services.jobs.metrics()
        finished = CounterMetricFamily(
            "rvt_jobs_finished",
            "Jobs that reached a final status, by kind and status (recorded in Redis by "
            "whichever process ended them).",
            labels=["kind", "status"],
        )
        statuses = sorted(status.value for status in FINAL_STATUSES)
        keys = {(kind, status) for kind in JOB_KINDS for status in statuses}
        for kind, status in sorted(keys | set(recorded.finished)):
            finished.add_metric([kind, status], recorded.finished.get((kind, status), 0))
        yield finished

        duration = HistogramMetricFamily(
            "rvt_training_duration_seconds",
            "Time from a training's start in a worker to its final status, by that status.",
            labels=["status"],
        )
        for (kind, status), histogram in sorted(recorded.durations.items()):
            if kind != "training":
                continue
            buckets = [(floatToGoString(bound), count) for bound, count in histogram.buckets]
            buckets.append(("+Inf", histogram.count))
            duration.add_metric([status], buckets, sum_value=histogram.sum)
        yield duration


class MetricsMiddleware:
    """Counts and times every HTTP request by its route template (``/jobs/{job_id}``, never
    the raw path). Pure ASGI and a few microseconds per request: it sits on /predict."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers if the app raises before responding

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
            self.metrics.observe_request(
                scope["method"], route, status, time.perf_counter() - started
            )
