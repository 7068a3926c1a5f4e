"""RabbitMQ alone: the queues, the dead-letter queues and the plugin-free delay topology.

**Delays** are a binary decomposition of the delay over dead-lettering TTL
queues (the scheme NServiceBus and Celery 5.5 use; never the
``x-delayed-message`` plugin, which is not replicated and does not run on
Khepri, and never a delivery held unacknowledged). Level ``L`` is a topic
exchange and a classic queue whose messages expire after ``2**L`` milliseconds. A
delayed message is published to the top level's exchange with a routing key
of one word per level, highest first (``1`` where the delay has that bit),
then the destination queue's name::

    pigeon.delay.L  --bit L is 1-->  queue pigeon.delay.L (TTL 2**L ms) --dead-letters--+
         |                                                                              v
         +---------bit L is 0 (an exchange-to-exchange binding)--------->  pigeon.delay.(L-1)

Level 0 dead-letters (and routes its 0 bits) to ``pigeon.delay.deliver``,
which routes on the destination's name to the job's queue. The topology is
shared by every namespace and queue type on a virtual host and declared with the same
arguments every time. A delay longer than the levels cover (about 24 days)
arrives early and the claim that meets it sends it round again; so does one
that arrives a little early from rounding.

**Dead letters**: every job queue ``<namespace>.<queue>`` has a dead-letter
queue ``<namespace>.<queue>.dead``. A job that failed for good is published
there with its last error in the ``x-pigeon-error`` header; a quorum queue
dead-letters there by itself a delivery returned ``delivery_limit`` times
(``x-delivery-limit``, the poison-message guard), at least once
(``x-dead-letter-strategy``).
"""

from __future__ import annotations

from typing import Any

from aio_pika.abc import AbstractChannel, ExchangeType

LEVELS = 31
"""Delay levels: 2**0 … 2**30 ms, so one pass covers about 24.8 days."""
MAX_DELAY_MS = 2**LEVELS - 1
MAX_PRIORITY = 10
"""``x-max-priority`` of a classic queue: job priorities -5 … 5 map onto 0 … 10, beyond that clamp."""


DELAYS = "pigeon.delay"
"""The delay levels' names: ``pigeon.delay.<level>``, and ``pigeon.delay.deliver``."""
TOP = f"{DELAYS}.{LEVELS - 1}"
"""The exchange a delayed message is published to."""


def delay_key(delay_ms: int, destination: str) -> str:
    """The routing key of a message delayed ``delay_ms`` (capped) on its way to ``destination``."""
    ms = max(0, min(delay_ms, MAX_DELAY_MS))
    bits = ".".join("1" if ms >> level & 1 else "0" for level in range(LEVELS - 1, -1, -1))
    return f"{bits}.{destination}"


def amqp_priority(priority: int) -> int:
    """A job's priority (-100 … 100) as an AMQP priority (0 … ``MAX_PRIORITY``)."""
    return max(0, min(MAX_PRIORITY, priority + MAX_PRIORITY // 2))


def queue_arguments(queue_type: str, dead: str, delivery_limit: int) -> dict[str, Any]:
    """The arguments of a job queue, the same on every declaration."""
    args: dict[str, Any] = {
        "x-queue-type": queue_type,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": dead,
    }
    if queue_type == "quorum":
        # Quorum queues have no priorities before 4.0 (and 4.x has two levels, undeclared).
        args |= {
            "x-delivery-limit": delivery_limit,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
    else:
        args["x-max-priority"] = MAX_PRIORITY
    return args


async def declare_delays(channel: AbstractChannel, timeout: float) -> None:
    """Declare the delay levels and the delivery exchange (idempotent).

    The levels are classic queues whatever the job queues are, as first declared
    (a classic queue cannot be declared again as quorum). A quorum level's TTL is on
    time on 3.10 too (``benchmarks/rabbitmq_delay_ttl.py``: a median 21-31 ms late,
    classic 15 ms); the 21 s once seen was the due time's rounding, since fixed.
    """
    prefix = DELAYS
    deliver = await channel.declare_exchange(
        f"{prefix}.deliver", ExchangeType.TOPIC, durable=True, timeout=timeout
    )
    below = deliver
    for level in range(LEVELS):
        exchange = await channel.declare_exchange(
            f"{prefix}.{level}", ExchangeType.TOPIC, durable=True, timeout=timeout
        )
        args: dict[str, Any] = {
            "x-queue-type": "classic",
            "x-message-ttl": 2**level,
            "x-dead-letter-exchange": below.name,
        }
        queue = await channel.declare_queue(
            f"{prefix}.{level}", durable=True, arguments=args, timeout=timeout
        )
        skip = "*." * (LEVELS - 1 - level)
        await queue.bind(exchange, f"{skip}1.#", timeout=timeout)
        await below.bind(exchange, f"{skip}0.#", timeout=timeout)
        below = exchange


async def declare_queue(
    channel: AbstractChannel, name: str, dead: str, queue_type: str, delivery_limit: int, timeout: float
) -> None:
    """Declare a job queue and its dead-letter queue, and route delayed messages for it."""
    await channel.declare_queue(dead, durable=True, arguments={"x-queue-type": queue_type}, timeout=timeout)
    args = queue_arguments(queue_type, dead, delivery_limit)
    await channel.declare_queue(name, durable=True, arguments=args, timeout=timeout)
    await bind_destination(channel, name, timeout)


async def bind_destination(channel: AbstractChannel, queue: str, timeout: float) -> None:
    """Route delayed messages for ``queue`` from the delivery exchange to it."""
    source = f"{DELAYS}.deliver"
    queue_obj = await channel.get_queue(queue, ensure=False)
    await queue_obj.bind(source, "*." * LEVELS + queue, timeout=timeout)
