"""The broker contract: the one interface every transport implements.

A broker is pure storage and transport. Retries, back-off, unique-key policy,
logging and metrics live above it (in the worker and the app), written once.
Every method is batch-first where the hot path needs it: ``enqueue`` takes many
jobs, ``claim`` returns many, ``settle`` applies many outcomes in one round trip.

A broker instance belongs to one event loop; the app opens one per loop it is
used from (``async with broker:``). ``tests/conformance`` is the definition of
a working broker.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol, Self, runtime_checkable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pigeon.brokers.inspection import Inspecting as Inspecting  # the optional protocol, defined there
from pigeon.errors import ConfigurationError
from pigeon.job import Claim, Job, JobRecord, Outcome, WorkerInfo


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a broker can do. The first four map onto django.tasks' ``supports_*``.

    A broker declares the first five; the rest follow from the optional
    protocols it implements (:func:`capabilities_of`), so they cannot disagree.
    """

    defer: bool = True
    priority: bool = True
    get_result: bool = True
    async_task: bool = True
    cross_process: bool = True
    """Producers and workers may live in different processes."""
    inspect: bool = False
    """Find, count and tidy jobs, list workers, pause queues (:class:`Inspecting`)."""
    limits: bool = False
    """Rate limits shared by every worker (:class:`Limiting`)."""
    progress: bool = False
    """Running jobs' progress reports (:class:`Reporting`)."""
    transactional_enqueue: bool = False
    """Enqueue inside the caller's own database transaction (:class:`TransactionalBroker`)."""


@runtime_checkable
class Broker(Protocol):
    """The core broker protocol: the hot path and its upkeep. All times are Unix seconds.

    Ten methods: ``from_url``, ``enqueue``, ``claim``, ``settle``, ``heartbeat``,
    ``wait``, ``recover``, ``prune``, ``get``, ``cancel`` (and ``async with``).
    What else a broker can do it says by implementing :class:`Inspecting`,
    :class:`Limiting`, :class:`Reporting`, :class:`Migrating` or
    :class:`TransactionalBroker`; callers reach a broker through the seam, which
    raises :class:`~pigeon.errors.UnsupportedFeature` for what it lacks.
    """

    capabilities: Capabilities
    url: str

    @classmethod
    def from_url(cls, url: str, shared: dict[str, Any]) -> Self:
        """A new, unopened broker for ``url``.

        ``shared`` is per-app state a broker may keep across the instances the app
        opens on different event loops (the memory broker keeps its store there).

        Raises:
            ConfigurationError: the URL is malformed for this broker.
        """
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def enqueue(self, jobs: Sequence[Job]) -> list[str]:
        """Store jobs; return, for each, the id of the job that stands for it.

        A job whose ``unique_key`` matches a pending (queued, scheduled or
        running) job is not stored; the pending job's id is returned instead.
        A job whose id is already stored (in any state) is not stored again.
        A job with ``run_at`` in the future starts SCHEDULED, else QUEUED.
        """
        ...

    async def claim(self, worker_id: str, queues: Sequence[str], limit: int, lease: float) -> list[Claim]:
        """Move up to ``limit`` due jobs to RUNNING under a fresh token, leased for ``lease`` s.

        Highest priority first, FIFO (by enqueue order) within a priority.
        Each claim spends one attempt. A job with a ``limit_key`` is skipped
        (left queued, not blocking others) while ``job.limit`` jobs with that key
        are RUNNING, counting those this claim takes.
        """
        ...

    async def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
        """Apply outcomes; for each, False when the token no longer owns the job."""
        ...

    async def heartbeat(
        self, worker: WorkerInfo, leases: Sequence[tuple[str, str]], lease: float
    ) -> list[str]:
        """Register the worker as alive now and extend its ``(job_id, token)`` leases.

        A worker registers with its first heartbeat (no leases). Returns the ids
        of jobs the worker no longer owns.
        """
        ...

    async def wait(self, queues: Sequence[str], timeout: float) -> None:
        """Return when another process may have made work available, or after ``timeout``."""
        ...

    async def recover(self, dead_after: float, expires_at: float | None = None) -> int:
        """Requeue RUNNING jobs whose lease expired or whose worker is silent for ``dead_after`` s.

        A job with no attempts left becomes FAILED instead, kept until ``expires_at``
        (for ever when None). Silent workers are
        unregistered. Safe to race: each job is recovered once. Returns how
        many jobs were recovered.
        """
        ...

    async def prune(self) -> int:
        """Delete final jobs whose retention expired; return how many."""
        ...

    async def get(self, job_id: str) -> JobRecord | None:
        """The job's record, or None if unknown or pruned."""
        ...

    async def cancel(self, job_id: str, expires_at: float) -> bool:
        """QUEUED/SCHEDULED/RUNNING → CANCELLED. False if the job is final or unknown.

        A running job's token ends with it, so its worker's settle is refused and
        its next heartbeat reports the lease lost, which stops the attempt.
        """
        ...


@runtime_checkable
class Limiting(Protocol):
    """Flow control shared by every worker of the broker."""

    async def take(self, key: str, rate: float, burst: float) -> float:
        """Take one token from the bucket ``key`` (refilled at ``rate``/s, holding at most ``burst``).

        Returns 0 when a token was taken, else the seconds until one will be
        there. Shared by every worker of the broker, atomic.
        """
        ...


@runtime_checkable
class Reporting(Protocol):
    """Progress reports of running jobs."""

    async def progress(self, job_id: str, token: str, data: bytes) -> bool:
        """Store a running job's latest progress report; False if the token no longer owns it."""
        ...


@dataclass(frozen=True, slots=True)
class EventHandler:
    """An event handler as a broker that routes events sees it."""

    pattern: str
    """Its topic pattern (``nfc.*``)."""
    name: str
    """Its task's name: what its queue is named after."""
    queue: str
    """The pigeon queue its jobs run on: a worker that claims from it runs the handler."""
    make: Callable[[str, bytes], Job]
    """Its job for a topic and an encoded payload (raises TypeError when the payload does not fit)."""


@runtime_checkable
class RoutingEvents(Protocol):
    """A broker that routes events itself (RabbitMQ alone: a topic exchange), not as one job per handler.

    A publish is then one message, and every handler bound anywhere receives it,
    whichever process registered it.
    """

    async def bind_handlers(self, handlers: Sequence[EventHandler]) -> None:
        """Make sure ``handlers`` each have a durable queue that receives their topics (idempotent).

        A worker's claims from a handler's ``queue`` then include its events.
        """
        ...

    async def publish_event(
        self, event_id: str, topic: str, payload: bytes, headers: Sequence[tuple[str, str]] = ()
    ) -> bool:
        """Publish one event, confirmed; False when no handler's queue took it (nobody listens).

        ``headers`` is the context every handler's job carries (``Job.headers``: trace context).
        """
        ...


@runtime_checkable
class Migrating(Protocol):
    """A broker with a schema to create or upgrade."""

    async def migrate(self) -> list[str]:
        """Create or upgrade the broker's schema; return the steps applied. Needs no open connection."""
        ...


@runtime_checkable
class TransactionalBroker(Protocol):
    """A broker that can write jobs with the caller's own database connection.

    The jobs are part of the caller's transaction: invisible to workers until it
    commits, gone if it rolls back (the outbox pattern). The broker instance
    need not be open.
    """

    def enqueue_in_sync(self, connection: Any, jobs: Sequence[Job]) -> list[str]:
        """:meth:`Broker.enqueue` on the caller's DB-API connection, in its transaction."""
        ...

    async def enqueue_in(self, connection: Any, jobs: Sequence[Job]) -> list[str]:
        """:meth:`Broker.enqueue` on the caller's (sync or async) connection, in its transaction."""
        ...


@runtime_checkable
class SyncProducing(Protocol):
    """A broker that stores jobs from synchronous code, on synchronous connections of its own.

    A synchronous ``send()`` then costs one round trip on the caller's thread, not a hop
    to an event loop and back. The broker instance need not be open; its connections
    open on first use, at most a few (shared by every calling thread), and close with
    :meth:`close_sync`.
    """

    sync_connections: int
    """The most connections :meth:`enqueue_sync` opens (so the most calls it runs at once)."""

    def enqueue_sync(self, jobs: Sequence[Job]) -> list[str]:
        """:meth:`Broker.enqueue`, from any thread. Raises as it does."""
        ...

    def close_sync(self) -> None:
        """Close the connections :meth:`enqueue_sync` opened (it opens new ones if called again)."""
        ...


def capabilities_of(broker: Broker) -> Capabilities:
    """The broker's declared capabilities, completed with the optional protocols it implements."""
    return dataclasses.replace(
        broker.capabilities,
        inspect=isinstance(broker, Inspecting),
        limits=isinstance(broker, Limiting),
        progress=isinstance(broker, Reporting),
        transactional_enqueue=isinstance(broker, TransactionalBroker),
    )


class BrokerBase:
    """Shared plumbing: ``async with`` maps onto ``open``/``close``."""

    capabilities = Capabilities()
    url = ""
    blocking_ok = False
    """Set by the app before opening when this instance serves only synchronous callers (on
    the app's private loop): a broker whose driver blocks may then skip its worker thread."""

    async def open(self) -> None:
        """Connect; create what is missing."""

    async def close(self) -> None:
        """Release connections."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Notifier:
    """In-process wake-ups: an enqueue in this process wakes this process's workers at once.

    Thread-safe; each waiter belongs to one event loop.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def notify(self) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop has closed; its waiter is gone with it
                self.unsubscribe(loop, event)

    def subscribe(self) -> asyncio.Event:
        event = asyncio.Event()
        with self._lock:
            self._waiters.add((asyncio.get_running_loop(), event))
        return event

    def unsubscribe(self, loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
        with self._lock:
            self._waiters.discard((loop, event))


_BUILTIN = {
    "memory": "pigeon.brokers.memory:MemoryBroker",
    "sqlite": "pigeon.brokers.sqlite:SqliteBroker",
    "postgresql": "pigeon.brokers.postgres:PostgresBroker",
    "postgres": "pigeon.brokers.postgres:PostgresBroker",
    "redis": "pigeon.brokers.redis:RedisBroker",
    "rediss": "pigeon.brokers.redis:RedisBroker",
    "redis+cluster": "pigeon.brokers.redis:RedisBroker",
    "rediss+cluster": "pigeon.brokers.redis:RedisBroker",
    "redis+sentinel": "pigeon.brokers.redis:RedisBroker",
    "rediss+sentinel": "pigeon.brokers.redis:RedisBroker",
    "amqp": "pigeon.brokers.rabbitmq:RabbitBroker",
    "amqps": "pigeon.brokers.rabbitmq:RabbitBroker",
}
_EXTRAS = {
    "postgresql": "postgres",
    "postgres": "postgres",
    "redis": "redis",
    "rediss": "redis",
    "redis+cluster": "redis",
    "rediss+cluster": "redis",
    "redis+sentinel": "redis",
    "rediss+sentinel": "redis",
    "amqp": "rabbitmq",
    "amqps": "rabbitmq",
}
"""The pyproject extra that installs each scheme's driver (pip ignores an unknown extra silently)."""
_STORE_SCHEMES = ("amqp", "amqps")
"""The schemes whose brokers take a companion ``store``."""


def takes_store(url: str) -> bool:
    """Whether the broker of ``url`` takes a companion store (RabbitMQ)."""
    return urlsplit(url).scheme in _STORE_SCHEMES


def with_store(url: str, store: str) -> str:
    """``url`` with the companion ``store`` URL as its ``store`` query parameter.

    Raises:
        ConfigurationError: the broker takes no store, or the store is itself a store user.
    """
    parts = urlsplit(url)
    if parts.scheme not in _STORE_SCHEMES:
        raise ConfigurationError(
            f"store={store!r} is for the RabbitMQ broker (amqp://…); the {parts.scheme} broker keeps "
            "its own record"
        )
    if urlsplit(store).scheme in _STORE_SCHEMES:
        raise ConfigurationError(f"store={store!r}: the store must be a broker that keeps a record")
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "store"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("store", store)])))


def broker_class(url: str) -> type[Broker]:
    """The broker class for a URL's scheme, imported lazily.

    Third-party brokers register under the ``pigeon.brokers`` entry-point group.

    Raises:
        ConfigurationError: the scheme is unknown or its module will not import.
    """
    scheme = urlsplit(url).scheme
    target = _BUILTIN.get(scheme)
    if target is None:
        found = [ep for ep in entry_points(group="pigeon.brokers") if ep.name == scheme]
        if not found:
            known = ", ".join(sorted(_BUILTIN))
            raise ConfigurationError(f"unknown broker URL scheme {scheme!r} in {url!r} (known: {known})")
        loaded: type[Broker] = found[0].load()
        return loaded
    module, _, name = target.partition(":")
    try:
        cls: type[Broker] = getattr(importlib.import_module(module), name)
        return cls
    except ImportError as exc:
        raise ConfigurationError(
            f"the {scheme} broker needs an extra: pip install 'pigeon[{_EXTRAS.get(scheme, scheme)}]' ({exc})"
        ) from exc


def create_broker(url: str, shared: dict[str, Any]) -> Broker:
    """A new, unopened broker for ``url``.

    ``shared`` is per-app state a broker may keep across the instances the app
    opens on different event loops (the memory broker keeps its store there).
    """
    return broker_class(url).from_url(url, shared)
