"""Chains, groups and chords — including failures, cancellation and worker loss — on every broker."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from pigeon import App, JobCancelled, JobFailed, JobState, chain, chord, group
from tests.helpers import eventually

FAST: dict[str, Any] = {"poll": 0.05, "heartbeat": 0.2, "lease": 5.0, "recover_every": 0.3, "dead_after": 1.0}


def arithmetic(app: App) -> tuple[Any, Any, Any, Any]:
    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    @app.task
    async def double(n: int) -> int:
        return n * 2

    @app.task(max_attempts=1)
    async def explode(n: int) -> int:
        raise ValueError(f"no {n}")

    @app.task
    async def total(results: list[Any], label: str = "sum") -> dict[str, Any]:
        numbers = [r for r in results if isinstance(r, int)]
        errors = [r["error"]["type"] for r in results if isinstance(r, Mapping)]  # frozen: read-only
        return {label: sum(numbers), "errors": errors}

    return add, double, explode, total


async def test_chain_feeds_each_result_to_the_next(app: App) -> None:
    add, double, _, _ = arithmetic(app)
    async with app.worker(**FAST):
        handle = await chain(add.s(1, 2), double.s(), add.s(b=10)).asend()
        assert await handle.aresult(timeout=20) == 16  # (1 + 2) * 2 + 10


async def test_failed_step_fails_the_chain(app: App) -> None:
    add, double, explode, _ = arithmetic(app)
    async with app.worker(**FAST):
        handle = await chain(add.s(1, 2), explode.s(), double.s()).asend()
        with pytest.raises(JobFailed) as info:
            await handle.aresult(timeout=20)
    assert info.value.error_message == "no 3"
    broker = await app.connection()
    assert await broker.get(handle.ids[2]) is None  # the step after the failure never ran


async def test_group_collects_results_in_order(app: App) -> None:
    add, *_ = arithmetic(app)
    async with app.worker(**FAST):
        handle = await group(*(add.s(i, i) for i in range(8))).asend()
        assert await handle.aresult(timeout=20) == [i * 2 for i in range(8)]


async def test_workflows_take_generators_as_celery_users_write_them(app: App) -> None:
    add, double, _, total = arithmetic(app)
    async with app.worker(**FAST):
        grouped = await group(add.s(i, i) for i in range(10)).asend()
        chorded = await chord((add.s(i, i) for i in range(4)), total.s()).asend()
        chained = await chain(s for s in (add.s(1, 2), double.s())).asend()
        assert await grouped.aresult(timeout=20) == [i * 2 for i in range(10)]
        assert await chorded.aresult(timeout=20) == {"sum": 12, "errors": []}
        assert await chained.aresult(timeout=20) == 6
    with pytest.raises(TypeError, match="signatures"):
        group([add.s(1, 1), add])


async def test_chord_callback_gets_results_and_errors(app: App) -> None:
    add, _, explode, total = arithmetic(app)
    async with app.worker(**FAST):
        ok = await chord([add.s(i, 1) for i in range(4)], total.s(label="n")).asend()
        assert await ok.aresult(timeout=20) == {"n": 10, "errors": []}
        mixed = await chord([add.s(1, 1), explode.s(5)], total.s()).asend()
        assert await mixed.aresult(timeout=20) == {"sum": 2, "errors": ["builtins.ValueError"]}


async def test_chord_fires_once_even_if_members_finish_together(app: App) -> None:
    add, _, _, _ = arithmetic(app)
    fired: list[int] = []

    @app.task
    async def count(results: list[int]) -> int:
        fired.append(len(results))
        return sum(results)

    async with app.worker(concurrency=50, **FAST), app.worker(concurrency=50, **FAST):
        handle = await chord([add.s(i, 0) for i in range(30)], count.s()).asend()
        assert await handle.aresult(timeout=30) == sum(range(30))
    assert fired == [30]


async def test_chord_survives_its_waiters_worker_dying(app: App) -> None:
    add, _, _, total = arithmetic(app)
    handle = await chord([add.s(1, 1)], total.s()).asend()
    broker = await app.connection()
    # A worker claims every job (the waiter included) and dies without a word.
    claimed = await broker.claim("dead-worker", ("default",), 10, 0.5)
    assert len(claimed) == 2
    async with app.worker(**FAST):
        assert await handle.aresult(timeout=30) == {"sum": 2, "errors": []}


async def test_cancel_a_chain_while_its_first_step_runs(app: App) -> None:
    _, double, _, _ = arithmetic(app)
    stopped = asyncio.Event()

    @app.task
    async def slow(n: int) -> int:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped.set()
            raise
        return n

    async with app.worker(**FAST):
        handle = await chain(slow.s(1), double.s(), double.s()).asend()
        broker = await app.connection()
        await eventually(lambda: broker.get(handle.ids[0]), lambda r: r.state is JobState.RUNNING)  # type: ignore[union-attr]
        assert await handle.acancel() == 3  # the running step and the two not yet enqueued
        await asyncio.wait_for(stopped.wait(), 10)
        with pytest.raises(JobCancelled):
            await handle.aresult(timeout=20)
    for job_id in handle.ids:
        assert (await broker.get(job_id)).state is JobState.CANCELLED  # type: ignore[union-attr]


async def test_cancel_a_group_before_it_runs(app: App) -> None:
    add, *_ = arithmetic(app)
    handle = await group(add.s(1, 1), add.s(2, 2)).asend()
    assert await handle.acancel() == 2
    with pytest.raises(JobCancelled):
        await handle.aresult(timeout=5)


def test_signature_errors() -> None:
    app = App("memory://")
    add, *_ = arithmetic(app)
    with pytest.raises(TypeError, match="too many positional arguments"):
        add.s(1, 2, 3)
    with pytest.raises(ValueError):
        chain()
