"""RabbitMQ alone (``amqp://…`` without a store): RabbitMQ is the queue and the lease, nothing records jobs.

- **send**: one persistent message per job, its envelope as the JSON body,
  published with confirms and ``mandatory``; a delayed job goes through the
  delay topology (``_topology.py``).
- **claim**: deliveries held by this consumer become claims; the unacknowledged
  delivery is the lease, so a worker that dies (or loses its connection) hands
  its jobs back to RabbitMQ, which delivers them again. A delivery's attempt is
  the attempts spent before it was published (``x-pigeon-attempts``) plus the
  times RabbitMQ delivered it again (a quorum queue's ``x-delivery-count``, a
  classic queue's ``redelivered``); one past its ``max_attempts`` goes to the
  dead-letter queue with a ``pigeon.WorkerLost`` error.
- **settle**: a success is acknowledged; a retry, a deferral and a release are
  published again (into the delay topology when not due) and then
  acknowledged; a failure is published to the queue's dead-letter queue and
  then acknowledged. A worker that dies in between runs the job again
  (at least once), never loses it.

Events are a topic exchange with a queue per handler (``_events_topic.py``).

Nothing records a job, so ``get`` and ``cancel`` (except of a job this broker
holds) raise :class:`UnsupportedFeature`, as do unique keys and concurrency
limits; the optional protocols (inspection, rate limits, progress) are not
implemented, so the seam refuses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Sequence
from typing import Any, Self, cast

import aiormq
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
)

from pigeon.brokers.base import BrokerBase, Capabilities, EventHandler
from pigeon.brokers.rabbitmq import _dead as dead
from pigeon.brokers.rabbitmq import _events_topic as topics
from pigeon.brokers.rabbitmq import _topology as topo
from pigeon.brokers.rabbitmq._connection import (
    CALL,
    alone_options,
    check_server,
    connect,
    hosts_of,
    server_of,
    translated,
    where,
)
from pigeon.brokers.rabbitmq._inbox import Arrival, Inbox
from pigeon.brokers.rabbitmq._messages import (
    ATTEMPTS,
    Running,
    Send,
    ack,
    as_int,
    due_of,
    publish_confirmed,
    side_channel,
    unsupported,
)
from pigeon.brokers.rabbitmq._messages import message as job_message
from pigeon.errors import BrokerConnectionError
from pigeon.job import (
    WORKER_LOST,
    Claim,
    ErrorInfo,
    Job,
    JobRecord,
    Outcome,
    OutcomeKind,
    WorkerInfo,
    decode_stored,
)

_NEEDS = ((3, 10), "quorum queues with message TTL and at-least-once dead-lettering")
_EARLY = 0.002
"""Seconds early a delayed delivery may be run rather than sent round again."""
_FIRST = 2.0
"""Seconds a claim waits, on a queue it starts consuming, for the messages already there."""


class AloneBroker(BrokerBase):
    """Jobs carried by RabbitMQ alone: at least once, with delays, retries and dead letters.

    Args:
        url: the RabbitMQ server (``amqp://user:pass@host:5672/vhost``), as given.
        namespace: the prefix of the queue names.
        queue_type: ``quorum`` (replicated) or ``classic`` (priorities).
        prefetch: unacknowledged deliveries one consumer may hold (running jobs included).
        delivery_limit: deliveries of one message a quorum queue allows before dead-lettering it.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "pigeon",
        queue_type: str = "quorum",
        prefetch: int = 64,
        delivery_limit: int = 10,
    ) -> None:
        self.url = url
        self._server = server_of(url)
        self._hosts = hosts_of(self._server)  # a bad host list fails here, before anything connects
        self._namespace = namespace
        self._queue_type = queue_type
        self._prefetch = prefetch
        self._delivery_limit = delivery_limit
        self._qos = prefetch  # the consumers' prefetch, raised by a worker's concurrency
        # Priorities only where the queue type has them (quorum queues: none on 3.x).
        self.capabilities = Capabilities(priority=queue_type == "classic", get_result=False)
        self._connection: AbstractRobustConnection | None = None
        self._publisher: AbstractRobustChannel | None = None
        self._consumer: AbstractRobustChannel | None = None
        self._declared: set[str] = set()
        self._used: set[str] = set()
        """Every queue this broker declared, for :meth:`delete_queues`."""
        self._delays = False
        self._consumers: dict[str, str] = {}
        self._declaring = asyncio.Lock()
        self._consuming = asyncio.Lock()  # claim and wait both start consumers: two at once doubled them
        self._inbox = Inbox()
        self._topics = topics.Topics(namespace)
        self._running: dict[str, Running] = {}
        self.server_version: tuple[int, ...] = ()

    @classmethod
    def from_url(cls, url: str, shared: dict[str, Any]) -> Self:
        """The broker for ``amqp://…?namespace=…&queue_type=…&prefetch=…&delivery_limit=…``.

        Raises:
            ConfigurationError: a bad parameter.
        """
        return cls(url, **alone_options(url))

    # -- plumbing ------------------------------------------------------------

    def _translated(self) -> contextlib.AbstractContextManager[None]:
        return translated(
            self._where,
            "A queue of that name exists with other arguments "
            "(quorum vs classic, or declared by RabbitMQ with a store?): "
            "delete it, or set ?queue_type= to match",
        )

    @property
    def _where(self) -> str:
        return where(self._server, self._namespace)

    def queue_name(self, queue: str) -> str:
        return f"{self._namespace}.{queue}"

    def dead_name(self, queue: str) -> str:
        """The dead-letter queue of pigeon queue ``queue``."""
        return f"{self._namespace}.{queue}.dead"

    async def open(self) -> None:
        """Connect, and check the server can do what the URL asks.

        Raises:
            ConfigurationError: the server lacks a needed feature (quorum queues, confirms).
            BrokerConnectionError: the server cannot be reached.
        """
        try:
            with self._translated():
                connection, properties = await connect(self._hosts, f"pigeon:{self._namespace}")
                self._connection = connection
                async with asyncio.timeout(CALL):
                    self.server_version = check_server(properties, self._where, self._queue_type, *_NEEDS)
                    self._publisher = await connection.channel(publisher_confirms=True, on_return_raises=True)
                    self._consumer = await connection.channel(publisher_confirms=False)
                    await self._consumer.set_qos(prefetch_count=self._prefetch)  # per consumer, never global
                    self._qos = self._prefetch
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close the connection: what this consumer held goes back to RabbitMQ."""
        connection, self._connection = self._connection, None
        self._publisher = self._consumer = None
        self._consumers.clear()
        self._running.clear()
        if connection is not None:
            with contextlib.suppress(aiormq.exceptions.AMQPError, ConnectionError, OSError, TimeoutError):
                async with asyncio.timeout(CALL):
                    await connection.close()

    def _channel[T](self, channel: T | None) -> T:
        if channel is None:
            raise BrokerConnectionError("the RabbitMQ broker is not open (use `async with broker:`)")
        return channel

    async def _declare(self, queues: Sequence[str]) -> None:
        """Declare the job queues not declared yet, their dead-letter queues and the delay topology."""
        missing = [q for q in dict.fromkeys(queues) if q not in self._declared]
        if not missing:
            return
        async with self._declaring:
            with self._translated():
                async with side_channel(self._channel(self._connection)) as channel:
                    if not self._delays:
                        await topo.declare_delays(channel, CALL)
                        self._delays = True
                    for q in missing:
                        if q not in self._declared:
                            name, dead = self.queue_name(q), self.dead_name(q)
                            kind, limit = self._queue_type, self._delivery_limit
                            await topo.declare_queue(channel, name, dead, kind, limit, CALL)
                            self._declared.add(q)
                            self._used.add(q)

    async def delete_queues(self, queues: Sequence[str] = ()) -> list[str]:
        """Delete this namespace's job and dead-letter queues, named or declared here, with their messages.

        For a namespace done with, such as a test's: RabbitMQ keeps a queue until
        it is deleted, and a node slows down under many unused quorum queues. The
        delay levels stay, shared by every namespace on the server.

        Returns:
            The RabbitMQ names of the queues deleted (one already gone is no error).
        """
        names = sorted({*queues, *self._used, *self._topics.forget()})
        deleted: list[str] = []
        async with self._declaring:
            with self._translated():
                async with side_channel(self._channel(self._connection)) as channel:
                    for q in names:
                        for name in (self.queue_name(q), self.dead_name(q)):
                            await channel.queue_delete(name, timeout=CALL)
                            deleted.append(name)
                        self._declared.discard(q)
                        self._used.discard(q)
                        self._consumers.pop(q, None)
                        self._inbox.forget(q)
        return deleted

    # -- publishing ------------------------------------------------------------

    def _route(self, queue: str, due: float | None, now: float) -> tuple[str, str]:
        """The exchange and routing key that bring a message to ``queue`` at ``due``."""
        name = self.queue_name(queue)
        if due is None or due <= now + _EARLY:
            return "", name
        return topo.TOP, topo.delay_key(round((due - now) * 1000), name)

    async def _publish(self, sends: Sequence[Send]) -> None:
        """Publish messages (exchange, routing key, message) and await their confirms together."""
        await publish_confirmed(self._channel(self._publisher), sends, self._where, self._translated)

    # -- the hot path --------------------------------------------------------

    async def enqueue(self, jobs: Sequence[Job]) -> list[str]:
        """Publish one message per job, confirmed; a job not due goes through the delay topology.

        Raises:
            UnsupportedFeature: a job has a unique key or a concurrency limit (nothing is sent).
            BrokerError: RabbitMQ nacked or returned a message.
        """
        for job in jobs:  # all checked before any is sent
            if job.unique_key is not None:
                raise unsupported(f"keep a unique key ({job.task}, unique_key={job.unique_key!r})")
            if job.limit_key is not None:
                raise unsupported(f"limit concurrency ({job.task}, limit_key={job.limit_key!r})")
        if not jobs:
            return []
        await self._declare([j.queue for j in jobs])
        now = time.time()
        sends = [(*self._route(j.queue, j.run_at, now), job_message(j, 0, None, None)) for j in jobs]
        await self._publish(sends)
        return [j.id for j in jobs]

    async def _consume(self, queues: Sequence[str]) -> int:
        """Consume every queue of ``queues`` without a live consumer; return how many messages they had.

        A consumer RabbitMQ cancelled, or lost with its connection, is started
        again on the next claim or wait; what it held is redelivered by RabbitMQ.
        """
        async with self._consuming:
            connection = self._connection
            if connection is None or not connection.connected.is_set():
                return 0
            channel = self._channel(self._consumer)
            with self._translated():
                async with asyncio.timeout(CALL):
                    live = cast(aiormq.Channel, await channel.get_underlay_channel()).consumers
            missing = [q for q in queues if self._consumers.get(q) not in live]
            if not missing:
                return 0
            self._declared -= set(missing)  # declared again: one may have been deleted since (an operator's)
            await self._declare(missing)
            if routes := [r for q in missing if (r := self._topics.route(q)) is not None]:  # bound again
                await self._topics.bind(self._channel(self._connection), routes, self.queue_name)
            waiting = 0
            for q in missing:
                self._inbox.forget(q)
                with self._translated():
                    queue = await channel.declare_queue(self.queue_name(q), passive=True, timeout=CALL)
                    waiting += queue.declaration_result.message_count or 0
                    self._consumers[q] = await queue.consume(self._inbox.receiver(q), timeout=CALL)
            return waiting

    async def claim(self, worker_id: str, queues: Sequence[str], limit: int, lease: float) -> list[Claim]:
        """Claim deliveries held here, highest priority first; a delivery's lease is its being unacknowledged.

        ``lease`` does not apply: a job is leased until this connection acknowledges it or dies.
        """
        queues = self._topics.widen(queues)
        waiting = await self._consume(queues)
        if waiting:  # a consumer just started: let what was in its queues arrive
            await self._inbox.until(queues, min(limit, waiting), _FIRST)
        claims: list[Claim] = []
        while len(claims) < limit:
            arrivals = self._inbox.take(queues, limit - len(claims))
            if not arrivals:
                break
            for arrival in arrivals:
                claim = await self._claimable(arrival)
                if claim is not None:
                    claims.append(claim)
        return claims

    async def _claimable(self, arrival: Arrival) -> Claim | None:
        """The claim for a delivery, or None once it was sent round again or dead-lettered."""
        message, route = arrival.message, self._topics.route(arrival.queue)
        headers = message.headers or {}
        if route is not None and ATTEMPTS not in headers:  # an event, not a retry of its handler's job
            job, malformed = topics.job_of(route, message)
        else:
            job, malformed = decode_stored(message.message_id or uuid.uuid4().hex, message.body)
        spent = as_int(headers.get(ATTEMPTS))
        returned = as_int(headers.get("x-delivery-count")) or int(bool(message.redelivered))
        attempt = spent + returned + 1
        now = time.time()
        due = due_of(headers, job.run_at)
        if malformed is None and due is not None and due > now + _EARLY:
            await self._forward(message, job, spent, due, None, arrival.queue)  # not due yet
            return None
        if malformed is None and attempt > job.max_attempts:
            await self._forward(message, job, attempt - 1, None, WORKER_LOST, self.dead_name(arrival.queue))
            return None
        token = uuid.uuid4().hex
        self._running[token] = Running(message, job, attempt, arrival.queue)
        return Claim(job, token, attempt, malformed)

    async def _forward(
        self,
        message: AbstractIncomingMessage,
        job: Job,
        attempts: int,
        due: float | None,
        error: ErrorInfo | None,
        to: str,
    ) -> None:
        """Publish the job again (to its queue at ``due``, or to a dead-letter queue), then acknowledge."""
        now = time.time()
        route = ("", to) if error is not None else self._route(to, due, now)
        await self._publish([(*route, job_message(job, attempts, due, error))])
        await ack(message)

    # -- dead letters ----------------------------------------------------------

    async def dead_letters(self, queues: Sequence[str], limit: int = 50) -> list[JobRecord]:
        """Up to ``limit`` failed jobs of ``queues``, read from their dead-letter queues and left there."""
        names = [(q, self.dead_name(q)) for q in queues]
        with self._translated():
            return await dead.read(self._channel(self._connection), names, limit, CALL)

    async def requeue_dead(self, queues: Sequence[str], job_ids: Sequence[str] | None = None) -> int:
        """Send failed jobs of ``queues`` (those of ``job_ids``, or all) to their queues, attempts reset."""

        async def publish(records: Sequence[JobRecord]) -> None:
            await self._declare(sorted({r.job.queue for r in records}))
            await self._publish(
                [("", self.queue_name(r.job.queue), job_message(r.job, 0, None, None)) for r in records]
            )

        names = [(q, self.dead_name(q)) for q in queues]
        with self._translated():
            return await dead.requeue_all(self._channel(self._connection), names, job_ids, publish, CALL)

    async def wait(self, queues: Sequence[str], timeout: float) -> None:
        """Return when a delivery for ``queues`` arrived since the last wait, or after ``timeout``."""
        queues = self._topics.widen(queues)
        await self._consume(queues)
        await self._inbox.wait(queues, timeout)

    @property
    def deliveries(self) -> int:
        """Deliveries this broker received, for diagnostics and tests."""
        return self._inbox.deliveries

    # -- settles and leases ------------------------------------------------------

    def _owned(self, job_id: str, token: str) -> Running | None:
        running = self._running.get(token)
        if running is None or running.job.id != job_id:
            return None
        if running.message.channel.is_closed:  # its tag died with the channel: RabbitMQ redelivers it
            del self._running[token]
            return None
        return running

    async def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
        """Acknowledge successes; publish retries, deferrals, releases and failures first, confirmed."""
        done: list[bool] = []
        sends: list[Send] = []
        settled: list[tuple[str, Running]] = []
        now = time.time()
        for o in outcomes:
            running = self._owned(o.job_id, o.token)
            done.append(running is not None)
            if running is None:
                continue
            del self._running[o.token]
            settled.append((o.token, running))
            job, attempt = running.job, running.attempt
            if o.kind is OutcomeKind.FAIL:
                sends.append(("", self.dead_name(running.queue), job_message(job, attempt, None, o.error)))
            elif o.kind is not OutcomeKind.COMPLETE:
                spent = attempt if o.kind is OutcomeKind.RETRY else attempt - 1
                due = o.run_at if o.kind is not OutcomeKind.RELEASE else None
                message = job_message(job, spent, due, o.error)
                sends.append((*self._route(running.queue, due, now), message))
        try:
            if sends:
                await self._publish(sends)
        except BaseException:
            self._running.update(settled)  # still held: the worker settles them again
            raise
        await asyncio.gather(*(ack(r.message) for _, r in settled))
        return done

    # -- events ------------------------------------------------------------------

    async def bind_handlers(self, handlers: Sequence[EventHandler]) -> None:
        """Declare each handler's queue (``<namespace>.events.<task>``) and bind it to the events exchange."""
        fresh = self._topics.fresh(handlers)
        if fresh:
            await self._declare([r.key for r in fresh])
            with self._translated():
                await self._topics.bind(self._channel(self._connection), fresh, self.queue_name)

    async def publish_event(
        self, event_id: str, topic: str, payload: bytes, headers: Sequence[tuple[str, str]] = ()
    ) -> bool:
        """One confirmed, mandatory message to ``<namespace>.events``; False when no queue takes its topic."""
        event = topics.message(event_id, topic, payload, headers)
        with self._translated():
            return await self._topics.publish(
                self._channel(self._connection), self._channel(self._publisher), topic, event
            )

    async def heartbeat(
        self, worker: WorkerInfo, leases: Sequence[tuple[str, str]], lease: float
    ) -> list[str]:
        """The jobs of ``leases`` this connection no longer holds (their deliveries died with a channel).

        The worker's concurrency raises the consumers' prefetch (see :meth:`_hold_for`).
        """
        await self._hold_for(worker.concurrency)
        return [job_id for job_id, token in leases if self._owned(job_id, token) is None]

    async def _hold_for(self, concurrency: int) -> None:
        # A running job's delivery stays unacknowledged: held to `prefetch` alone, a worker ran
        # that many jobs at most (64 of 200). It registers before it claims, so before consuming.
        if (wanted := min(65535, concurrency + self._prefetch)) > self._qos and self._consumer is not None:
            with self._translated():
                await self._consumer.set_qos(prefetch_count=wanted, timeout=CALL)  # per consumer
            self._qos = wanted

    async def recover(self, dead_after: float, expires_at: float | None = None) -> int:
        """Nothing to do: RabbitMQ delivers a dead consumer's jobs again by itself."""
        return 0

    async def prune(self) -> int:
        """Nothing to do: no job is kept after it is acknowledged."""
        return 0

    async def get(self, job_id: str) -> JobRecord | None:
        """Raises :class:`UnsupportedFeature`: no record of a job exists."""
        raise unsupported("look a job up")

    async def cancel(self, job_id: str, expires_at: float) -> bool:
        """Drop a job this broker holds (a claim past its expiry); any other raises UnsupportedFeature."""
        for token, running in list(self._running.items()):
            if running.job.id == job_id and self._owned(job_id, token) is not None:
                del self._running[token]
                await ack(running.message)
                return True
        raise unsupported("cancel a job by id")
