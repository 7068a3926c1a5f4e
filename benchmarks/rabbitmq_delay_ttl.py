"""How late RabbitMQ's message TTL dead-letters, on quorum and on classic queues.

A standalone measurement behind the choice of classic queues for RabbitMQ alone's delay levels
(``src/pigeon/brokers/rabbitmq/_topology.py``). It declares a copy of that topology under other
names (``ttlprobe.<run>.<type>.L``, levels 0 … 12, so up to 8.2 s), publishes messages delayed
0.05 … 4 s through it (one every 40 ms on average), and times each one's arrival in a destination
queue against its due time. Everything it declared is deleted at the end.

    PIGEON_TEST_RABBITMQ_URL=amqp://… .venv/bin/python -m benchmarks.rabbitmq_delay_ttl [N]
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import sys
import time
import uuid
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, ExchangeType

LEVELS = 13


def key(delay_ms: int, destination: str) -> str:
    bits = ".".join("1" if delay_ms >> level & 1 else "0" for level in range(LEVELS - 1, -1, -1))
    return f"{bits}.{destination}"


async def declare(channel: AbstractChannel, prefix: str, queue_type: str, destination: str) -> list[str]:
    """The delay levels as _topology.py declares them, of ``queue_type``; the queues' names."""
    deliver = await channel.declare_exchange(f"{prefix}.deliver", ExchangeType.TOPIC, auto_delete=False)
    below = deliver
    names = []
    for level in range(LEVELS):
        exchange = await channel.declare_exchange(f"{prefix}.{level}", ExchangeType.TOPIC)
        args: dict[str, Any] = {
            "x-queue-type": queue_type,
            "x-message-ttl": 2**level,
            "x-dead-letter-exchange": below.name,
        }
        queue = await channel.declare_queue(f"{prefix}.{level}", durable=True, arguments=args)
        names.append(queue.name)
        skip = "*." * (LEVELS - 1 - level)
        await queue.bind(exchange, f"{skip}1.#")
        await below.bind(exchange, f"{skip}0.#")
        below = exchange
    out = await channel.declare_queue(destination, durable=True, arguments={"x-queue-type": "classic"})
    await out.bind(deliver, "*." * LEVELS + destination)
    return [*names, destination]


async def measure(url: str, queue_type: str, n: int) -> list[tuple[float, float]]:
    """``n`` delays (seconds) and how late each arrived (seconds)."""
    prefix = f"ttlprobe.{uuid.uuid4().hex[:8]}.{queue_type}"
    destination = f"{prefix}.out"
    rng = random.Random(13)
    delays = [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 2.0, 4.0]
    delays += [round(rng.uniform(0.05, 4.0), 3) for _ in range(n - len(delays))]
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        names = await declare(channel, prefix, queue_type, destination)
        lateness: dict[str, tuple[float, float]] = {}
        done = asyncio.Event()

        async def arrived(message: AbstractIncomingMessage) -> None:
            due = float(message.headers["due"])  # type: ignore[arg-type]
            lateness[str(message.message_id)] = (float(message.headers["delay"]), time.time() - due)  # type: ignore[arg-type]
            await message.ack()
            if len(lateness) == len(delays):
                done.set()

        out = await channel.get_queue(destination)
        tag = await out.consume(arrived)
        top = await channel.get_exchange(f"{prefix}.{LEVELS - 1}")
        for i, delay in enumerate(delays):
            ms = round(delay * 1000)
            headers = {"due": str(time.time() + ms / 1000), "delay": str(delay)}
            body = aio_pika.Message(b"x", message_id=str(i), headers=headers, delivery_mode=2)
            await top.publish(body, key(ms, destination))
            await asyncio.sleep(rng.uniform(0, 0.08))  # spread out, as retries arrive, not one burst
        try:
            await asyncio.wait_for(done.wait(), timeout=max(delays) + 120)
        except TimeoutError:
            print(f"{queue_type}: {len(delays) - len(lateness)} of {len(delays)} never arrived in 120 s")
        await out.cancel(tag)
        for name in names:
            await channel.queue_delete(name)
        for level in range(LEVELS):
            await channel.exchange_delete(f"{prefix}.{level}")
        await channel.exchange_delete(f"{prefix}.deliver")
        return list(lateness.values())
    finally:
        await connection.close()


def report(queue_type: str, rows: list[tuple[float, float]]) -> None:
    late = sorted(x for _, x in rows)
    if not late:
        return
    p99 = late[min(len(late) - 1, round(0.99 * (len(late) - 1)))]
    print(
        f"{queue_type:8} n={len(late)}  late by: median {statistics.median(late) * 1000:.0f} ms, "
        f"p99 {p99 * 1000:.0f} ms, max {late[-1] * 1000:.0f} ms, min {late[0] * 1000:.0f} ms"
    )
    worst = sorted(rows, key=lambda r: -r[1])[:5]
    print("    the latest: " + ", ".join(f"{d:.3f} s delay {x * 1000:.0f} ms late" for d, x in worst))


async def main() -> None:
    url = os.environ["PIGEON_TEST_RABBITMQ_URL"]
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    for queue_type in ("quorum", "classic"):
        report(queue_type, await measure(url, queue_type, n))


if __name__ == "__main__":
    asyncio.run(main())
