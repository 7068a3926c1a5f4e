"""Flow-control primitives of the broker contract: concurrency limits, deferral, progress,
rate-limit buckets, and idempotent enqueue by id."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import msgspec

from pigeon.job import JobState, Outcome, OutcomeKind
from pigeon.seam import InstrumentedBroker as Broker  # every broker, behind the seam
from tests.conformance.test_broker import complete
from tests.helpers import eventually, make_job

Factory = Callable[[], Awaitable[Broker]]
Q = ("default",)


def limited(key: str, limit: int, **kw: object) -> object:
    return msgspec.structs.replace(make_job(**kw), limit_key=key, limit=limit)  # type: ignore[arg-type]


async def test_concurrency_limit_across_claims(broker_factory: Factory) -> None:
    a, b = await broker_factory(), await broker_factory()
    capped = [limited("img", 2) for _ in range(5)]
    free = [make_job() for _ in range(3)]
    await a.enqueue([*capped, *free])  # type: ignore[list-item]
    first = await a.claim("w1", Q, 10, 30)
    assert sorted(c.job.id for c in first) == sorted([capped[0].id, capped[1].id] + [j.id for j in free])  # type: ignore[attr-defined]
    assert await b.claim("w2", Q, 10, 30) == []  # at the limit: the other three wait, queued
    assert (await b.get(capped[2].id)).state is JobState.QUEUED  # type: ignore[attr-defined, union-attr]
    done = next(c for c in first if c.job.id == capped[0].id)  # type: ignore[attr-defined]
    await a.settle([complete(done.job.id, done.token)])
    (next_one,) = await b.claim("w2", Q, 10, 30)
    assert next_one.job.id == capped[2].id  # type: ignore[attr-defined]
    assert await b.claim("w2", Q, 10, 30) == []


async def test_limited_jobs_do_not_block_others(broker: Broker) -> None:
    await broker.enqueue([limited("one", 1, priority=10) for _ in range(50)])  # type: ignore[misc]
    behind = make_job(priority=-10)
    await broker.enqueue([behind])
    ids = [c.job.id for c in await broker.claim("w", Q, 5, 30)]
    assert len(ids) == 2 and behind.id in ids
    ids = [c.job.id for c in await broker.claim("w", Q, 5, 30)]
    assert ids == []


async def test_many_workers_respect_the_limit(broker_factory: Factory) -> None:
    brokers = [await broker_factory() for _ in range(4)]
    await brokers[0].enqueue([limited("db", 3) for _ in range(40)])  # type: ignore[misc]
    running: list[str] = []
    peak = 0

    async def work(b: Broker, wid: str) -> None:
        nonlocal peak
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            claims = await b.claim(wid, Q, 2, 30)
            if not claims:
                if not running and not await b.list_jobs(state=JobState.QUEUED, limit=1):
                    return
                await asyncio.sleep(0.001)
                continue
            running.extend(c.job.id for c in claims)
            peak = max(peak, len(running))
            await asyncio.sleep(0.002)
            for c in claims:
                running.remove(c.job.id)
            await b.settle([complete(c.job.id, c.token) for c in claims])

    await asyncio.gather(*(work(b, f"w{i}") for i, b in enumerate(brokers)))
    assert 1 <= peak <= 3
    stats = {s.queue: s.counts for s in await brokers[0].stats()}
    assert stats["default"] == {"succeeded": 40}


async def test_defer_gives_the_attempt_back(broker: Broker) -> None:
    job = make_job()
    await broker.enqueue([job])
    (c,) = await broker.claim("w", Q, 1, 30)
    defer = Outcome(job_id=job.id, token=c.token, kind=OutcomeKind.DEFER, run_at=time.time() + 0.3)
    assert await broker.settle([defer]) == [True]
    rec = await broker.get(job.id)
    assert rec is not None and rec.state is JobState.SCHEDULED and rec.attempts == 0
    assert await broker.claim("w", Q, 1, 30) == []
    (again,) = await eventually(lambda: broker.claim("w", Q, 1, 30), what="deferred job due")
    assert again.attempt == 1


async def test_progress_is_fenced_and_visible(broker: Broker) -> None:
    job = make_job()
    await broker.enqueue([job])
    (c,) = await broker.claim("w", Q, 1, 30)
    assert await broker.progress(job.id, c.token, b'{"done":0.4}') is True
    assert (await broker.get(job.id)).progress == b'{"done":0.4}'  # type: ignore[union-attr]
    assert await broker.progress(job.id, "stale-token", b"{}") is False
    await broker.settle([complete(job.id, c.token)])
    assert await broker.progress(job.id, c.token, b"{}") is False


async def test_rate_limit_bucket(broker_factory: Factory) -> None:
    a, b = await broker_factory(), await broker_factory()
    # One token a second: slow enough that no token comes back between the four takes, even
    # on a loaded machine (at 10 a second, 100 ms between takes refilled one and the test failed).
    waits = [await (a if i % 2 else b).take("mail", 1.0, 3) for i in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0]  # the burst
    assert 0 < waits[3] <= 1.0  # then one token a second, shared by every caller
    await eventually(lambda: a.take("mail", 1.0, 3), lambda w: w == 0.0, timeout=5, what="refill")
    assert await a.take("other", 1.0, 1) == 0.0  # buckets are per key


async def test_same_id_is_stored_once(broker: Broker) -> None:
    job = make_job()
    assert await broker.enqueue([job]) == [job.id]
    assert await broker.enqueue([job]) == [job.id]
    (c,) = await broker.claim("w", Q, 10, 30)
    await broker.settle([complete(job.id, c.token)])
    assert await broker.enqueue([job]) == [job.id]  # finished: still not run again
    assert await broker.claim("w", Q, 10, 30) == []
    assert (await broker.get(job.id)).state is JobState.SUCCEEDED  # type: ignore[union-attr]
