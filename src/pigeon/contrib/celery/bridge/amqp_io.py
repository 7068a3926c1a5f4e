"""Celery on RabbitMQ: its durable queues consumed with manual acknowledgements (aio-pika).

Celery declares each queue durable, bound to a direct exchange of the same name
(``celery`` by default). The bridge consumes with manual acks and acknowledges a
message only after its job is stored (or it is copied, with publisher confirms,
to ``pigeon.bridge.held.<queue>`` / ``pigeon.bridge.rejected.<queue>``). A
bridge that dies first leaves the message unacknowledged: RabbitMQ delivers it
again, and its job id makes the second store harmless.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue

from pigeon.contrib.celery.bridge.core import Bridge, Disposition

log = logging.getLogger("pigeon.celery.bridge")

PREFETCH = 64


class AmqpSource:
    """Consumes Celery's RabbitMQ queues for a :class:`Bridge`."""

    def __init__(self, url: str, queues: list[str]) -> None:
        self.url = url
        self.queues = queues
        self._failure: BaseException | None = None
        self._stop = asyncio.Event()

    async def run(self, bridge: Bridge, stop: asyncio.Event) -> None:
        """Move messages to jobs until ``stop`` is set; first retry held messages."""
        self._stop = stop
        connection = await aio_pika.connect_robust(self.url)
        try:
            channel = await connection.channel(publisher_confirms=True)
            await channel.set_qos(prefetch_count=PREFETCH)
            for name in self.queues:
                queue = await _declare(connection, channel, name)
                await self._retry_held(bridge, channel, name)
                await queue.consume(lambda m, q=name: self._settle(bridge, channel, q, m))  # type: ignore[misc, unused-ignore]  # typed only with the rabbitmq extra
            await stop.wait()
        finally:
            await connection.close()  # what was not acknowledged goes back to its queue
        if self._failure is not None:
            raise self._failure

    async def _settle(
        self, bridge: Bridge, channel: AbstractChannel, queue: str, m: AbstractIncomingMessage
    ) -> None:
        if self._failure is not None:
            return  # stopping: left unacknowledged, RabbitMQ delivers it again
        try:
            headers: dict[str, Any] = dict(m.headers or {})
            disposition = await bridge.handle_body(m.content_type, headers, m.body)
            if disposition is not Disposition.STORED:
                await _copy(channel, f"pigeon.bridge.{disposition}.{queue}", m)
        except Exception as exc:  # noqa: BLE001 - cannot store: stop, leaving the message unacknowledged
            log.error("cannot store message %s (%s): stopping; it stays in %s", m.message_id, exc, queue)
            self._failure = exc
            self._stop.set()
            return
        await m.ack()

    async def _retry_held(self, bridge: Bridge, channel: AbstractChannel, queue: str) -> None:
        held = await channel.declare_queue(f"pigeon.bridge.held.{queue}", durable=True)
        count = held.declaration_result.message_count or 0
        for _ in range(count):
            m = await held.get(no_ack=False, fail=False)
            if m is None:
                break
            disposition = await bridge.handle_body(
                m.content_type, dict(m.headers or {}), m.body, released=True
            )
            if disposition is Disposition.HELD:
                await _copy(channel, held.name, m)  # to the back of the line
            await m.ack()
        if count:
            log.info("retried %d held messages of %s", count, queue)


async def _declare(connection: AbstractConnection, channel: AbstractChannel, name: str) -> AbstractQueue:
    """Celery's queue as Celery declares it, or as it already is (its arguments untouched)."""
    try:
        probe = await connection.channel()  # a failed passive declare closes its channel
        await probe.declare_queue(name, passive=True)
        await probe.close()
        return await channel.declare_queue(name, passive=True)
    except aio_pika.exceptions.ChannelClosed:
        exchange = await channel.declare_exchange(name, aio_pika.ExchangeType.DIRECT, durable=True)
        queue = await channel.declare_queue(name, durable=True)
        await queue.bind(exchange, routing_key=name)
        return queue


async def _copy(channel: AbstractChannel, queue_name: str, m: AbstractIncomingMessage) -> None:
    await channel.declare_queue(queue_name, durable=True)
    copy = aio_pika.Message(
        m.body,
        headers=m.headers,
        content_type=m.content_type,
        content_encoding=m.content_encoding,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )
    await channel.default_exchange.publish(copy, routing_key=queue_name)
