"""The Redis broker's half of the inspection protocol (:mod:`pigeon.brokers.inspection`).

Redis has no query language: pages filtered by queue and state read the
``idx:{queue}:{state}`` sorted sets (scored by enqueue order); filters by task,
time or argument read enqueue-order ranges through ``find.lua``, which checks
task and arguments next to the data, one short range per call.
"""

from __future__ import annotations

import contextlib
import heapq
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis

from pigeon.brokers.inspection import JobFilter
from pigeon.job import JobRecord, JobState

_CHUNK = 1000
"""Ids per delete script call: long scripts block every other client of the server."""
_SCAN_SPAN = 20_000
"""Most enqueue positions one find script reads (a few milliseconds of the server's time)."""


class RedisInspection:
    """Mixed into :class:`~pigeon.brokers.redis.RedisBroker`, which supplies the plumbing below."""

    _prefix: str

    @property
    def _redis(self) -> aioredis.Redis:
        raise NotImplementedError

    def _translated(self) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

    async def _script(self, name: str, *args: Any, client: Any = None) -> Any:
        raise NotImplementedError

    async def _script_each(self, name: str, calls: Sequence[Sequence[Any]]) -> list[Any]:
        raise NotImplementedError

    async def _records(self, ids: Sequence[bytes | str]) -> list[JobRecord | None]:
        raise NotImplementedError

    async def _queues(self) -> list[str]:
        raise NotImplementedError

    async def _index_keys(self, where: JobFilter) -> list[str]:
        queues = [where.queue] if where.queue is not None else await self._queues()
        states = where.states or tuple(JobState)
        return [f"{self._prefix}idx:{q}:{s.value}" for q in queues for s in states]

    async def find_jobs(
        self, where: JobFilter, *, limit: int = 50, before: str | None = None
    ) -> list[JobRecord]:
        found: list[JobRecord] = []
        if limit <= 0:
            return found
        with self._translated():
            top: int | None = None
            if before is not None:
                seq = await self._redis.hget(f"{self._prefix}job:{before}", "seq")
                if seq is None:
                    return found
                top = int(seq)
            keys = await self._index_keys(where)
            if where.beyond_state:
                async with contextlib.aclosing(self._scan(where, keys, top)) as records:
                    async for record in records:
                        found.append(record)
                        if len(found) == limit:
                            break
                return found
            return await self._newest(where, keys, top, limit)

    async def _newest(
        self, where: JobFilter, keys: list[str], top: int | None, limit: int
    ) -> list[JobRecord]:
        """Pages filtered by queue and state only: the indexes are the answer."""
        found: list[JobRecord] = []
        high = "+inf" if top is None else f"({top}"
        window = limit
        while True:
            # The first `window` of the indexes' merge are the newest `window` jobs below `high`.
            pipe = self._redis.pipeline(transaction=False)
            for key in keys:
                pipe.zrevrangebyscore(key, high, "-inf", start=0, num=window, withscores=True)
            heads = await pipe.execute()
            merged = list(heapq.merge(*heads, key=lambda pair: -pair[1]))[:window]
            for r in await self._records([job_id for job_id, _ in merged]):
                if r is not None and where.matches(r):
                    found.append(r)
                    if len(found) == limit:
                        return found
            if len(merged) < window:
                return found
            high = f"({int(merged[-1][1])}"
            window = min(window * 4, 5000)

    async def _scan(self, where: JobFilter, keys: list[str], top: int | None) -> AsyncGenerator[JobRecord]:
        """Every job matching ``where`` below ``top``, newest first (see :meth:`_scan_ids`)."""
        async for ids in self._scan_ids(where, keys, top):
            for record in await self._records(ids):
                if record is not None and where.matches(record):
                    yield record

    async def _scan_ids(
        self, where: JobFilter, keys: list[str], top: int | None
    ) -> AsyncGenerator[list[bytes]]:
        """The ids of jobs whose task and arguments match, below ``top``, newest first, in batches.

        The enqueue order is read in ranges; a script next to the data checks task and
        arguments, so only matches come back, and each call reads one range of one index,
        so no call holds the server for long. The enqueue-time range is left to the caller.
        """
        async for replies in self._ranges(where, keys, top, "ids"):
            found = [
                (float(seq), job_id)
                for reply in replies
                for job_id, seq in zip(reply[::2], reply[1::2], strict=True)
            ]
            if found:
                yield [job_id for _, job_id in sorted(found, reverse=True)]

    async def _ranges(
        self, where: JobFilter, keys: list[str], top: int | None, mode: str
    ) -> AsyncGenerator[list[Any]]:
        """find.lua's replies for each enqueue-order range below ``top``, newest range first."""
        last = int(await self._redis.get(f"{self._prefix}seq") or 0)
        high = last + 1 if top is None else top
        floor = 0 if where.newest is None else last - where.newest + 1  # the oldest position looked at
        needles = [n for pair in where.needles() for n in pair]
        task = b"" if where.task is None else msgspec.json.encode(where.task)  # as the envelope has it
        span = 1000
        prefix = len(self._prefix)
        while True:
            # Skip to the newest entry left in any of the indexes (a state's jobs may all be old).
            pipe = self._redis.pipeline(transaction=False)
            for key in keys:
                pipe.zrevrangebyscore(key, f"({high}", "-inf", start=0, num=1, withscores=True)
            heads = [head[0][1] for head in await pipe.execute() if head]
            if not heads:
                return
            high = int(max(heads)) + 1
            if high <= floor:
                return
            low = max(floor, high - span)
            calls = [(key[prefix:], f"({high}", low, task, mode, *needles) for key in keys]
            yield await self._script_each("find", calls)
            high = low
            span = min(span * 2, _SCAN_SPAN)

    async def count_jobs(self, where: JobFilter) -> int:
        with self._translated():
            keys = await self._index_keys(where)
            if not where.beyond_state:
                pipe = self._redis.pipeline(transaction=False)
                for key in keys:
                    pipe.zcard(key)
                return int(sum(await pipe.execute()))
            by_task_only = (where.since, where.until, where.newest, where.args) == (None, None, None, ())
            if where.task is not None and by_task_only:
                tallied = await self._tallied(where, keys)
                if tallied is not None:
                    return tallied
            # No index by time or argument: the matching indexes are read through.
            if where.since is None and where.until is None:  # the script's answer is the count
                return sum([sum(map(int, r)) async for r in self._ranges(where, keys, None, "count")])
            return sum([1 async for _ in self._scan(where, keys, None)])

    async def _tallied(self, where: JobFilter, keys: list[str]) -> int | None:
        """Jobs of one task by the tallies kept on every change of state; None if some predate them."""
        if await self._redis.get(f"{self._prefix}tallied") not in (b"1", "1"):
            return None
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:  # idx:<queue>:<state> → tally:<queue>, field <state>|<task>
            queue, _, state = key[len(self._prefix) + 4 :].rpartition(":")
            pipe.hget(f"{self._prefix}tally:{queue}", f"{state}|{where.task}")
        return sum(int(n or 0) for n in await pipe.execute())

    async def requeue_jobs(self, job_ids: Sequence[str]) -> int:
        total = 0
        with self._translated():
            for i in range(0, len(job_ids), _CHUNK):
                total += int(await self._script("requeue", repr(time.time()), *job_ids[i : i + _CHUNK]))
        return total

    async def cancel_jobs(self, job_ids: Sequence[str], expires_at: float) -> int:
        total = 0
        with self._translated():
            for i in range(0, len(job_ids), _CHUNK):
                chunk = job_ids[i : i + _CHUNK]
                total += int(await self._script("cancel", repr(time.time()), repr(expires_at), *chunk))
        return total

    async def delete_jobs(self, job_ids: Sequence[str]) -> int:
        total = 0
        with self._translated():
            for i in range(0, len(job_ids), _CHUNK):
                total += int(await self._script("delete", *job_ids[i : i + _CHUNK]))
        return total

    async def oldest_ready(self) -> dict[str, float]:
        with self._translated():
            queues = await self._queues()
            pipe = self._redis.pipeline(transaction=False)
            for q in queues:
                pipe.zrange(f"{self._prefix}idx:{q}:queued", 0, 0)
            heads = await pipe.execute()
            found = [(q, head[0]) for q, head in zip(queues, heads, strict=True) if head]
            records = await self._records([job_id for _, job_id in found])
        return {q: r.job.enqueued_at for (q, _), r in zip(found, records, strict=True) if r is not None}

    async def pause_queue(self, queue: str) -> None:
        with self._translated():
            await self._redis.sadd(f"{self._prefix}paused", queue)

    async def resume_queue(self, queue: str) -> None:
        with self._translated():
            await self._redis.srem(f"{self._prefix}paused", queue)
            # Idle workers wait on the wake channel: a resumed queue with jobs wakes them.
            # (Two calls: a cluster client refuses PUBLISH in a pipeline.)
            await self._redis.publish(f"{self._prefix}wake:{queue}", "")

    async def paused_queues(self) -> list[str]:
        with self._translated():
            members = await self._redis.smembers(f"{self._prefix}paused")
        return sorted(m.decode() if isinstance(m, bytes) else m for m in members)
