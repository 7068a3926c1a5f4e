"""RabbitMQ alone: events as a topic exchange, a durable queue per handler.

- **publish**: one persistent message, confirmed and ``mandatory``, to the
  namespace's topic exchange ``<namespace>.events`` with the topic as its
  routing key. A message returned because no queue is bound to its topic is
  nobody listening: no error, as on other brokers when no handler matches.
- **handlers**: each has a job queue of its own, ``<namespace>.events.<task
  name>`` (declared as every job queue is: quorum by default, a dead-letter
  queue, the delay routing), bound to the exchange with its pattern as a
  binding key (``_events.binding_key``). Binding is idempotent; a worker binds
  its app's handlers at start, a publisher its own before it publishes.
- **running**: a worker that claims from a handler's pigeon queue consumes the
  handler's queue too. A delivery there without ``x-pigeon-attempts`` is an
  event: it becomes the handler's job (id derived from the event's and the
  handler's, ``events.handler_job_id``) and runs under its delivery as any job;
  a retry is published back to the handler's queue as a job, a failure to its
  dead-letter queue.

The envelope (the body, JSON, ``application/json``)::

    {"id": "<32 hex>", "topic": "nfc.tag_read", "event": <the payload>, "published_at": <Unix s>}

with ``message_id`` the event id, ``type`` ``pigeon.event``, ``timestamp``
and persistent delivery. Any AMQP client may bind a queue of its own to the
exchange and read it, or publish such a message for pigeon's handlers
(``id`` and ``published_at`` may then be left out).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aio_pika
import msgspec
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage, AbstractRobustChannel, ExchangeType
from aiormq.exceptions import PublishError

from pigeon import codec
from pigeon.brokers.base import EventHandler
from pigeon.brokers.rabbitmq._connection import AGAIN, CALL, worth_again
from pigeon.brokers.rabbitmq._events import binding_key
from pigeon.brokers.rabbitmq._messages import send, side_channel
from pigeon.errors import BrokerError
from pigeon.events import handler_job_id
from pigeon.job import MALFORMED_TASK, Job, new_id

_NAME_BYTES = 255
"""The longest queue name RabbitMQ takes."""
_DEAD = ".dead"
EVENT_TYPE = "pigeon.event"
"""The ``type`` property of an event message."""


class Envelope(msgspec.Struct, frozen=True):
    """An event message's body."""

    topic: str
    event: msgspec.Raw
    id: str = ""
    published_at: float = 0.0


_DECODER = msgspec.json.Decoder(Envelope)


@dataclass(frozen=True, slots=True)
class Route:
    """A bound handler: its pigeon-side queue key (``events.<name>``) and its binding key."""

    key: str
    binding: str
    handler: EventHandler


def message(
    event_id: str, topic: str, payload: bytes, headers: Sequence[tuple[str, str]] = ()
) -> aio_pika.Message:
    """The persistent message of one event: its JSON envelope, the properties above, and ``headers``.

    ``headers`` (``traceparent``, ``tracestate``) become every handler's ``Job.headers``.
    """
    now = time.time()
    body = (
        b'{"id":' + codec.encode(event_id) + b',"topic":' + codec.encode(topic)
        + b',"event":' + payload + b',"published_at":' + codec.encode(now) + b"}"
    )  # fmt: skip
    return aio_pika.Message(
        body,
        message_id=event_id,
        type=EVENT_TYPE,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        timestamp=now,
        headers=dict(headers) or None,
    )


def job_of(route: Route, delivery: AbstractIncomingMessage) -> tuple[Job, str | None]:
    """The handler's job for an event delivery, or a stand-in and why it cannot be one."""
    event_id = delivery.message_id or new_id()
    try:
        envelope = _DECODER.decode(delivery.body)
        event_id = envelope.id or event_id
        job = route.handler.make(envelope.topic or delivery.routing_key or "", bytes(envelope.event))
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, ValueError, TypeError) as exc:
        job_id = handler_job_id(event_id, route.handler.name)
        stand_in = Job(
            id=job_id, task=MALFORMED_TASK, queue=route.handler.queue, payload=msgspec.Raw(b"null")
        )
        return stand_in, f"the event does not make a {route.handler.name} job: {exc}"
    published = envelope.published_at or job.enqueued_at
    carried = tuple(
        (k, v) for k, v in (delivery.headers or {}).items() if isinstance(v, str) and not k.startswith("x-")
    )
    job_id = handler_job_id(event_id, route.handler.name)
    return msgspec.structs.replace(job, id=job_id, enqueued_at=published, headers=carried), None


class Topics:
    """The namespace's events exchange and the handlers bound to it here."""

    def __init__(self, namespace: str) -> None:
        self.exchange = f"{namespace}.events"
        self._routes: dict[str, Route] = {}
        self._bound: set[tuple[str, str]] = set()
        self._declared = False

    def fresh(self, handlers: Sequence[EventHandler]) -> list[Route]:
        """The routes of ``handlers`` not bound here yet (a bad pattern raises ConfigurationError)."""
        routes = [Route(self.key(h.name), binding_key(h.pattern), h) for h in handlers]
        for r in routes:  # a handler bound before keeps its binding and takes this job factory
            if (r.key, r.binding) in self._bound:
                self._routes[r.key] = r
        return [r for r in routes if (r.key, r.binding) not in self._bound]

    def key(self, name: str) -> str:
        """The pigeon-side name of handler ``name``'s queue: ``events.<name>``, made a valid queue name.

        Characters a queue name cannot hold become ``_``, and the name is cut to fit
        255 bytes with its dead-letter suffix; either way a digest of the task name
        is appended, so two handlers never share a queue.
        """
        room = _NAME_BYTES - len(f"{self.exchange}.{_DEAD}".encode())
        safe = re.sub(r"[^A-Za-z0-9_.:-]", "_", name)
        if safe != name or len(safe) > room:
            digest = hashlib.blake2b(name.encode(), digest_size=4).hexdigest()
            safe = f"{safe[: room - len(digest) - 1]}.{digest}"
        return f"events.{safe}"

    def route(self, key: str) -> Route | None:
        """The handler whose queue is ``key``, if it is one."""
        return self._routes.get(key)

    def widen(self, queues: Sequence[str]) -> list[str]:
        """``queues`` and the handler queues whose jobs run on one of them."""
        extra = [k for k, r in self._routes.items() if r.handler.queue in queues and k not in queues]
        return [*queues, *extra] if extra else list(queues)

    def forget(self) -> list[str]:
        """Every handler queue bound here, forgotten (their queues are being deleted)."""
        keys = list(self._routes)
        self._routes.clear()
        self._bound.clear()
        self._declared = False
        return keys

    async def declare(self, connection: AbstractConnection) -> None:
        """Declare the exchange (durable topic, the same arguments every time), once per connection."""
        if not self._declared:
            async with side_channel(connection) as channel:
                await channel.declare_exchange(self.exchange, ExchangeType.TOPIC, durable=True, timeout=CALL)
            self._declared = True

    async def bind(
        self, connection: AbstractConnection, routes: Sequence[Route], name: Callable[[str], str]
    ) -> None:
        """Bind the handler queues of ``routes`` (declared by now; RabbitMQ names by ``name``)."""
        await self.declare(connection)
        async with side_channel(connection) as channel:
            for r in routes:
                queue = await channel.get_queue(name(r.key), ensure=False)
                await queue.bind(self.exchange, r.binding, timeout=CALL)
                self._routes[r.key] = r
                self._bound.add((r.key, r.binding))

    async def publish(
        self,
        connection: AbstractConnection,
        channel: AbstractRobustChannel,
        topic: str,
        event: aio_pika.Message,
    ) -> bool:
        """Publish ``event`` under routing key ``topic``, confirmed; False when it was returned unroutable.

        Raises:
            BrokerError: RabbitMQ nacked it, or the channel closed under it, four times over about 1.3 s.
        """
        await self.declare(connection)
        failed = await send(channel, [(self.exchange, topic, event)])
        for pause in AGAIN:
            if not failed or isinstance(failed[0][1], PublishError) or not worth_again(failed[0][1]):
                break
            await asyncio.sleep(pause)
            failed = await send(channel, [(self.exchange, topic, event)])
        if not failed:
            return True
        if isinstance(failed[0][1], PublishError):
            return False  # returned: no queue is bound to the topic
        raise BrokerError(f"RabbitMQ did not confirm event {event.message_id} ({failed[0][1]})") from failed[
            0
        ][1]
