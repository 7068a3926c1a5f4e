"""Events: a topic and an immutable payload, fanned out to every handler as its own job.

Each handler is an ordinary task, so handlers run concurrently, retry
independently and survive worker crashes like any job. The payload is encoded
once at publish time; each handler decodes its own frozen copy, so one handler
cannot change what another sees.

Topic patterns are dot-separated: ``*`` matches one segment, ``**`` any number
(``nfc.*`` matches ``nfc.tag_read``; ``**`` matches everything).

A broker that routes events itself (:class:`~pigeon.brokers.base.RoutingEvents`:
RabbitMQ alone's topic exchange) takes a publish as one message instead, and
each handler's job is made where it is received, under an id derived from the
event's and the handler's (:func:`handler_job_id`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from pigeon import codec
from pigeon.brokers.base import EventHandler
from pigeon.client import Client
from pigeon.job import Job, new_id
from pigeon.seam import InstrumentedBroker
from pigeon.task import Task

log = logging.getLogger("pigeon.events")

_TOPIC = re.compile(r"^[\w-]+(\.[\w-]+)*$")

UNROUTED = "pigeon.unrouted"
"""The queue (and task name) that records events published with no handler."""
_NEVER = 32503680000.0  # year 3000: the record is cancelled at once and never runs


@functools.cache
def pattern_regex(pattern: str) -> re.Pattern[str]:
    """The regular expression a topic pattern stands for."""
    parts = []
    for segment in pattern.split("."):
        if segment == "**":
            parts.append(r"[\w.-]*")
        elif segment == "*":
            parts.append(r"[\w-]+")
        elif _TOPIC.match(segment):
            parts.append(re.escape(segment))
        else:
            raise ValueError(f"bad topic pattern {pattern!r}: segments are words, '*' or '**'")
    return re.compile(r"\.".join(parts).replace(r"[\w.-]*\.", r"(?:[\w-]+\.)*") + "$")


def check_topic(topic: str) -> None:
    if not _TOPIC.match(topic):
        raise ValueError(f"bad topic {topic!r}: dot-separated words, e.g. 'nfc.tag_read'")


def check_immutable(payload: Any) -> None:
    """Refuse payloads that are live mutable objects rather than data.

    Plain data (dicts, lists, numbers, strings) is encoded at publish time, so
    handlers get a snapshot; a mutable object (an ORM instance, a non-frozen
    dataclass or Struct) is refused so nobody mistakes it for a shared reference.
    """
    if isinstance(payload, msgspec.Struct):
        if not payload.__struct_config__.frozen:
            raise TypeError(f"publish a frozen Struct: {type(payload).__qualname__} is not frozen=True")
    elif dataclasses.is_dataclass(payload) and not isinstance(payload, type):
        if not payload.__dataclass_params__.frozen:  # type: ignore[attr-defined]
            raise TypeError(f"publish a frozen dataclass: {type(payload).__qualname__} is not frozen=True")
    elif not isinstance(payload, str | int | float | bool | bytes | Mapping | Sequence | None) and hasattr(
        payload, "__dict__"
    ):
        raise TypeError(
            f"cannot publish a live {type(payload).__name__} object: publish a frozen "
            "msgspec Struct, a frozen dataclass or plain data (a snapshot)"
        )


def fan_out(handlers: Sequence[tuple[str, Task[Any, Any]]], topic: str, payload: Any) -> list[Job]:
    """One job per handler whose pattern matches ``topic``; the payload encoded once.

    Raises:
        TypeError: the payload is mutable, cannot be encoded, or does not fit a handler.
        ValueError: the topic is malformed.
    """
    check_topic(topic)
    check_immutable(payload)
    body = codec.encode_sendable(payload, f"the payload of {topic!r}")
    jobs = []
    for pattern, handler in handlers:
        if pattern_regex(pattern).match(topic):
            jobs.append(handler.make_event_job(topic, body))
    if not jobs:
        log.info("event %s has no handlers", topic)
        payload = b'{"topic":' + codec.encode(topic) + b',"event":' + body + b"}"
        record = Job(
            id=new_id(),
            task=UNROUTED,
            queue=UNROUTED,
            payload=msgspec.Raw(payload),
            run_at=_NEVER,
            enqueued_at=time.time(),
        )
        return [record]
    return jobs


def handler_job_id(event_id: str, handler: str) -> str:
    """The id of ``handler``'s job for event ``event_id``: the event's time, then a digest of both."""
    digest = hashlib.blake2b(f"{event_id}/{handler}".encode(), digest_size=10).hexdigest()
    return event_id[:12] + digest


def event_handlers(handlers: Sequence[tuple[str, Task[Any, Any]]]) -> list[EventHandler]:
    """The handlers as a broker that routes events sees them."""
    return [
        EventHandler(pattern, t.name, t.send_defaults.queue or t.defaults.queue, t.make_event_job)
        for pattern, t in handlers
    ]


def is_unrouted(jobs: Sequence[Job]) -> bool:
    """Whether ``fan_out`` found no handler (its one job only records the event)."""
    return len(jobs) == 1 and jobs[0].task == UNROUTED


async def publish(
    client: Client, handlers: Sequence[tuple[str, Task[Any, Any]]], topic: str, payload: Any
) -> list[str]:
    """Enqueue one job per matching handler in one round trip; return their ids.

    An event nobody handles is kept, cancelled, in the ``pigeon.unrouted``
    queue for ``failed_ttl`` seconds (so ``pigeon status`` shows it), and no id
    is returned; a broker that keeps no record of a job (RabbitMQ alone) only logs it.
    A broker that routes events itself gets one message (see :func:`_route`).

    Raises:
        TypeError: the payload is mutable, cannot be encoded, or does not fit a handler.
        ValueError: the topic is malformed.
    """
    broker = await client.connection()
    if broker.routing_events is not None:
        return await _route(client, broker, handlers, topic, payload)
    jobs = fan_out(handlers, topic, payload)
    if is_unrouted(jobs):
        if not broker.capabilities.get_result:  # a broker that keeps no record (RabbitMQ alone)
            return []
        await client.aenqueue(jobs)
        await broker.cancel(jobs[0].id, time.time() + client.failed_ttl)
        return []
    return await client.aenqueue(jobs)


async def _route(
    client: Client,
    broker: InstrumentedBroker,
    handlers: Sequence[tuple[str, Task[Any, Any]]],
    topic: str,
    payload: Any,
) -> list[str]:
    """Publish one message for the broker to route; return this process's matching handlers' job ids.

    This process's handlers are bound first (once per broker), so an event
    published before any worker started waits in their queues. Handlers that
    other processes bound receive it too; their jobs' ids are not known here.
    """
    check_topic(topic)
    check_immutable(payload)
    body = codec.encode_sendable(payload, f"the payload of {topic!r}")
    matching = [(p, t) for p, t in handlers if pattern_regex(p).match(topic)]
    # A payload that does not fit a handler here, or is over max_payload, fails as with fan_out,
    # before anything is sent. The enqueue hooks (a producer span, the sent-jobs counter) see
    # this process's handlers' jobs, or the event itself; what they add rides to every handler.
    jobs = [t.make_event_job(topic, body) for _, t in matching]
    event_id = new_id()
    sent = client.before_enqueue(jobs or [Job(id=event_id, task=topic, payload=msgspec.Raw(body))])
    await broker.bind_handlers(event_handlers(handlers))
    if not await broker.publish_event(event_id, topic, body, sent[0].headers):
        log.info("event %s has no handlers", topic)
        return []
    return [handler_job_id(event_id, t.name) for _, t in matching]
