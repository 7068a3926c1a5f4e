"""Tasks through a real worker, on every broker: results, errors, retries, timeouts, shutdown."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import msgspec
import pytest

from pigeon import App, JobCancelled, JobContext, JobFailed, JobState, Retry
from pigeon.retry import Fixed
from tests.conformance.conftest import Producer
from tests.helpers import eventually, make_job


class Point(msgspec.Struct, frozen=True):
    x: int
    y: int


FAST: dict[str, Any] = {"poll": 0.05, "heartbeat": 0.2, "lease": 5.0, "recover_every": 0.5, "dead_after": 1.0}


async def test_async_task_result_with_typed_arguments(app: App, producer: Producer) -> None:
    @app.task
    async def describe(when: datetime, amount: Decimal, ident: uuid.UUID, p: Point) -> dict[str, Any]:
        assert isinstance(when, datetime) and isinstance(amount, Decimal)
        assert isinstance(ident, uuid.UUID) and isinstance(p, Point)
        return {"day": when.day, "amount": str(amount * 2), "x": p.x}

    async with app.worker(**FAST):
        h = await producer.send(
            describe, datetime(2026, 1, 5, tzinfo=UTC), Decimal("1.25"), uuid.uuid4(), Point(3, 4)
        )
        assert await h.aresult(timeout=10) == {"day": 5, "amount": "2.50", "x": 3}
        rec = await h.arecord()
        assert rec.state is JobState.SUCCEEDED and rec.attempts == 1


async def test_sync_task_gets_a_deep_frozen_copy(app: App) -> None:
    seen: list[Any] = []

    @app.task
    def inspect_args(items: list[int], meta: dict[str, list[str]]) -> int:
        seen.append((items, meta))
        with pytest.raises(TypeError):
            meta["new"] = []
        return len(items)

    items = [1, 2, 3]
    meta = {"tags": ["a", "b"]}
    async with app.worker(**FAST):
        h = await inspect_args.asend(items, meta)
        items.append(4)  # the caller's later change is not seen by the job
        assert await h.aresult(timeout=10) == 3
    got_items, got_meta = seen[0]
    assert got_items == (1, 2, 3)
    assert isinstance(got_meta, MappingProxyType) and got_meta["tags"] == ("a", "b")


async def test_failure_keeps_type_message_traceback(app: App) -> None:
    @app.task(max_attempts=2, backoff=Fixed(0.01))
    async def explode(n: int) -> None:
        raise ValueError(f"bad {n}")

    async with app.worker(**FAST):
        h = await explode.asend(7)
        with pytest.raises(JobFailed) as info:
            await h.aresult(timeout=10)
    assert info.value.error_type == "builtins.ValueError"
    assert info.value.error_message == "bad 7"
    assert "explode" in info.value.traceback
    assert (await h.arecord()).attempts == 2


async def test_retry_requested_then_succeeds(app: App) -> None:
    @app.task(max_attempts=3)
    async def flaky(ctx: JobContext, word: str) -> str:
        if ctx.attempt < 3:
            raise Retry(delay=0.05)
        return f"{word} on attempt {ctx.attempt}"

    async with app.worker(**FAST):
        h = await flaky.asend("done")
        assert await h.aresult(timeout=10) == "done on attempt 3"


async def test_exception_outside_retry_on_fails_at_once(app: App) -> None:
    @app.task(max_attempts=5, retry_on=(ConnectionError,))
    async def strict() -> None:
        raise KeyError("no")

    async with app.worker(**FAST):
        h = await strict.asend()
        with pytest.raises(JobFailed):
            await h.aresult(timeout=10)
    assert (await h.arecord()).attempts == 1


async def test_async_timeout_cancels_the_task(app: App) -> None:
    cancelled = asyncio.Event()

    @app.task(timeout=0.1, max_attempts=1)
    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with app.worker(**FAST):
        h = await slow.asend()
        with pytest.raises(JobFailed) as info:
            await h.aresult(timeout=10)
    assert info.value.error_type == "builtins.TimeoutError"
    assert cancelled.is_set()


async def test_cancelling_a_running_job_stops_it(app: App) -> None:
    import threading

    started, cancelled, release = asyncio.Event(), asyncio.Event(), threading.Event()
    ran: list[str] = []

    @app.task
    async def endless() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    @app.task
    def blocking() -> str:
        release.wait(30)  # a thread cannot be stopped: it runs on, and its outcome is discarded
        ran.append("blocking")
        return "too late"

    @app.task
    async def after() -> str:
        return "next"

    async with app.worker(**FAST):
        h, t = await endless.asend(), await blocking.asend()
        await asyncio.wait_for(started.wait(), 10)
        await eventually(t.arecord, lambda r: r.state is JobState.RUNNING, what="the thread task started")
        assert await h.acancel() and await t.acancel()
        await asyncio.wait_for(cancelled.wait(), 10)  # by the next heartbeat
        release.set()
        assert await (await after.asend()).aresult(timeout=10) == "next"  # the worker goes on

        async def thread_ran() -> bool:
            return bool(ran)

        await eventually(thread_ran, what="the thread finished")
    for handle in (h, t):
        with pytest.raises(JobCancelled):
            await handle.aresult(timeout=1)
        assert (await handle.arecord()).state is JobState.CANCELLED


async def test_a_finished_job_keeps_its_lease_while_its_settle_is_slow(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: list[float] = []

    @app.task
    async def quick() -> str:
        runs.append(time.time())
        return "done"

    broker = await app.connection()
    settle, recover = broker.settle, broker.recover
    gate = asyncio.Event()
    sweeps: list[float] = []

    async def slow_settle(outcomes: Any) -> list[bool]:
        await gate.wait()  # a slow database: the outcome waits in the worker
        return await settle(outcomes)

    async def counted_recover(*args: Any, **kwargs: Any) -> int:
        n = await recover(*args, **kwargs)
        sweeps.append(time.time())
        return n

    monkeypatch.setattr(broker, "settle", slow_settle)
    monkeypatch.setattr(broker, "recover", counted_recover)
    lease = 1.0  # ten heartbeats: a loaded machine may stall one or two
    async with app.worker(poll=0.05, heartbeat=0.1, lease=lease, recover_every=0.1, dead_after=5.0):
        h = await quick.asend()

        async def ran() -> bool:
            return bool(runs)

        await eventually(ran, what="the job ran")

        async def swept_past_the_lease() -> bool:
            return len([t for t in sweeps if t > runs[0] + 2 * lease]) >= 2

        await eventually(swept_past_the_lease, what="recovery sweeps long after the lease")
        gate.set()
        assert await h.aresult(timeout=10) == "done"
    assert len(runs) == 1 and (await h.arecord()).attempts == 1  # never recovered, never run twice


async def test_result_waiters_here_wake_when_this_process_finishes_the_job(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pigeon import waiters

    monkeypatch.setattr(waiters, "FIRST_POLL", 3600.0)  # no polling: only the wake-up can answer
    monkeypatch.setattr(waiters, "MAX_POLL", 3600.0)
    gate = asyncio.Event()

    @app.task(max_attempts=1)
    async def held(fail: bool) -> str:
        await gate.wait()
        if fail:
            raise ValueError("as asked")
        return "done"

    async with app.worker(**FAST):
        ok, bad, cancelled = await held.asend(False), await held.asend(True), await held.asend(False)
        waits = [
            asyncio.ensure_future(ok.aresult(timeout=20)),
            asyncio.ensure_future(asyncio.to_thread(ok.result, 20)),  # on the portal loop
            asyncio.ensure_future(bad.aresult(timeout=20)),
            asyncio.ensure_future(cancelled.aresult(timeout=20)),
        ]

        async def all_waiting() -> bool:
            watched = app.result_waiters._waiters
            return [len(watched.get(h.id, ())) for h in (ok, bad, cancelled)] == [2, 1, 1]

        await eventually(all_waiting, what="every waiter waiting")
        assert await cancelled.acancel()
        gate.set()
        results = await asyncio.gather(*waits, return_exceptions=True)
    assert results[:2] == ["done", "done"]
    assert isinstance(results[2], JobFailed) and isinstance(results[3], JobCancelled)
    assert app.result_waiters._waiters == {}


async def test_thread_timeout_fails_the_job(app: App) -> None:
    import threading

    release = threading.Event()

    @app.task(timeout=0.1, max_attempts=1)
    def stuck() -> None:
        release.wait(10)

    async with app.worker(**FAST):
        h = await stuck.asend()
        with pytest.raises(JobFailed) as info:
            await h.aresult(timeout=10)
        release.set()
    assert info.value.error_type == "builtins.TimeoutError"


async def test_bad_jobs_fail_and_the_worker_survives(app: App) -> None:
    @app.task(max_attempts=1)
    async def takes_int(n: int) -> int:
        return n

    @app.task(max_attempts=1)
    async def exits() -> None:
        raise SystemExit(3)

    @app.task(max_attempts=1)
    def interrupts() -> None:
        raise KeyboardInterrupt

    unknown = make_job("nobody.registered.this")
    garbage = make_job(takes_int.name, payload=b'{"n": "not a number"}')
    async with app.worker(**FAST):
        await app.aenqueue([unknown, garbage])
        h_exit = await exits.asend()
        h_int = await interrupts.asend()
        h_ok = await takes_int.asend(5)
        assert await h_ok.aresult(timeout=10) == 5
        for handle, kind in [
            (app.job(unknown.id), "pigeon.errors.UnknownTask"),
            (app.job(garbage.id), "pigeon.errors.DecodeError"),
            (h_exit, "builtins.SystemExit"),
            (h_int, "builtins.KeyboardInterrupt"),
        ]:
            with pytest.raises(JobFailed) as info:
                await handle.aresult(timeout=10)
            assert info.value.error_type == kind


async def test_unencodable_result_fails_clearly(app: App) -> None:
    @app.task(max_attempts=1)
    async def returns_object() -> object:
        return object()

    async with app.worker(**FAST):
        h = await returns_object.asend()
        with pytest.raises(JobFailed) as info:
            await h.aresult(timeout=10)
    assert "cannot be encoded" in info.value.error_message


async def test_shutdown_hands_unfinished_jobs_back(app: App) -> None:
    started = asyncio.Event()

    @app.task
    async def long_job() -> None:
        started.set()
        await asyncio.sleep(30)

    async with app.worker(**{**FAST, "grace": 0.2}):
        h = await long_job.asend()
        await asyncio.wait_for(started.wait(), 10)
    rec = await h.arecord()
    assert rec.state is JobState.QUEUED and rec.attempts == 0


async def test_graceful_shutdown_lets_short_jobs_finish(app: App) -> None:
    started = asyncio.Event()

    @app.task
    async def short_job() -> str:
        started.set()
        await asyncio.sleep(0.3)
        return "finished"

    async with app.worker(**{**FAST, "grace": 10}):
        h = await short_job.asend()
        await asyncio.wait_for(started.wait(), 10)
    assert (await h.arecord()).state is JobState.SUCCEEDED


async def test_unique_key_and_delay_through_the_api(app: App, producer: Producer) -> None:
    @app.task
    async def once(n: int) -> int:
        return n

    sent = time.monotonic()
    h1 = await producer.send(once.options(unique_key="k", delay=0.3), 1)
    h2 = await producer.send(once.options(unique_key="k"), 2)
    assert h1 == h2
    state = (await h1.arecord()).state
    # Under load the 0.3 s may be over by the time the record is read: then it may be due.
    due = time.monotonic() - sent >= 0.3
    assert state is JobState.SCHEDULED or (due and state is JobState.QUEUED), state
    async with app.worker(**FAST):
        assert await h1.aresult(timeout=10) == 1


async def test_run_at_and_priority_through_the_api(app: App, producer: Producer) -> None:
    """Due jobs run by priority; a job with a run_at, the highest priority of all, waits for it.

    When each job starts is what is checked, not that "later" runs last: a worker whose
    first connection is slow (a Redis Cluster's) may find it due already, and then rightly
    runs it first.
    """
    order: list[str] = []
    started: dict[str, float] = {}

    @app.task
    async def record(name: str) -> None:
        started[name] = time.time()
        order.append(name)

    async def ran() -> int:
        return len(order)

    run_at = datetime.now(UTC) + timedelta(seconds=0.3)
    later = await producer.send(record.options(run_at=run_at, priority=20), "later")
    await producer.send(record.options(priority=-10), "low")
    await producer.send(record.options(priority=10), "high")
    async with app.worker(**{**FAST, "concurrency": 1}):
        await later.aresult(timeout=10)
        await eventually(ran, lambda n: n == 3, what="all three jobs run")
    assert started["later"] >= run_at.timestamp(), "a job ran before its run_at"
    assert order.index("high") < order.index("low")


async def test_burst_worker_exits_when_idle(app: App, producer: Producer) -> None:
    @app.task
    async def noop(i: int) -> int:
        return i

    handles = await producer.send_many(noop, [(i,) for i in range(50)])
    worker = app.make_worker(burst=True, **FAST)
    await asyncio.wait_for(worker.run(install_signals=False), 20)
    assert [await h.aresult(timeout=1) for h in handles] == list(range(50))


async def test_burst_worker_runs_retries_that_fall_due_before_it_would_exit(app: App) -> None:
    """An immediate retry is work left to do: a burst worker settles it and claims it again."""
    tries: dict[int, int] = {}

    @app.task(max_attempts=3, backoff=Fixed(0))
    async def flaky(i: int) -> int:
        tries[i] = tries.get(i, 0) + 1
        if tries[i] == 1:
            raise RuntimeError("first attempt fails")
        return i

    handles = await flaky.asend_many([(i,) for i in range(20)])
    worker = app.make_worker(burst=True, **FAST)
    await asyncio.wait_for(worker.run(install_signals=False), 20)
    records = [await h.arecord() for h in handles]
    assert [(r.state, r.attempts) for r in records] == [(JobState.SUCCEEDED, 2)] * 20


async def test_lost_worker_job_runs_again(app: App) -> None:
    """A job claimed by a worker that vanished is recovered by a live one."""

    @app.task
    async def survivor() -> str:
        return "ran"

    h = await survivor.asend()
    broker = await app.connection()
    await broker.claim("vanished-worker", ("default",), 1, 0.3)
    async with app.worker(**FAST):
        assert await h.aresult(timeout=15) == "ran"
    assert (await h.arecord()).attempts == 2


async def test_worker_in_thread_with_sync_sends(app: App) -> None:
    @app.task
    def double(n: int) -> int:
        return n * 2

    def scenario() -> list[int]:
        with app.run_worker_in_thread(**FAST):
            handles = [double.send(i) for i in range(5)]
            return [h.result(timeout=10) for h in handles]

    assert await asyncio.to_thread(scenario) == [0, 2, 4, 6, 8]
    app.close()


async def test_jobs_are_counted_in_stats(app: App) -> None:
    @app.task
    async def idle() -> None: ...

    await idle.asend_many([(), (), ()])
    broker = await app.connection()
    counts = {s.queue: s.counts for s in await broker.stats()}
    assert counts["default"]["queued"] == 3


async def test_a_job_claimed_past_its_expiry_is_cancelled_not_run(app: App, producer: Producer) -> None:
    ran: list[str] = []

    @app.task
    async def report(name: str) -> str:
        ran.append(name)
        return name

    # The late job falls due after its expiry; the punctual one expires long after it runs.
    late = await producer.send(report.options(delay=0.3, expires=0.1), "late")
    punctual = await producer.send(report.options(expires=datetime.now(UTC) + timedelta(hours=1)), "punctual")
    assert (await late.arecord()).job.expires_at is not None
    async with app.worker(**FAST):
        assert await punctual.aresult(timeout=10) == "punctual"
        with pytest.raises(JobCancelled):
            await late.aresult(timeout=10)
    assert ran == ["punctual"]
    assert (await late.arecord()).state is JobState.CANCELLED


def test_expires_must_be_aware(app: App) -> None:
    @app.task
    async def noop() -> None: ...

    with pytest.raises(ValueError, match="aware datetime"):
        noop.options(expires=datetime(2030, 1, 1))
