"""Concurrency limits, rate limits and progress through real workers — on every broker."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest

from pigeon import App, JobContext, JobState
from tests.helpers import eventually

FAST: dict[str, Any] = {"poll": 0.05, "heartbeat": 0.2}


async def test_task_concurrency_limit_holds_across_workers(app: App) -> None:
    running = 0
    peak = 0

    @app.task(concurrency=2)
    async def scarce(i: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1
        return i

    @app.task
    async def plentiful(i: int) -> int:
        return i

    handles = await scarce.asend_many([(i,) for i in range(12)])
    others = await plentiful.asend_many([(i,) for i in range(12)])
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(2):
            await stack.enter_async_context(app.worker(concurrency=8, **FAST))
        assert [await h.aresult(timeout=20) for h in handles + others] == list(range(12)) * 2
    assert peak == 2
    assert [(await h.arecord()).attempts for h in handles] == [1] * len(handles)


async def test_rate_limit_spaces_starts_without_spending_attempts(app: App) -> None:
    starts: list[float] = []

    @app.task(rate="20/s", max_attempts=1)
    async def limited(i: int) -> None:
        starts.append(time.monotonic())

    handles = await limited.asend_many([(i,) for i in range(6)])
    async with app.worker(concurrency=10, **FAST):
        for h in handles:
            await h.aresult(timeout=20)
    starts.sort()
    # One token at a time, 50 ms apart: six starts span at least five intervals.
    assert starts[-1] - starts[0] >= 5 * 0.05 * 0.9
    assert [(await h.arecord()).attempts for h in handles] == [1] * len(handles)


async def test_progress_is_visible_and_published(app: App) -> None:
    go_on = asyncio.Event()
    events: list[Any] = []

    @app.task
    async def resize(ctx: JobContext, path: str) -> str:
        ctx.progress(0.4, "resizing")
        await go_on.wait()
        return path

    @app.on("pigeon.progress")
    async def watch(event: dict[str, Any]) -> None:
        events.append(event)

    async with app.worker(**FAST):
        h = await resize.asend("a.png")

        async def progress() -> Any:
            rec = await h.arecord()
            return rec.progress

        await eventually(progress, what="progress reported")
        assert (await h.arecord()).state is JobState.RUNNING
        go_on.set()
        assert await h.aresult(timeout=10) == "a.png"
        await eventually(lambda: _value(events), what="progress event handled")
    assert events[0]["fraction"] == 0.4 and events[0]["message"] == "resizing"


async def _value(x: list[Any]) -> list[Any]:
    return x


def test_bad_limits_are_refused() -> None:
    app = App("memory://")
    with pytest.raises(ValueError, match="rate"):
        app.task(rate="lots")(lambda: None)
    with pytest.raises(ValueError, match="concurrency"):
        app.task(concurrency=0)(lambda: None)


async def test_queue_limit_on_one_worker(app: App) -> None:
    running = {"images": 0, "default": 0}
    peak = {"images": 0, "default": 0}

    @app.task(queue="images")
    async def thumb(i: int) -> None:
        running["images"] += 1
        peak["images"] = max(peak["images"], running["images"])
        await asyncio.sleep(0.02)
        running["images"] -= 1

    @app.task
    async def other(i: int) -> None:
        running["default"] += 1
        peak["default"] = max(peak["default"], running["default"])
        await asyncio.sleep(0.02)
        running["default"] -= 1

    handles = await thumb.asend_many([(i,) for i in range(10)]) + await other.asend_many(
        [(i,) for i in range(10)]
    )
    async with app.worker(queues="default,images=2", concurrency=8, **FAST):
        for h in handles:
            await h.aresult(timeout=20)
    assert peak["images"] == 2
    assert peak["default"] > 2  # the cap is the images queue's alone


def test_queue_limit_syntax() -> None:
    from pigeon import ConfigurationError, WorkerConfig

    cfg = WorkerConfig().replace(queues="default, images=2")
    assert cfg.queues == ("default", "images") and cfg.queue_limits == (("images", 2),)
    with pytest.raises(ConfigurationError):
        WorkerConfig().replace(queues="images=many")


async def test_unheard_progress_leaves_no_event_records(app: App) -> None:
    @app.task
    async def step(ctx: JobContext) -> None:
        ctx.progress(1.0, "done")

    async with app.worker(**FAST):
        h = await step.asend()
        await h.aresult(timeout=10)
        await eventually(h.arecord, lambda r: r.progress is not None, what="progress stored")
    broker = await app.connection()
    assert await broker.list_jobs(queue="pigeon.unrouted") == []
