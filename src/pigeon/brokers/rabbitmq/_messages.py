"""RabbitMQ alone: a job as a message, and publishing messages with confirms."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustChannel,
)

from pigeon.brokers.rabbitmq import _topology as topo
from pigeon.brokers.rabbitmq._connection import AGAIN, SLICE, worth_again
from pigeon.errors import BrokerError, UnsupportedFeature
from pigeon.job import ErrorInfo, Job

_CALL = 10.0
ATTEMPTS = "x-pigeon-attempts"
"""Attempts the job spent before this message was published."""
DUE = "x-pigeon-due"
"""When a retried or deferred job is due, in Unix milliseconds (the envelope keeps its first ``run_at``).

An integer because AMQP table floats are 32 bits as pamqp writes them: a due time in
seconds came back rounded to 128 s, so a retry waited up to a minute past its time."""
ERROR = "x-pigeon-error"
"""A dead letter's last error, as JSON: ``type``, ``message``, ``traceback``."""

Send = tuple[str, str, aio_pika.Message]
"""An exchange, a routing key, a message."""


def message(job: Job, attempts: int, due: float | None, error: ErrorInfo | None) -> aio_pika.Message:
    """The persistent message that carries ``job``: its JSON envelope, and the headers above."""
    headers: dict[str, Any] = {ATTEMPTS: attempts}
    if due is not None:
        headers[DUE] = round(due * 1000)
    if error is not None:
        headers[ERROR] = json.dumps(
            {"type": error.type, "message": error.message, "traceback": error.traceback}
        )
    return aio_pika.Message(
        job.encode(),
        message_id=job.id,
        type=job.task,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        priority=topo.amqp_priority(job.priority),
        headers=headers,
    )


async def send(channel: AbstractRobustChannel, sends: Sequence[Send]) -> list[tuple[Send, Exception]]:
    """Publish with ``mandatory`` and await the confirms together; return the refused ones."""
    exchanges: dict[str, AbstractExchange] = {}
    for name in {e for e, _, _ in sends}:
        exchanges[name] = (
            channel.default_exchange if not name else await channel.get_exchange(name, ensure=False)
        )
    sent = await asyncio.gather(
        *(exchanges[e].publish(m, routing_key=k, mandatory=True, timeout=_CALL) for e, k, m in sends),
        return_exceptions=True,
    )
    failed: list[tuple[Send, Exception]] = []
    for one, result in zip(sends, sent, strict=True):
        if isinstance(result, Exception):
            failed.append((one, result))
        elif isinstance(result, BaseException):
            raise result  # a cancellation
    return failed


async def publish_confirmed(
    channel: AbstractRobustChannel,
    sends: Sequence[Send],
    place: str,
    translated: Callable[[], contextlib.AbstractContextManager[None]],
) -> None:
    """Publish messages and await their confirms together, sending again what may land if sent again.

    Raises:
        BrokerError: RabbitMQ nacked or returned one four times over about 1.3 s.
    """
    failed: list[tuple[Send, Exception]] = []
    with translated():
        for at in range(0, len(sends), SLICE):  # each publish waits for its confirm within CALL
            failed += await send(channel, sends[at : at + SLICE])
    for pause in AGAIN:
        if not failed or not all(worth_again(e) for _, e in failed):
            break
        await asyncio.sleep(pause)
        with translated():
            failed = await send(channel, [s for s, _ in failed])
    if failed:
        (_, key, message), first = failed[0]
        raise BrokerError(
            f"RabbitMQ ({place}) did not confirm {len(failed)} of {len(sends)} messages "
            f"({first}; first {message.message_id} to {key.rsplit('.', 2)[-1]})"
        ) from first


def due_of(headers: dict[str, Any], default: float | None) -> float | None:
    """The due time a message's :data:`DUE` header gives (Unix seconds), else ``default``."""
    due = headers.get(DUE)
    if isinstance(due, int) and not isinstance(due, bool):
        return due / 1000
    return due if isinstance(due, float) else default  # a float: seconds, as written before


def as_int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


async def ack(delivery: AbstractIncomingMessage) -> None:
    """Acknowledge; one whose channel died since is redelivered by RabbitMQ, which is no error here."""
    with contextlib.suppress(
        aiormq.exceptions.AMQPError, ConnectionError, OSError, TimeoutError, RuntimeError
    ):
        async with asyncio.timeout(_CALL):
            await delivery.ack()


@contextlib.asynccontextmanager
async def side_channel(connection: AbstractConnection) -> AsyncIterator[AbstractChannel]:
    """A channel of its own for declarations and deletions: a refused one closes only it.

    Closed within a bound, as it is used under a lock every claim may need.
    """
    async with asyncio.timeout(_CALL):
        channel = await connection.channel(publisher_confirms=False)
    try:
        yield channel
    finally:
        with contextlib.suppress(aiormq.exceptions.AMQPError, ConnectionError, OSError, TimeoutError):
            async with asyncio.timeout(_CALL):
                await channel.close()


NO_RECORD = (
    "RabbitMQ alone keeps no record of a job; give it a companion store for this: "
    "App('amqp://…', store='postgresql://…'), $PIGEON_STORE or OPTIONS['store'] in Django"
)


def unsupported(what: str) -> UnsupportedFeature:
    return UnsupportedFeature(f"the amqp broker without a store cannot {what}: {NO_RECORD}")


@dataclass(slots=True)
class Running:
    """A claimed delivery: unacknowledged while its job runs."""

    message: AbstractIncomingMessage
    job: Job
    attempt: int
    queue: str
    """The pigeon queue it was delivered from: where its retries and dead letter go (a handler's own)."""
