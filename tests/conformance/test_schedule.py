"""Periodic jobs: every worker runs the schedule, each tick becomes one job — on every broker."""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime

import pytest

from pigeon import App, ConfigurationError, JobContext
from tests.helpers import eventually


async def _value(x: list[str]) -> list[str]:
    return x


async def test_each_tick_runs_once_across_workers(app: App) -> None:
    runs: list[str] = []

    @app.periodic(every=0.2, missed="skip")
    async def tick(ctx: JobContext) -> None:
        runs.append(ctx.job_id)

    async with contextlib.AsyncExitStack() as stack:
        for _ in range(3):  # three workers, each running the same schedule
            await stack.enter_async_context(app.worker(poll=0.05))
        await eventually(lambda: _value(runs), lambda r: len(r) >= 5, what="five ticks ran")
    assert len(runs) == len(set(runs))  # no tick ran twice
    broker = await app.connection()
    assert len(await broker.list_jobs(task=tick.name, limit=1000)) == len(runs)


async def test_missed_tick_runs_once_at_start(app: App) -> None:
    runs: list[float] = []

    @app.periodic(every=3600, missed="once")
    async def hourly() -> None:
        runs.append(time.time())

    for _ in range(2):  # a restart does not run the missed tick again
        async with app.worker(poll=0.05):
            await eventually(lambda: _value(runs), what="the missed tick ran")  # type: ignore[arg-type]
    assert len(runs) == 1


def test_schedule_errors() -> None:
    app = App("memory://")

    @app.task
    def report(day: str) -> None: ...

    with pytest.raises(ConfigurationError, match="bad cron"):
        app.schedule(report, cron="*/61 * * *", args=("mon",))
    with pytest.raises(ConfigurationError, match="unknown time zone"):
        app.schedule(report, cron="0 * * * *", tz="Mars/Olympus", args=("mon",))
    with pytest.raises(ConfigurationError, match="one of them"):
        app.schedule(report, args=("mon",))
    with pytest.raises(TypeError, match="missing a required argument"):
        app.schedule(report, every=60)


def test_cron_ticks_follow_the_time_zone() -> None:
    app = App("memory://")

    @app.task
    def nightly() -> None: ...

    sched = app.schedule(nightly, cron="30 2 * * *", tz="Europe/Oslo")
    first = next(sched.ticks_after(datetime(2026, 3, 30, 12, 0, tzinfo=UTC)))
    assert first == datetime(2026, 3, 31, 0, 30, tzinfo=UTC)  # 02:30 in Oslo in summer time
    # 02:30 does not exist on the night clocks go forward: the tick runs at 03:00 local.
    skipped = next(sched.ticks_after(datetime(2026, 3, 28, 12, 0, tzinfo=UTC)))
    assert skipped == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert sched.job_for(first).id == sched.job_for(first).id != sched.job_for(skipped).id
    assert sched.previous_tick(first) == first
