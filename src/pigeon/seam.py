"""The one seam every call to a broker crosses: counted, timed, typed.

The client wraps each broker it opens in an :class:`InstrumentedBroker`, so
producers (sends, cancels, look-ups, handles, workflows) and workers (claims,
settles, heartbeats, the ticker, progress, chain steps) all go through it.
Brokers stay free of logging and metrics; this facade records, per method, how
many calls were made, how many failed and how long they took, and logs slow
calls at DEBUG. :meth:`InstrumentedBroker.metrics` is the public read.

Brokers translate their drivers' errors into :class:`~pigeon.errors.BrokerError`;
whatever else escapes one (a timeout, an OS error, a bug in a third-party broker)
is translated here, so callers, and the worker's loops that survive a failed
broker call, never meet an error they do not expect.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Self, TypeVar

from pigeon.brokers.base import (
    Broker,
    Capabilities,
    EventHandler,
    Limiting,
    Migrating,
    Reporting,
    RoutingEvents,
    SyncProducing,
    TransactionalBroker,
    capabilities_of,
)
from pigeon.brokers.inspection import Inspecting, JobFilter
from pigeon.errors import BrokerConnectionError, BrokerError, PigeonError, UnsupportedFeature
from pigeon.job import Claim, Job, JobRecord, JobState, Outcome, QueueStats, WorkerInfo

log = logging.getLogger("pigeon.broker")

T = TypeVar("T")

SLOW = 0.25
"""Seconds after which a call is logged at DEBUG."""


@dataclass(slots=True)
class CallStats:
    """One broker method's calls: how many, how many raised an error, their total and longest seconds.

    A cancelled call (a worker's ``wait`` at shutdown) counts as a call, not an error.
    """

    calls: int = 0
    errors: int = 0
    seconds: float = 0.0
    slowest: float = 0.0

    def add(self, other: CallStats) -> None:
        self.calls += other.calls
        self.errors += other.errors
        self.seconds += other.seconds
        self.slowest = max(self.slowest, other.slowest)


def merged(*tables: dict[str, CallStats]) -> dict[str, CallStats]:
    """Per-method sums of several seams' :meth:`InstrumentedBroker.metrics`."""
    out: dict[str, CallStats] = {}
    for table in tables:
        for name, stats in table.items():
            out.setdefault(name, CallStats()).add(stats)
    return out


class SeamObserver(Protocol):
    """Told what crossed the seam (``pigeon.metrics.JobMetrics`` is one)."""

    def claimed(self, claims: Sequence[Claim]) -> None: ...

    def settled(self, outcomes: Sequence[Outcome]) -> None:
        """Only the outcomes the broker accepted."""
        ...


class InstrumentedBroker:
    """A broker behind the seam; implements the core protocol and every optional one by delegation.

    A call to an optional protocol the broker lacks raises
    :class:`~pigeon.errors.UnsupportedFeature`; ``capabilities`` says beforehand.
    """

    def __init__(self, inner: Broker) -> None:
        self.inner = inner
        self.capabilities: Capabilities = capabilities_of(inner)
        self.url: str = inner.url
        self._inspecting = inner if isinstance(inner, Inspecting) else None
        self._limiting = inner if isinstance(inner, Limiting) else None
        self._reporting = inner if isinstance(inner, Reporting) else None
        self.routing_events = inner if isinstance(inner, RoutingEvents) else None
        """The broker, if it routes events itself (None: a publish is one job per handler)."""
        self._transactional = inner if isinstance(inner, TransactionalBroker) else None
        self.sync_producing = inner if isinstance(inner, SyncProducing) else None
        """The broker, if it stores jobs from synchronous code itself (None: go through a loop)."""
        self._stats: dict[str, CallStats] = {}
        self._observers: list[SeamObserver] = []
        self._lock = threading.Lock()  # sync transactional sends come from any thread

    def __repr__(self) -> str:
        return f"<InstrumentedBroker {self.inner!r}>"

    def metrics(self) -> dict[str, CallStats]:
        """A copy of the counters and timings so far, by broker method name."""
        with self._lock:
            return {name: dataclasses.replace(s) for name, s in self._stats.items()}

    def observe(self, observer: SeamObserver) -> None:
        """Tell ``observer`` of every claim and settle from now on (until :meth:`unobserve`)."""
        self._observers.append(observer)

    def unobserve(self, observer: SeamObserver) -> None:
        """Stop telling ``observer``; a no-op for one not observing."""
        if observer in self._observers:
            self._observers.remove(observer)

    def _observe(self, call: Callable[[SeamObserver], None]) -> None:
        for observer in list(self._observers):
            try:
                call(observer)
            except Exception:  # metrics must never cost a claim or a settle
                log.exception("the seam's observer %r failed", observer)

    def _record(self, name: str, seconds: float, failed: bool) -> None:
        with self._lock:
            stats = self._stats.get(name)
            if stats is None:
                stats = self._stats[name] = CallStats()
            stats.calls += 1
            stats.errors += failed
            stats.seconds += seconds
            if seconds > stats.slowest:
                stats.slowest = seconds
        if seconds > SLOW:
            log.debug("broker %s took %.3f s", name, seconds)

    async def _call(self, name: str, call: Awaitable[T]) -> T:
        start = time.perf_counter()
        failed = True
        try:
            result = await call
            failed = False
            return result
        except PigeonError:
            raise
        except (TimeoutError, OSError) as exc:
            raise BrokerConnectionError(f"broker {name}: {type(exc).__name__}: {exc}") from exc
        except Exception as exc:
            raise BrokerError(f"broker {name}: {type(exc).__name__}: {exc}") from exc
        except BaseException:  # a cancelled wait is no broker error: counted as a call only
            failed = False
            raise
        finally:
            self._record(name, time.perf_counter() - start, failed)

    # -- life cycle ------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self._call("open", self.inner.__aenter__())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._call("close", self.inner.__aexit__(*exc))

    # -- the contract, by delegation -------------------------------------------

    async def enqueue(self, jobs: Sequence[Job]) -> list[str]:
        return await self._call("enqueue", self.inner.enqueue(jobs))

    async def claim(self, worker_id: str, queues: Sequence[str], limit: int, lease: float) -> list[Claim]:
        claims = await self._call("claim", self.inner.claim(worker_id, queues, limit, lease))
        if self._observers:
            self._observe(lambda o: o.claimed(claims))
        return claims

    async def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
        done = await self._call("settle", self.inner.settle(outcomes))
        if self._observers:
            accepted = [o for o, ok in zip(outcomes, done, strict=True) if ok]
            self._observe(lambda o: o.settled(accepted))
        return done

    async def heartbeat(
        self, worker: WorkerInfo, leases: Sequence[tuple[str, str]], lease: float
    ) -> list[str]:
        return await self._call("heartbeat", self.inner.heartbeat(worker, leases, lease))

    async def wait(self, queues: Sequence[str], timeout: float) -> None:
        await self._call("wait", self.inner.wait(queues, timeout))

    async def recover(self, dead_after: float, expires_at: float | None = None) -> int:
        return await self._call("recover", self.inner.recover(dead_after, expires_at))

    async def prune(self) -> int:
        return await self._call("prune", self.inner.prune())

    async def get(self, job_id: str) -> JobRecord | None:
        return await self._call("get", self.inner.get(job_id))

    async def cancel(self, job_id: str, expires_at: float) -> bool:
        return await self._call("cancel", self.inner.cancel(job_id, expires_at))

    @classmethod
    def from_url(cls, url: str, shared: dict[str, Any]) -> Self:
        """The broker for ``url`` (see :func:`~pigeon.brokers.base.create_broker`), behind a seam."""
        from pigeon.brokers.base import create_broker

        return cls(create_broker(url, shared))

    async def migrate(self) -> list[str]:
        """Create or upgrade the broker's schema; ``[]`` for a broker without one."""
        inner = self.inner
        return await self._call("migrate", inner.migrate()) if isinstance(inner, Migrating) else []

    # -- the optional protocols: UnsupportedFeature where the broker lacks one --

    def _lacks(self, what: str) -> UnsupportedFeature:
        scheme = self.url.split("://", 1)[0] or type(self.inner).__name__
        return UnsupportedFeature(f"the {scheme} broker cannot {what}")

    def _inspect(self) -> Inspecting:
        if self._inspecting is None:
            raise self._lacks("list, count or tidy its jobs, workers and queues (no inspection)")
        return self._inspecting

    async def list_jobs(
        self,
        *,
        queue: str | None = None,
        state: JobState | None = None,
        task: str | None = None,
        limit: int = 100,
    ) -> list[JobRecord]:
        inner = self._inspect()
        return await self._call(
            "list_jobs", inner.list_jobs(queue=queue, state=state, task=task, limit=limit)
        )

    async def stats(self) -> list[QueueStats]:
        return await self._call("stats", self._inspect().stats())

    async def workers(self) -> list[WorkerInfo]:
        return await self._call("workers", self._inspect().workers())

    async def unregister_worker(self, worker_id: str) -> None:
        await self._call("unregister_worker", self._inspect().unregister_worker(worker_id))

    async def requeue(self, job_id: str) -> bool:
        return await self._call("requeue", self._inspect().requeue(job_id))

    async def requeue_jobs(self, job_ids: Sequence[str]) -> int:
        return await self._call("requeue_jobs", self._inspect().requeue_jobs(job_ids))

    async def cancel_jobs(self, job_ids: Sequence[str], expires_at: float) -> int:
        return await self._call("cancel_jobs", self._inspect().cancel_jobs(job_ids, expires_at))

    async def purge(self, *, queue: str | None = None, states: Sequence[JobState] = ()) -> int:
        return await self._call("purge", self._inspect().purge(queue=queue, states=states))

    async def find_jobs(
        self, where: JobFilter, *, limit: int = 50, before: str | None = None
    ) -> list[JobRecord]:
        return await self._call("find_jobs", self._inspect().find_jobs(where, limit=limit, before=before))

    async def count_jobs(self, where: JobFilter) -> int:
        return await self._call("count_jobs", self._inspect().count_jobs(where))

    async def delete_jobs(self, job_ids: Sequence[str]) -> int:
        return await self._call("delete_jobs", self._inspect().delete_jobs(job_ids))

    async def oldest_ready(self) -> dict[str, float]:
        return await self._call("oldest_ready", self._inspect().oldest_ready())

    async def pause_queue(self, queue: str) -> None:
        await self._call("pause_queue", self._inspect().pause_queue(queue))

    async def resume_queue(self, queue: str) -> None:
        await self._call("resume_queue", self._inspect().resume_queue(queue))

    async def paused_queues(self) -> list[str]:
        return await self._call("paused_queues", self._inspect().paused_queues())

    async def take(self, key: str, rate: float, burst: float) -> float:
        if self._limiting is None:
            raise self._lacks("limit a task's rate")
        return await self._call("take", self._limiting.take(key, rate, burst))

    async def progress(self, job_id: str, token: str, data: bytes) -> bool:
        if self._reporting is None:
            raise self._lacks("keep progress reports")
        return await self._call("progress", self._reporting.progress(job_id, token, data))

    async def bind_handlers(self, handlers: Sequence[EventHandler]) -> None:
        if self.routing_events is None:
            raise self._lacks("route events")
        await self._call("bind_handlers", self.routing_events.bind_handlers(handlers))

    async def publish_event(
        self, event_id: str, topic: str, payload: bytes, headers: Sequence[tuple[str, str]] = ()
    ) -> bool:
        if self.routing_events is None:
            raise self._lacks("route events")
        published = self.routing_events.publish_event(event_id, topic, payload, headers)
        return await self._call("publish_event", published)

    # -- SyncProducing, where the broker is one --------------------------------

    def enqueue_sync(self, jobs: Sequence[Job]) -> list[str]:
        """:meth:`Broker.enqueue` from synchronous code, counted as an ``enqueue``.

        Raises:
            UnsupportedFeature: the broker has no synchronous producer.
            BrokerError: the jobs were not stored.
        """
        if self.sync_producing is None:
            raise self._lacks("enqueue from synchronous code")
        start = time.perf_counter()
        failed = True
        try:
            ids = self.sync_producing.enqueue_sync(jobs)
            failed = False
            return ids
        except PigeonError:
            raise
        except (TimeoutError, OSError) as exc:
            raise BrokerConnectionError(f"broker enqueue: {type(exc).__name__}: {exc}") from exc
        except Exception as exc:
            raise BrokerError(f"broker enqueue: {type(exc).__name__}: {exc}") from exc
        finally:
            self._record("enqueue", time.perf_counter() - start, failed)

    def close_sync(self) -> None:
        """Close the broker's synchronous connections, if it has any."""
        if self.sync_producing is not None:
            self.sync_producing.close_sync()

    # -- TransactionalBroker, where the broker is one --------------------------

    def require_transactional(self) -> TransactionalBroker:
        """The broker as a :class:`~pigeon.brokers.base.TransactionalBroker`.

        Raises:
            UnsupportedFeature: it cannot write in the caller's transaction.
        """
        if self._transactional is None:
            raise self._lacks(
                "enqueue inside your database transaction; "
                "send after commit instead (e.g. Django's transaction.on_commit)"
            )
        return self._transactional

    def enqueue_in_sync(self, connection: Any, jobs: Sequence[Job]) -> list[str]:
        """:meth:`Broker.enqueue` on the caller's DB-API connection, in its transaction."""
        inner = self.require_transactional()
        start = time.perf_counter()
        failed = False
        try:
            return inner.enqueue_in_sync(connection, jobs)
        except Exception:
            failed = True
            raise
        finally:
            self._record("enqueue_in", time.perf_counter() - start, failed)

    async def enqueue_in(self, connection: Any, jobs: Sequence[Job]) -> list[str]:
        """:meth:`Broker.enqueue` on the caller's (sync or async) connection, in its transaction."""
        return await self._call("enqueue_in", self.require_transactional().enqueue_in(connection, jobs))
