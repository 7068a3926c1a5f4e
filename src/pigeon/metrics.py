"""Prometheus metrics (the ``metrics`` extra: prometheus-client).

Two sources, as the numbers are known in two places:

- **The worker's seam** (:class:`JobMetrics`, an observer of ``InstrumentedBroker``, and
  an ``App.enqueue_hooks`` entry): ``pigeon_jobs_enqueued_total`` (jobs this process
  enqueued: in a worker, chain steps, ticks, events its jobs publish),
  ``pigeon_jobs_finished_total{outcome}``, ``pigeon_job_duration_seconds`` (claim to
  settle) and ``pigeon_job_queue_wait_seconds`` (due to claimed, first attempts), all
  labelled by task and queue. Label values are bounded: tasks the app does not know and
  queues past :data:`MAX_LABEL_VALUES` read ``other``.
- **The broker at scrape time** (:func:`broker_families`): ``pigeon_queue_depth{queue,state}``,
  ``pigeon_oldest_ready_job_age_seconds{queue}`` and ``pigeon_workers``.

``pigeon worker --metrics-port N`` serves both; with ``--processes N`` the children
write to a shared ``PROMETHEUS_MULTIPROC_DIR`` and the supervisor serves the sum.
The dashboard's ``/metrics`` serves the broker's figures.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from pigeon.brokers.inspection import as_inspection
from pigeon.job import Claim, Job, JobState, Outcome, OutcomeKind

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from pigeon.app import App

MAX_LABEL_VALUES = 100
OUTCOMES = {
    OutcomeKind.COMPLETE: "succeeded",
    OutcomeKind.FAIL: "failed",
    OutcomeKind.RETRY: "retried",
    OutcomeKind.RELEASE: "released",
    OutcomeKind.DEFER: "deferred",
}
_RAN = frozenset({OutcomeKind.COMPLETE, OutcomeKind.FAIL, OutcomeKind.RETRY})
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class _Bounded:
    """Label values: the known ones, then new ones up to a limit, then ``other``."""

    def __init__(self, known: Iterable[str], limit: int) -> None:
        self.allowed = set(known)
        self.open = limit

    def __call__(self, value: str) -> str:
        if value in self.allowed:
            return value
        if self.open > 0:
            self.open -= 1
            self.allowed.add(value)
            return value
        return "other"


def _import() -> Any:
    try:
        import prometheus_client
    except ImportError as exc:
        from pigeon.errors import ConfigurationError

        raise ConfigurationError(f"metrics need an extra: pip install 'pigeon[metrics]' ({exc})") from exc
    return prometheus_client


class JobMetrics:
    """Counters and histograms fed by a worker's seam (see ``InstrumentedBroker``)."""

    def __init__(self, app: App, registry: Any = None) -> None:
        pc = _import()
        self.registry = registry if registry is not None else pc.CollectorRegistry()
        labels = ("task", "queue")
        self.enqueued = pc.Counter("pigeon_jobs_enqueued", "Jobs enqueued.", labels, registry=self.registry)
        self.finished = pc.Counter(
            "pigeon_jobs_finished",
            "Attempts ended, by outcome.",
            (*labels, "outcome"),
            registry=self.registry,
        )
        self.duration = pc.Histogram(
            "pigeon_job_duration_seconds",
            "Claim to settle.",
            labels,
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.wait = pc.Histogram(
            "pigeon_job_queue_wait_seconds",
            "Due to claimed (first attempts).",
            labels,
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self._task = _Bounded(app.tasks, 0)  # tasks come from code: the app knows them all
        self._task.allowed.update({"pigeon.unrouted", "pigeon.chord"})
        self._queue = _Bounded((), MAX_LABEL_VALUES)
        self._running: dict[str, tuple[float, str, str]] = {}
        app.enqueue_hooks.append(self.enqueued_jobs)

    def _labels(self, job: Job) -> tuple[str, str]:
        return self._task(job.task), self._queue(job.queue)

    def enqueued_jobs(self, jobs: Sequence[Job]) -> Sequence[Job]:
        """An enqueue hook (``App.enqueue_hooks``): counts the jobs."""
        for job in jobs:
            self.enqueued.labels(*self._labels(job)).inc()
        return jobs

    def claimed(self, claims: Sequence[Claim]) -> None:
        now, clock = time.time(), time.perf_counter()
        for c in claims:
            task, queue = self._labels(c.job)
            self._running[c.job.id] = (clock, task, queue)
            due = max(c.job.enqueued_at, c.job.run_at or 0.0)
            if c.attempt == 1 and due > 0:
                self.wait.labels(task, queue).observe(max(0.0, now - due))

    def settled(self, outcomes: Sequence[Outcome]) -> None:
        clock = time.perf_counter()
        for o in outcomes:
            started = self._running.pop(o.job_id, None)
            if started is None:
                continue
            at, task, queue = started
            self.finished.labels(task, queue, OUTCOMES[o.kind]).inc()
            if o.kind in _RAN:
                self.duration.labels(task, queue).observe(clock - at)


async def broker_families(app: App) -> list[Metric]:
    """Queue depths by state, the oldest ready job's age per queue, live workers: read now."""
    from prometheus_client.core import GaugeMetricFamily

    broker = await app.connection()
    stats, workers = await broker.stats(), await broker.workers()
    oldest = await as_inspection(broker).oldest_ready()
    now = time.time()
    depth = GaugeMetricFamily("pigeon_queue_depth", "Jobs by queue and state.", labels=("queue", "state"))
    for s in stats:
        for state in JobState:
            depth.add_metric((s.queue, state.value), s.counts.get(state.value, 0))
    age = GaugeMetricFamily(
        "pigeon_oldest_ready_job_age_seconds", "Age of the oldest QUEUED job.", labels=("queue",)
    )
    for queue, at in sorted(oldest.items()):
        age.add_metric((queue,), max(0.0, now - at))
    alive = GaugeMetricFamily("pigeon_workers", "Live workers.", value=len(workers))
    return [depth, age, alive]


class Families:
    """A collector that yields metric families computed elsewhere (at scrape time)."""

    def __init__(self, read: Any) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        return list(self._read())


def render(families: Iterable[Metric]) -> tuple[bytes, str]:
    """Families in the Prometheus text format: (body, content type)."""
    pc = _import()
    registry = pc.CollectorRegistry()
    fixed = list(families)
    registry.register(Families(lambda: fixed))
    return pc.generate_latest(registry), pc.CONTENT_TYPE_LATEST


def serve_worker(app: App, metrics: JobMetrics, host: str, port: int) -> int:
    """Serve a worker's metrics and the broker's figures over HTTP from a thread; return the port.

    Call from the worker's event loop: scrapes read the broker on that loop.
    """
    import asyncio

    pc = _import()
    loop = asyncio.get_running_loop()

    def read() -> list[Metric]:
        future = asyncio.run_coroutine_threadsafe(broker_families(app), loop)
        return future.result(timeout=10)

    metrics.registry.register(Families(read))
    server, _ = pc.start_http_server(port, addr=host, registry=metrics.registry)
    return int(server.server_port)


def serve_supervisor(app: App, directory: str, host: str, port: int) -> int:
    """Serve the sum of the child workers' metrics (written to ``directory``) and the broker's figures."""
    import asyncio

    pc = _import()
    from prometheus_client import multiprocess

    registry = pc.CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]

    async def once() -> list[Metric]:
        try:
            return await broker_families(app)
        finally:
            await app.aclose()

    registry.register(Families(lambda: asyncio.run(once())))
    server, _ = pc.start_http_server(port, addr=host, registry=registry)
    return int(server.server_port)
