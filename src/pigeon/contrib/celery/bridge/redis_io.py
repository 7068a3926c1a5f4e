"""Celery on Redis: kombu's queue lists in, Celery's Redis result backend out.

Kombu's Redis transport keeps a queue as a list (producers ``LPUSH``, consumers
pop from the right), one list per priority step: ``celery``, then
``celery\\x06\\x163``, ``celery\\x06\\x166``, ``celery\\x06\\x169`` (lower first).
The bridge moves a message atomically into its own processing list
(``LMOVE``), stores the job, then removes it there: a bridge killed in between
finds the message on restart and stores it again, harmlessly. Held and
rejected messages move to ``pigeon.bridge.held.<queue>`` and
``pigeon.bridge.rejected.<queue>``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

import msgspec
import redis.asyncio as aioredis

from pigeon import codec
from pigeon.contrib.celery.bridge.core import Bridge, Disposition
from pigeon.job import JobRecord, JobState

log = logging.getLogger("pigeon.celery.bridge")

SEP = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)
BATCH = 100
"""Messages moved, stored and acknowledged per round trip."""


def _lists(queue: str) -> list[str]:
    return [queue if p == 0 else f"{queue}{SEP}{p}" for p in PRIORITY_STEPS]


class RedisSource:
    """Consumes kombu's Redis queues for a :class:`Bridge`."""

    def __init__(self, client: aioredis.Redis, queues: list[str], block: int = 1) -> None:
        self.client: Any = client  # redis-py's stubs type replies as bytes | str
        self.queues = queues
        self.block = block

    async def declare(self) -> None:
        """Bind each queue to Celery's default exchange, as a Celery worker's start does.

        Kombu's Redis producers route by these bindings: a queue no consumer
        has declared yet receives nothing.
        """
        for q in self.queues:
            await self.client.sadd(f"_kombu.binding.{q}", f"{q}{SEP}{SEP}{q}")

    async def run(self, bridge: Bridge, stop: asyncio.Event) -> None:
        """Move messages to jobs until ``stop`` is set; first finish what a previous run left."""
        await self.declare()
        for q in self.queues:
            await self._recover(bridge, q)
        while not stop.is_set():
            moved = False
            for q in self.queues:
                raws = await self._take(q)
                if raws:
                    await self._settle(bridge, q, raws)
                    moved = True
            if not moved:  # idle: wait on the first queue (the others are looked at each second)
                q = self.queues[0]
                raw = await self.client.blmove(q, _processing(q), self.block, "RIGHT", "LEFT")
                if raw is not None:
                    await self._settle(bridge, q, [raw])

    async def _take(self, queue: str) -> list[bytes]:
        """Up to ``BATCH`` messages, the higher priorities first, each moved to the processing list."""
        lists = _lists(queue)
        async with self.client.pipeline(transaction=False) as pipe:
            for name in lists:
                pipe.llen(name)
            lengths = await pipe.execute()
        planned = 0
        async with self.client.pipeline(transaction=False) as pipe:
            for name, length in zip(lists, lengths, strict=True):
                count = min(length, BATCH - planned)
                for _ in range(count):
                    pipe.lmove(name, _processing(queue), "RIGHT", "LEFT")
                planned += count
            if not planned:
                return []
            return [raw for raw in await pipe.execute() if raw is not None]

    async def _recover(self, bridge: Bridge, queue: str) -> None:
        left = await self.client.lrange(_processing(queue), 0, -1)
        for start in range(0, len(left), BATCH):
            await self._settle(bridge, queue, left[start : start + BATCH])
        held = await self.client.lrange(_held(queue), 0, -1)
        for raw in held:  # held before: stored now if its task has been deployed
            if await bridge.handle(raw, released=True) is Disposition.STORED:
                await self.client.lrem(_held(queue), 1, raw)
        if held:
            log.info("retried %d held messages of %s", len(held), queue)

    async def _settle(self, bridge: Bridge, queue: str, raws: list[bytes]) -> None:
        dispositions = await bridge.handle_many(raws)
        async with self.client.pipeline(transaction=True) as pipe:
            for raw, disposition in zip(raws, dispositions, strict=True):
                if disposition is Disposition.HELD:
                    pipe.lpush(_held(queue), raw)
                elif disposition is Disposition.REJECTED:
                    pipe.lpush(_rejected(queue), raw)
                pipe.lrem(_processing(queue), 1, raw)
            await pipe.execute()


def _processing(queue: str) -> str:
    return f"pigeon.bridge.processing.{queue}"


def _held(queue: str) -> str:
    return f"pigeon.bridge.held.{queue}"


def _rejected(queue: str) -> str:
    return f"pigeon.bridge.rejected.{queue}"


class RedisPending:
    """Tracked jobs in a Redis hash (on the Celery broker's or result backend's Redis)."""

    def __init__(self, client: aioredis.Redis, queues: list[str]) -> None:
        self.client: Any = client
        # One hash for every bridge on this Redis, whatever its queues: a job tracked by a bridge
        # that stopped (or restarted with other -Q) is finished by whichever bridge runs next.
        # Finishing twice is harmless: results are set, chain steps have derived ids.
        self.key = "pigeon.bridge.pending"

    async def add_many(self, items: dict[str, bytes]) -> None:
        await self.client.hset(self.key, mapping=items)

    async def all(self) -> dict[str, bytes]:
        found: dict[bytes, bytes] = await self.client.hgetall(self.key)
        return {k.decode(): v for k, v in found.items()}

    async def remove(self, job_id: str) -> None:
        await self.client.hdel(self.key, job_id)


class RedisResults:
    """Celery's Redis result backend: ``celery-task-meta-<id>``, set then published."""

    def __init__(self, client: aioredis.Redis, expires: float = 24 * 3600) -> None:
        self.client = client
        self.expires = expires

    async def write(self, rec: JobRecord) -> None:
        key = f"celery-task-meta-{rec.job.id}"
        data = msgspec.json.encode(celery_meta(rec))
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.set(key, data, ex=int(self.expires))
            pipe.publish(key, data)
            await pipe.execute()

    async def aclose(self) -> None:
        await self.client.aclose()


def celery_meta(rec: JobRecord) -> dict[str, Any]:
    """A final job in the shape Celery's backends store: status, result, traceback, date_done."""
    status, result, tb = "SUCCESS", None, None
    if rec.state is JobState.SUCCEEDED:
        result = codec.decode_any(rec.result or b"null")
    elif rec.state is JobState.FAILED:
        status = "FAILURE"
        kind = rec.error.type if rec.error else "builtins.Exception"
        module, _, name = kind.rpartition(".")
        result = {
            "exc_type": name,
            "exc_message": [rec.error.message if rec.error else "failed"],
            "exc_module": module or "builtins",
        }
        tb = rec.error.traceback if rec.error else None
    else:
        status = "REVOKED"
        result = {
            "exc_type": "TaskRevokedError",
            "exc_message": ["cancelled"],
            "exc_module": "celery.exceptions",
        }
    done = datetime.fromtimestamp(rec.finished_at or time.time(), UTC).isoformat()
    return {
        "status": status,
        "result": result,
        "traceback": tb,
        "children": [],
        "date_done": done,
        "task_id": rec.job.id,
    }
