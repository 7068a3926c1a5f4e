"""Sending, from asynchronous code and from synchronous threads alike, on every broker.

What a send checks before it stores, and what many threads sending at once get
back: their own jobs, each stored once, a unique key's one job shared.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest

from pigeon import App, JobHandle, JobState
from pigeon.brokers.base import SyncProducing, create_broker
from tests.conformance.conftest import Producer

T = TypeVar("T")
FAST: dict[str, Any] = {"poll": 0.05, "heartbeat": 0.2, "lease": 5.0}
SYNC_PRODUCING = ("sqlite", "postgresql", "redis", "redis+cluster", "redis+sentinel")
"""The schemes whose brokers store synchronous sends themselves (the others go through a loop)."""


def at_once(threads: int, fn: Callable[[int], T]) -> list[T]:
    """``fn(0)`` … ``fn(threads - 1)``, each on a thread of its own, released together."""
    start = threading.Barrier(threads)
    out: dict[int, T] = {}
    errors: list[BaseException] = []

    def run(n: int) -> None:
        start.wait(timeout=10)
        try:
            out[n] = fn(n)
        except Exception as exc:  # noqa: BLE001 - raised again on the calling thread
            errors.append(exc)

    started = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for t in started:
        t.start()
    for t in started:
        t.join()
    if errors:
        raise errors[0]
    assert len(out) == threads, "a sending thread failed"
    return [out[n] for n in range(threads)]


async def stored(app: App) -> int:
    broker = await app.client.connection()
    return sum(sum(s.counts.values()) for s in await broker.stats())


async def test_bad_arguments_are_refused_before_anything_is_stored(app: App, producer: Producer) -> None:
    @app.task
    def charge(amount: int, when: datetime) -> None: ...

    now = datetime.now(UTC)
    with pytest.raises(TypeError, match="amount"):
        await producer.send(charge, "ten", now)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await producer.send(charge, 1, object())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await producer.send(charge, 1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        await producer.send_many(charge, [(1, now), ("x", now)])
    assert await stored(app) == 0
    handle = await producer.send(charge, 1, now)
    assert (await handle.arecord()).state is JobState.QUEUED
    assert await stored(app) == 1


async def test_threads_sending_at_once_each_get_their_own_jobs(app: App) -> None:
    @app.task
    def double(n: int) -> int:
        return 2 * n

    threads, each = 8, 25

    def send_from(t: int) -> dict[int, JobHandle[int]]:
        return {n: double.send(n) for n in range(t * each, (t + 1) * each)}

    sent = {n: h for part in await asyncio.to_thread(at_once, threads, send_from) for n, h in part.items()}
    assert len({h.id for h in sent.values()}) == threads * each
    async with app.worker(**FAST):
        for n, handle in sent.items():
            assert await handle.aresult(timeout=15) == 2 * n
    assert app.client.metrics()["enqueue"].errors == 0


async def test_threads_sending_one_unique_key_at_once_share_its_job(app: App) -> None:
    @app.task
    def once(n: int) -> int:
        return n

    def send(n: int) -> str:
        return once.options(unique_key="only").send(n).id

    ids = await asyncio.to_thread(at_once, 8, send)
    assert len(set(ids)) == 1
    assert await stored(app) == 1


async def test_synchronous_sends_take_the_brokers_own_path_where_it_has_one(app: App) -> None:
    """A broker with a synchronous producer stores on the caller's thread; no loop thread starts."""

    @app.task
    def noop() -> None: ...

    scheme = app.client.url.split("://", 1)[0]
    assert isinstance(create_broker(app.client.url, {}), SyncProducing) is (scheme in SYNC_PRODUCING)
    before = set(threading.enumerate())
    await asyncio.to_thread(noop.send)
    loops = [t for t in set(threading.enumerate()) - before if t.name == "pigeon-portal"]
    assert bool(loops) is (scheme not in SYNC_PRODUCING)
    assert app.client.metrics()["enqueue"].calls == 1
