"""Client: the way from this process to the broker.

It owns the broker URL, one opened broker per event loop, the private loop
("portal") synchronous callers go through, this process's wake-ups (the
``Notifier`` its workers listen to, the waiters its result calls sleep on) and
the send / cancel / look-up path. Tasks, handles, workflows and workers hold a
client; :class:`~pigeon.app.App` holds the registry and one client.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol, TypeVar

from pigeon import codec, limits
from pigeon._combine import Combiner
from pigeon._portal import Portal, at_exit
from pigeon.brokers.base import Broker, BrokerBase, Notifier, create_broker, takes_store, with_store
from pigeon.errors import ConfigurationError
from pigeon.job import Job
from pigeon.seam import CallStats, InstrumentedBroker, merged
from pigeon.waiters import ResultWaiters

R = TypeVar("R")

DEFAULT_URL = "sqlite:///pigeon.db"


class StopsAtExit(Protocol):
    """Something of this client's to stop before it closes at interpreter exit (a worker thread)."""

    def stop_at_exit(self) -> None: ...


class ResultDecoder(Protocol):
    """What decodes a task's stored result into its declared type (a Task does)."""

    def decode_result(self, data: bytes) -> Any: ...


EnqueueHook = Callable[[Sequence[Job]], Sequence[Job]]
"""Told of every batch about to be stored; returns the jobs to store (see :attr:`Client.enqueue_hooks`)."""


class Client:
    """One app's connections, wake-ups and send path.

    Args:
        url: the broker URL, or a function returning one (read when a broker opens).
        store: for an ``amqp://`` broker, the broker URL that keeps the jobs' record
            (default ``$PIGEON_STORE``, read for RabbitMQ only).
        result_ttl: seconds a succeeded job and its result are kept.
        failed_ttl: seconds a failed or cancelled job is kept.
        resolve: the task a job names, for decoding its result (None: decode untyped).
        max_payload: the most bytes a job's encoded arguments, or its result, may take
            (:mod:`pigeon.limits`); checked on every enqueue path and by the worker.

    Nothing connects until the client is first used.
    """

    def __init__(
        self,
        url: str | Callable[[], str] | None = None,
        *,
        store: str | None = None,
        result_ttl: float = 24 * 3600,
        failed_ttl: float = 7 * 24 * 3600,
        resolve: Callable[[str], ResultDecoder | None] = lambda name: None,
        max_payload: int = limits.MAX_BYTES,
    ) -> None:
        self._url: str | Callable[[], str] = url or os.environ.get("PIGEON_URL") or DEFAULT_URL
        if isinstance(self._url, str) and "://" not in self._url:
            raise ConfigurationError(f"broker URL {self._url!r} has no scheme (e.g. sqlite:///{self._url})")
        self._env_store = os.environ.get("PIGEON_STORE") or None
        for given in (store, self._env_store):
            if given is not None and "://" not in given:
                raise ConfigurationError(f"store URL {given!r} has no scheme (e.g. sqlite:///{given})")
        if store is not None and isinstance(self._url, str):
            with_store(self._url, store)  # fail now, not at the first send
        self.store = store
        """The companion store of an ``amqp://`` broker (None: ``$PIGEON_STORE``, if set)."""
        self.result_ttl = result_ttl
        self.failed_ttl = failed_ttl
        self.resolve = resolve
        if max_payload < 1:
            raise ConfigurationError(f"max_payload must be at least 1 byte, not {max_payload}")
        self.max_payload = max_payload
        self.notifier = Notifier()
        self.enqueue_hooks: list[EnqueueHook] = []
        """Called with every batch about to be stored; each returns the jobs to store
        (the same, or replaced: e.g. with trace headers). ``pigeon.metrics`` counts here."""
        self.result_waiters = ResultWaiters()
        self._shared: dict[str, Any] = {}
        self._brokers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, InstrumentedBroker] = (
            weakref.WeakKeyDictionary()
        )
        self._seams: list[InstrumentedBroker] = []  # every seam opened, for metrics()
        self._brokers_lock = threading.Lock()
        self._portal = Portal("pigeon-portal")
        self._stop_first: weakref.WeakSet[StopsAtExit] = weakref.WeakSet()
        self._exit_hooked = False

    @property
    def url(self) -> str:
        """The broker URL (read when a broker is opened, so a callable may follow settings).

        A companion store rides in it as the ``store`` query parameter.
        """
        url = self._url() if callable(self._url) else self._url
        if self.store:
            return with_store(url, self.store)
        if self._env_store and takes_store(url):
            return with_store(url, self._env_store)
        return url

    @url.setter
    def url(self, value: str | Callable[[], str]) -> None:
        self._url = value

    @property
    def url_source(self) -> str | Callable[[], str]:
        """The URL as given: a string, or the function that reads it."""
        return self._url

    # -- connections ---------------------------------------------------------

    def create_broker(self) -> Broker:
        """A new, unopened broker for this client's URL (every broker the client opens comes
        from here, before the seam wraps it: override it to wrap them, e.g. to inject faults)."""
        return create_broker(self.url, self._shared)

    async def connection(self) -> InstrumentedBroker:
        """This event loop's broker, opened on first use, behind the seam."""
        loop = asyncio.get_running_loop()
        broker = self._brokers.get(loop)
        if broker is None:
            raw = self.create_broker()
            if loop is self._portal.loop and isinstance(raw, BrokerBase):
                raw.blocking_ok = True  # only synchronous callers wait on this loop
            opened = self._seam(InstrumentedBroker(raw))
            await opened.__aenter__()
            with self._brokers_lock:
                broker = self._brokers.setdefault(loop, opened)
            if broker is not opened:
                await opened.__aexit__(None, None, None)
        return broker

    def _seam(self, seam: InstrumentedBroker) -> InstrumentedBroker:
        with self._brokers_lock:
            self._seams.append(seam)
        return seam

    def metrics(self) -> dict[str, CallStats]:
        """Every broker call this client made so far, by method: counts, errors, seconds.

        Summed over the brokers it opened (one per event loop, and those for
        transactional sends and migrations), closed ones included.
        """
        with self._brokers_lock:
            seams = list(self._seams)
        return merged(*(s.metrics() for s in seams))

    def portal_call(self, coro: Coroutine[Any, Any, R]) -> R:
        """Run a coroutine for synchronous callers, on the client's private loop.

        The first call also arranges for the client to close at interpreter exit
        (see :meth:`close`), so a script that only sends exits cleanly.
        """
        if not self._exit_hooked:
            self._hook_exit()
        return self._portal.call(coro)

    def swap(self, url: str | Callable[[], str]) -> None:
        """Use another broker from now on, forgetting the open connections (close them first)."""
        self.url = url
        self._shared.clear()
        with self._brokers_lock:
            self._brokers.clear()

    async def aclose(self) -> None:
        """Close this event loop's broker connection."""
        loop = asyncio.get_running_loop()
        with self._brokers_lock:
            broker = self._brokers.pop(loop, None)
        if broker is not None:
            await broker.__aexit__(None, None, None)

    def close(self) -> None:
        """Close the connections synchronous calls opened.

        Called for you at interpreter exit, after what :meth:`stop_at_exit` was
        given has stopped; call it yourself to close sooner.
        """
        self._portal.close(self.aclose())
        with self._brokers_lock:  # the next send opens anew, from the URL as it is then
            seam = self._shared.pop("producer_seam", None)
            self._shared.pop("producer", None)
        if isinstance(seam, InstrumentedBroker):
            seam.close_sync()

    def stop_at_exit(self, thing: StopsAtExit) -> None:
        """Stop ``thing`` (a worker thread) at interpreter exit, before the client closes."""
        self._stop_first.add(thing)
        if not self._exit_hooked:
            self._hook_exit()

    def _hook_exit(self) -> None:
        with self._brokers_lock:
            if self._exit_hooked:
                return
            self._exit_hooked = True
        ref = weakref.ref(self)  # the hook must not keep a discarded client alive

        def close_at_exit() -> None:
            client = ref()
            if client is not None:
                client._close_at_exit()

        at_exit(close_at_exit)

    def _close_at_exit(self) -> None:
        """Stop this client's worker threads (each within its grace), then close the portal's broker."""
        for thing in list(self._stop_first):
            thing.stop_at_exit()
        self.close()

    # -- send, cancel, look up -----------------------------------------------

    async def aenqueue(self, jobs: Sequence[Job]) -> list[str]:
        """Store built jobs; return the id standing for each (a unique key's pending job's)."""
        jobs = self.before_enqueue(jobs)
        broker = await self.connection()
        ids = await broker.enqueue(jobs)
        self.notifier.notify()
        return ids

    def before_enqueue(self, jobs: Sequence[Job]) -> Sequence[Job]:
        """``jobs`` checked against ``max_payload`` and passed through the enqueue hooks."""
        limits.check_sizes(jobs, self.max_payload)
        for hook in self.enqueue_hooks:
            jobs = hook(jobs)
        return jobs

    def enqueue(self, jobs: Sequence[Job]) -> list[str]:
        """Synchronous :meth:`aenqueue`.

        On a broker that stores from synchronous code itself (``SyncProducing``) the jobs
        go out on the caller's thread, sharing a round trip with other threads' sends
        made at the same moment; otherwise through the client's private loop.
        """
        producer = self._producer()
        if producer is None:
            return self.portal_call(self.aenqueue(jobs))
        ids = producer.enqueue(self.before_enqueue(jobs))
        self.notifier.notify()
        return ids

    def _producer(self) -> Combiner | None:
        producer = self._shared.get("producer")
        if producer is None:
            seam = InstrumentedBroker(self.create_broker())
            inner = seam.sync_producing
            producer = False if inner is None else Combiner(seam.enqueue_sync, inner.sync_connections)
            with self._brokers_lock:
                if "producer" in self._shared:
                    producer = self._shared["producer"]  # another thread was first: use its
                else:
                    self._shared["producer"] = producer
                    if producer:
                        self._shared["producer_seam"] = seam
                        self._seams.append(seam)
            if not self._exit_hooked:
                self._hook_exit()
        return producer if isinstance(producer, Combiner) else None

    def _transactional(self) -> InstrumentedBroker:
        seam = self._shared.get("transactional")
        if not isinstance(seam, InstrumentedBroker):
            seam = InstrumentedBroker(self.create_broker())
            seam.require_transactional()
            self._shared["transactional"] = self._seam(seam)
        return seam

    def enqueue_in(self, connection: Any, jobs: Sequence[Job]) -> list[str]:
        """Store jobs with the caller's connection, inside the caller's transaction.

        Raises:
            UnsupportedFeature: the broker cannot write in the caller's transaction.
            BrokerError: the insert failed.
        """
        jobs = self.before_enqueue(jobs)
        ids = self._transactional().enqueue_in_sync(connection, jobs)
        self.notifier.notify()  # a no-op until commit; then in-process workers look at once
        return ids

    async def aenqueue_in(self, connection: Any, jobs: Sequence[Job]) -> list[str]:
        """Asynchronous :meth:`enqueue_in` (an async driver connection, or a sync one)."""
        jobs = self.before_enqueue(jobs)
        ids = await self._transactional().enqueue_in(connection, jobs)
        self.notifier.notify()
        return ids

    async def acancel(self, job_id: str) -> bool:
        """Cancel a job unless it has finished; True if it was cancelled."""
        broker = await self.connection()
        cancelled = await broker.cancel(job_id, time.time() + self.failed_ttl)
        if cancelled:
            self.result_waiters.done([job_id])
        return cancelled

    def cancel(self, job_id: str) -> bool:
        """Synchronous :meth:`acancel`."""
        return self.portal_call(self.acancel(job_id))

    async def amigrate(self) -> list[str]:
        """Create or upgrade the broker's tables or schema; return the migrations applied."""
        return await self._seam(InstrumentedBroker(self.create_broker())).migrate()

    def decode_result(self, task: str, data: bytes) -> Any:
        """A stored result, decoded as ``task`` declares it (untyped for an unknown task)."""
        found = self.resolve(task)
        return found.decode_result(data) if found is not None else codec.decode_any(data)
