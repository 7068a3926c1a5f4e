"""RabbitMQ alone: reading and requeueing dead letters, the failed jobs no store records.

A dead letter is the job's message in ``<namespace>.<queue>.dead`` with its
last error in ``x-pigeon-error``. Reading one is ``basic.get`` without an
acknowledgement on a channel of its own; closing the channel hands back every
message it did not acknowledge, so a reader that dies mid-way loses nothing.
Requeueing publishes the job to its queue with its attempts reset, confirmed,
and only then acknowledges the dead letter: a requeue that fails half-way
leaves the job dead, or (at worst) queued and still dead, never gone.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence

import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from pigeon.brokers.rabbitmq._messages import ATTEMPTS, ERROR, as_int, side_channel
from pigeon.job import ErrorInfo, JobRecord, JobState, decode_stored

PAGE = 500
"""Dead letters read per ``basic.get`` run when requeueing."""

Fetched = tuple[str, AbstractIncomingMessage]
"""A pigeon queue's name and one of its dead letters, held unacknowledged."""


async def fetch(
    channel: AbstractChannel, dead_names: Sequence[tuple[str, str]], limit: int, timeout: float
) -> list[Fetched]:
    """Up to ``limit`` dead letters of the queues named (pigeon name, dead-letter queue), in queue order.

    Every queue named must exist (see :func:`existing`).
    """
    got: list[Fetched] = []
    for queue, dead in dead_names:
        if len(got) >= limit:
            break
        source = await channel.get_queue(dead, ensure=False)
        while len(got) < limit:
            message = await source.get(no_ack=False, fail=False, timeout=timeout)
            if message is None:
                break
            got.append((queue, message))
    return got


async def existing(
    connection: AbstractConnection, dead_names: Sequence[tuple[str, str]], timeout: float
) -> list[tuple[str, str]]:
    """The dead-letter queues of ``dead_names`` that exist (one of a queue nothing died in may not)."""
    return [(q, dead) for q, dead in dead_names if await _exists(connection, dead, timeout)]


async def read(
    connection: AbstractConnection, dead_names: Sequence[tuple[str, str]], limit: int, timeout: float
) -> list[JobRecord]:
    """Up to ``limit`` dead letters of the queues named, as FAILED jobs; closing hands them all back."""
    names = await existing(connection, dead_names, timeout)
    async with side_channel(connection) as channel:
        return [record(m) for _, m in await fetch(channel, names, limit, timeout)]


async def _exists(connection: AbstractConnection, name: str, timeout: float) -> bool:
    # A passive declaration of a missing queue closes the channel it was made on: ask on another.
    async with side_channel(connection) as probe:
        try:
            await probe.declare_queue(name, passive=True, timeout=timeout)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return False
    return True


def record(message: AbstractIncomingMessage) -> JobRecord:
    """A dead letter as a FAILED job: its envelope, attempts and last error."""
    job, malformed = decode_stored(message.message_id or "", message.body)
    headers = message.headers or {}
    error = None
    raw_error = headers.get(ERROR)
    if isinstance(raw_error, str | bytes):
        try:
            fields = json.loads(raw_error)
            error = ErrorInfo(str(fields["type"]), str(fields["message"]), str(fields.get("traceback") or ""))
        except (ValueError, KeyError, TypeError):
            error = ErrorInfo("pigeon.UnreadableError", repr(raw_error)[:500])
    elif headers.get("x-death") is not None:
        # Dead-lettered by RabbitMQ itself: the quorum queue's delivery limit was reached.
        error = ErrorInfo("pigeon.DeliveryLimit", "RabbitMQ dead-lettered it after its delivery limit")
    stamp = message.timestamp.timestamp() if message.timestamp is not None else None
    return JobRecord(
        job=job,
        state=JobState.FAILED,
        attempts=as_int(headers.get(ATTEMPTS)),
        error=error,
        errors=(error,) if error is not None else (),
        finished_at=stamp,
        raw=message.body if malformed is not None else None,
    )


async def requeue(
    fetched: Sequence[Fetched],
    wanted: Callable[[JobRecord], bool],
    publish: Callable[[Sequence[JobRecord]], Awaitable[None]],
    timeout: float,
) -> int:
    """Publish the wanted dead letters' jobs again, then acknowledge them; return how many."""
    chosen = [(message, r) for _, message in fetched if wanted(r := record(message)) and r.raw is None]
    if not chosen:
        return 0
    await publish([r for _, r in chosen])  # raises before any dead letter is acknowledged
    async with asyncio.timeout(timeout):
        for message, _ in chosen:
            await message.ack()
    return len(chosen)


async def requeue_all(
    connection: AbstractConnection,
    dead_names: Sequence[tuple[str, str]],
    job_ids: Sequence[str] | None,
    publish: Callable[[Sequence[JobRecord]], Awaitable[None]],
    timeout: float,
) -> int:
    """Requeue the dead letters of ``job_ids`` (or all) from the queues named, a page at a time."""
    wanted = None if job_ids is None else set(job_ids)
    names = await existing(connection, dead_names, timeout)
    done = 0
    async with side_channel(connection) as channel:
        while wanted is None or done < len(wanted):
            # Letters not wanted stay unacknowledged on this channel until it closes, so each
            # page reads on past them; closing the channel hands them back to their queue.
            page = await fetch(channel, names, PAGE, timeout)
            done += await requeue(page, lambda r: wanted is None or r.job.id in wanted, publish, timeout)
            if len(page) < PAGE:
                break
    return done
