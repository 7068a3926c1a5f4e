"""RabbitBroker: the connection, the topology, publishing and consuming; the record is the store's."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, Self, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractRobustChannel, AbstractRobustConnection

from pigeon.brokers.base import Broker, BrokerBase, Capabilities, Migrating, create_broker
from pigeon.brokers.inspection import Inspecting
from pigeon.brokers.rabbitmq._connection import (
    AGAIN,
    CALL,
    SLICE,
    check_server,
    connect,
    hosts_of,
    translated,
    where,
    worth_again,
)
from pigeon.brokers.rabbitmq._held import Held
from pigeon.errors import BrokerConnectionError, BrokerError, ConfigurationError
from pigeon.job import Claim, Job, JobRecord, Outcome, WorkerInfo

_QUEUE_TYPES = ("quorum", "classic")
_MIN_QUORUM = (3, 8)
"""Quorum queues appeared in RabbitMQ 3.8."""


class RabbitBroker(BrokerBase):
    """Jobs carried by RabbitMQ, recorded in a companion store broker.

    Args:
        url: the RabbitMQ server (``amqp://user:pass@host:5672/vhost``).
        store: the unopened store broker.
        namespace: the prefix of the queue names.
        queue_type: ``quorum`` (replicated) or ``classic``.
        prefetch: unacknowledged deliveries one consumer may hold.
    """

    def __init__(
        self,
        url: str,
        store: Broker,
        *,
        namespace: str = "pigeon",
        queue_type: str = "quorum",
        prefetch: int = 64,
    ) -> None:
        self.url = url
        self._server = url
        self._hosts = hosts_of(url)  # a bad host list fails here, before anything connects
        self._store = store
        self._namespace = namespace
        self._queue_type = queue_type
        self._prefetch = prefetch
        self.capabilities = Capabilities(
            defer=store.capabilities.defer,
            priority=store.capabilities.priority,
            get_result=store.capabilities.get_result,
            async_task=store.capabilities.async_task,
            cross_process=store.capabilities.cross_process,
        )  # the optional protocols: those of the store (see _protocols.py); never the caller's
        # transaction, as a job written there would have no delivery
        self._connection: AbstractRobustConnection | None = None
        self._publisher: AbstractRobustChannel | None = None
        self._consumer: AbstractRobustChannel | None = None
        self._declared: set[str] = set()
        self._used: set[str] = set()
        """Every queue this broker declared, for :meth:`delete_queues`."""
        self._consumers: dict[str, str] = {}
        """The consumer tag of each queue consumed."""
        self._declaring = asyncio.Lock()
        self._consuming = asyncio.Lock()
        self._held = Held()
        self.server_version: tuple[int, ...] = ()

    @classmethod
    def from_url(cls, url: str, shared: dict[str, Any]) -> Self:
        """The broker for ``amqp://…?store=…&namespace=…&queue_type=…&prefetch=…``.

        Without a store, an :class:`~pigeon.brokers.rabbitmq._alone.AloneBroker`: RabbitMQ alone.

        Raises:
            ConfigurationError: a bad parameter.
        """
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        store_url = query.pop("store", "")
        if not store_url:  # RabbitMQ alone: no record of a job (see _alone.py)
            from pigeon.brokers.rabbitmq._alone import AloneBroker

            return cast("Self", AloneBroker.from_url(url, shared))
        namespace = query.pop("namespace", "pigeon")
        if not re.fullmatch(r"[\w.-]+", namespace):
            raise ConfigurationError(f"{url!r}: namespace must be a plain word")
        queue_type = query.pop("queue_type", "quorum")
        if queue_type not in _QUEUE_TYPES:
            raise ConfigurationError(f"{url!r}: queue_type must be one of {', '.join(_QUEUE_TYPES)}")
        try:
            prefetch = int(query.pop("prefetch", "64"))
        except ValueError:
            prefetch = 0
        if not 1 <= prefetch <= 65535:
            raise ConfigurationError(f"{url!r}: prefetch must be a whole number from 1 to 65535")
        store = create_broker(store_url, shared.setdefault("store", {}))
        server = urlunsplit(parts._replace(query=urlencode(query)))
        broker = cls.offering(store)(
            server, store, namespace=namespace, queue_type=queue_type, prefetch=prefetch
        )
        broker.url = url
        return broker

    @classmethod
    def offering(cls, store: Broker) -> type[Self]:
        """This class with the optional protocols ``store`` implements, each answered by it.

        The seam derives capabilities from the protocols a broker implements, so a
        store that cannot inspect makes a RabbitMQ broker that cannot either: its
        callers get the seam's clear ``UnsupportedFeature``.
        """
        from pigeon.brokers.rabbitmq._protocols import offered

        extra = offered(store)
        if not extra:
            return cls
        return cast("type[Self]", type(cls.__name__, (cls, *extra), {"__module__": cls.__module__}))

    # -- plumbing ------------------------------------------------------------

    def _translated(self) -> contextlib.AbstractContextManager[None]:
        return translated(
            self._where,
            "A queue of that name exists with other arguments "
            "(quorum vs classic?): "
            "delete it, or set ?queue_type= to match",
        )

    @property
    def _where(self) -> str:
        return where(self._server, self._namespace)

    def _queue_name(self, queue: str) -> str:
        return f"{self._namespace}.{queue}"

    async def open(self) -> None:
        """Open the store, connect, and check the server can do what the URL asks.

        Raises:
            ConfigurationError: the server lacks a needed feature (quorum queues, confirms).
            BrokerConnectionError: the server cannot be reached.
        """
        if isinstance(self._store, BrokerBase):
            self._store.blocking_ok = self.blocking_ok
        await self._store.__aenter__()
        try:
            with self._translated():
                await self._connect()
        except BaseException:
            await self.close()
            raise

    async def _connect(self) -> None:
        self._connection, properties = await connect(self._hosts, f"pigeon:{self._namespace}")
        async with asyncio.timeout(CALL):
            await self._opened(self._connection, properties)

    async def _opened(self, connection: AbstractRobustConnection, properties: Any) -> None:
        self.server_version = check_server(
            properties,
            self._where,
            self._queue_type,
            _MIN_QUORUM,
            "quorum queues",
        )
        self._publisher = await connection.channel(publisher_confirms=True, on_return_raises=True)
        self._consumer = await connection.channel(publisher_confirms=False)
        await self._consumer.set_qos(prefetch_count=self._prefetch)  # per consumer, never global

    async def close(self) -> None:
        """Close the connection and the store (pending deliveries go back to the server)."""
        connection, self._connection = self._connection, None
        self._publisher = self._consumer = None
        self._consumers.clear()
        try:
            await self._held.close()
            if connection is not None:
                with contextlib.suppress(aiormq.exceptions.AMQPError, ConnectionError, OSError, TimeoutError):
                    async with asyncio.timeout(CALL):
                        await connection.close()
        finally:
            await self._store.__aexit__(None, None, None)

    async def migrate(self) -> list[str]:
        """The store's migrations (RabbitMQ's queues are declared as they are first used)."""
        return await self._store.migrate() if isinstance(self._store, Migrating) else []

    def _channel(self, channel: AbstractRobustChannel | None) -> AbstractRobustChannel:
        if channel is None:
            raise BrokerConnectionError("the RabbitMQ broker is not open (use `async with broker:`)")
        return channel

    @contextlib.asynccontextmanager
    async def _side_channel(self) -> AsyncIterator[AbstractChannel]:
        """A channel of its own, for declarations and deletions, under the declaring lock.

        A refused declaration closes its channel, and must not take the
        publishing channel with it.
        """
        async with self._declaring:
            if self._connection is None:
                raise BrokerConnectionError("the RabbitMQ broker is not open (use `async with broker:`)")
            with self._translated():
                async with asyncio.timeout(CALL):
                    channel = await self._connection.channel(publisher_confirms=False)
            try:
                yield channel
            finally:
                # Bounded: this runs under the declaring lock, which every claim and wait may need.
                with contextlib.suppress(aiormq.exceptions.AMQPError, ConnectionError, OSError, TimeoutError):
                    async with asyncio.timeout(CALL):
                        await channel.close()

    async def _declare(self, queues: Sequence[str]) -> None:
        """Declare the queues not declared yet, with the same arguments every time."""
        missing = [q for q in dict.fromkeys(queues) if q not in self._declared]
        if not missing:
            return
        async with self._side_channel() as channel:
            for q in missing:
                if q not in self._declared:
                    with self._translated():
                        await channel.declare_queue(**self._queue_args(q), timeout=CALL)
                    self._declared.add(q)
                    self._used.add(q)

    async def delete_queues(self, queues: Sequence[str] = ()) -> list[str]:
        """Delete this namespace's queues from RabbitMQ, with the deliveries they hold.

        The queues deleted are those named, those this broker declared, and those
        its store has jobs in. No job is lost: the store keeps them all, a
        worker's claim finds the ready ones without a delivery, and the next send
        or worker declares its queue again. For a namespace that is done with,
        such as a test's: RabbitMQ keeps every queue until it is deleted, and a
        node slows down under many unused quorum queues.

        Returns:
            The RabbitMQ names of the queues deleted (one already gone is no error).

        Raises:
            BrokerConnectionError: RabbitMQ cannot be reached.
        """
        names = {*queues, *self._used}
        if isinstance(self._store, Inspecting):
            names.update(s.queue for s in await self._store.stats())
        async with self._side_channel() as channel:
            for q in sorted(names):
                with self._translated():
                    await channel.queue_delete(self._queue_name(q), timeout=CALL)
                self._declared.discard(q)
                self._consumers.pop(q, None)
                self._held.forget(q)
        return [self._queue_name(q) for q in sorted(names)]

    def _queue_args(self, queue: str) -> dict[str, Any]:
        return {
            "name": self._queue_name(queue),
            "durable": True,
            "arguments": {"x-queue-type": self._queue_type},
        }

    # -- the hot path --------------------------------------------------------

    async def enqueue(self, jobs: Sequence[Job]) -> list[str]:
        """Store the jobs, then publish a delivery for each new one that is due, confirmed.

        Raises:
            BrokerError: RabbitMQ nacked or returned a delivery (the jobs are stored and will run).
        """
        ids = await self._store.enqueue(jobs)
        now = time.time()
        new = [j for i, j in zip(ids, jobs, strict=True) if i == j.id]  # not a unique key's older job
        due = [j for j in new if j.run_at is None or j.run_at <= now]
        await self._publish(due)
        return ids

    async def _publish(self, jobs: Sequence[Job]) -> None:
        """Publish one delivery per job, and await the confirms together.

        Deliveries nacked or returned are published again, a few times with
        pauses, before it is an error: a quorum queue just declared can nack
        while its leader starts, and one being deleted still accepts a
        declaration until it is gone (a returned delivery's queue is declared
        again). A delivery published twice costs a spare wake-up, nothing more.
        """
        if not jobs:
            return
        await self._declare([j.queue for j in jobs])
        failed = []
        for at in range(0, len(jobs), SLICE):  # each publish waits for its confirm within CALL
            failed += await self._send(jobs[at : at + SLICE])
        for pause in AGAIN:
            if not failed or not all(worth_again(e) for _, e in failed):
                break
            await asyncio.sleep(pause)
            returned = {j.queue for j, e in failed if isinstance(e, aiormq.exceptions.PublishError)}
            self._declared -= returned
            await self._declare(list(returned))
            failed = await self._send([j for j, _ in failed])
        if failed:
            job, first = failed[0]
            raise BrokerError(
                f"RabbitMQ ({self._where}) did not confirm {len(failed)} of {len(jobs)} deliveries "
                f"({first}); the jobs are stored and will run (first id {job.id})"
            ) from first

    async def _send(self, jobs: Sequence[Job]) -> list[tuple[Job, Exception]]:
        exchange = self._channel(self._publisher).default_exchange
        sent = await asyncio.gather(
            *(
                exchange.publish(
                    aio_pika.Message(
                        j.id.encode(),
                        message_id=j.id,
                        content_type="text/plain",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=self._queue_name(j.queue),
                    mandatory=True,
                    timeout=CALL,
                )
                for j in jobs
            ),
            return_exceptions=True,
        )
        failed: list[tuple[Job, Exception]] = []
        for job, result in zip(jobs, sent, strict=True):
            if isinstance(result, Exception):
                failed.append((job, result))
            elif isinstance(result, BaseException):
                raise result  # a cancellation
        return failed

    async def _consume(self, queues: Sequence[str]) -> None:
        """Consume every queue of ``queues`` that has no live consumer on the current channel.

        Checked on every claim and wait, so a consumer RabbitMQ cancelled (its queue
        deleted) or lost with its connection comes back on the next look; its held
        deliveries are dropped unacknowledged, since their tags died with it. While
        the connection is down this does nothing: the store's claims go on.
        """
        connection = self._connection
        if connection is None or not connection.connected.is_set():
            return
        channel = self._channel(self._consumer)
        if not await self._missing(channel, queues):
            return
        # One at a time: two calls that both found a queue without its consumer started two,
        # and the second dropped what the first had received (unacknowledged until the
        # connection closed, holding prefetch slots).
        async with self._consuming:
            missing = await self._missing(channel, queues)
            if not missing:
                return
            self._declared -= {q for q in missing if q in self._consumers}  # cancelled: deleted, maybe
            await self._declare(missing)
            for q in missing:
                self._held.forget(q)
                with self._translated():
                    queue = await channel.get_queue(self._queue_name(q), ensure=False)
                    self._consumers[q] = await queue.consume(self._held.receiver(q), timeout=CALL)

    async def _missing(self, channel: AbstractRobustChannel, queues: Sequence[str]) -> list[str]:
        """The queues of ``queues`` without a live consumer on ``channel``."""
        with self._translated():
            async with asyncio.timeout(CALL):
                live = cast(aiormq.Channel, await channel.get_underlay_channel()).consumers
        return [q for q in queues if self._consumers.get(q) not in live]

    async def claim(self, worker_id: str, queues: Sequence[str], limit: int, lease: float) -> list[Claim]:
        """Claim in the store; acknowledge the deliveries this claim settles (see ``Held.settle``)."""
        await self._consume(queues)
        before = self._held.snapshot(queues)
        claims = await self._store.claim(worker_id, queues, limit, lease)
        await self._held.settle(before, claims, limit)
        return claims

    async def wait(self, queues: Sequence[str], timeout: float) -> None:
        """Return when a delivery for ``queues`` arrived since the last wait, or after ``timeout``."""
        await self._consume(queues)
        await self._held.wait(queues, timeout)

    @property
    def deliveries(self) -> int:
        """Deliveries this broker received, for diagnostics and tests."""
        return self._held.deliveries

    # -- the record: the store's --------------------------------------------

    async def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
        return await self._store.settle(outcomes)

    async def heartbeat(
        self, worker: WorkerInfo, leases: Sequence[tuple[str, str]], lease: float
    ) -> list[str]:
        return await self._store.heartbeat(worker, leases, lease)

    async def recover(self, dead_after: float, expires_at: float | None = None) -> int:
        return await self._store.recover(dead_after, expires_at)

    async def prune(self) -> int:
        return await self._store.prune()

    async def get(self, job_id: str) -> JobRecord | None:
        return await self._store.get(job_id)

    async def cancel(self, job_id: str, expires_at: float) -> bool:
        return await self._store.cancel(job_id, expires_at)
