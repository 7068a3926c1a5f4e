"""Celery's task API (``pigeon.contrib.celery``) on every broker, through a real worker."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pigeon import App, JobFailed, JobState
from pigeon.contrib.celery import (
    BoundTask,
    Celery,
    Unsupported,
    chain,
    chord,
    group,
    shared_task,
    signature,
)

FAST: dict[str, Any] = {"poll": 0.05, "heartbeat": 0.2, "lease": 5.0, "recover_every": 0.5, "dead_after": 1.0}


async def run(app: App, scenario: Callable[[], Any]) -> Any:
    """Run a synchronous scenario (Celery's API is synchronous) with a worker in a thread."""

    def with_worker() -> Any:
        with app.run_worker_in_thread(**FAST):
            return scenario()

    try:
        return await asyncio.to_thread(with_worker)
    finally:
        await asyncio.to_thread(app.close)


async def test_delay_get_and_celery_state_names(app: App) -> None:
    capp = Celery("proj", app=app, set_as_current=False)
    gate = threading.Event()

    @capp.task
    def add(x: int, y: int) -> int:
        gate.wait(10)
        return x + y

    def scenario() -> list[Any]:
        r = add.delay(2, 3)
        first = r.status
        started = r.ready()
        gate.set()
        value = r.get(timeout=10)
        return [first, started, value, r.status, r.ready(), r.successful(), r.result]

    first, ready_before, value, status, ready, ok, result = await run(app, scenario)
    assert first in ("PENDING", "STARTED") and not ready_before
    assert (value, status, ready, ok, result) == (5, "SUCCESS", True, True, 5)
    assert add(2, 3) == 5  # calling the task runs it here, as in Celery


async def test_apply_async_options_reach_the_job(app: App) -> None:
    capp = Celery(app=app, set_as_current=False)

    @capp.task(queue="mail", priority=7)
    def echo(word: str) -> str:
        return word

    def scenario() -> tuple[Any, ...]:
        later = echo.apply_async(("later",), countdown=30, task_id="fixed-id-1")
        at = echo.apply_async(kwargs={"word": "eta"}, eta=datetime.now(UTC) + timedelta(hours=1))
        naive = echo.apply_async(("naive",), eta=datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=1))
        routed = echo.apply_async(("routed",), queue="other", priority=9)
        return later, at, naive, routed, later.status

    later, at, naive, routed, status = await run(app, scenario)
    rec = await app.job("fixed-id-1").arecord()
    assert later.id == "fixed-id-1" and status == "PENDING"
    assert rec.state is JobState.SCHEDULED and rec.job.queue == "mail" and rec.job.priority == 7
    assert rec.job.run_at is not None and rec.job.run_at - time.time() > 25
    for r in (at, naive):  # a naive eta is UTC, as Celery reads it
        job = (await app.job(r.id).arecord()).job
        assert job.run_at is not None and abs(job.run_at - (time.time() + 3600)) < 60
    routed_job = (await app.job(routed.id).arecord()).job
    assert (routed_job.queue, routed_job.priority) == ("other", 9)


async def test_expires_revokes_a_job_not_started_in_time(app: App) -> None:
    capp = Celery(app=app, set_as_current=False)
    ran: list[str] = []

    @capp.task
    def note(word: str) -> None:
        ran.append(word)

    def scenario() -> tuple[str, Any]:
        late = note.apply_async(("late",), countdown=0.3, expires=0.1)
        fine = note.apply_async(("fine",), expires=timedelta(hours=1))
        fine.get(timeout=10)
        with pytest.raises(Exception, match="cancelled"):
            late.get(timeout=10)
        return late.status, late.get(timeout=1, propagate=False)

    status, returned = await run(app, scenario)
    assert status == "REVOKED" and ran == ["fine"]
    assert "cancelled" in str(returned)


async def test_bind_request_and_self_retry(app: App) -> None:
    capp = Celery(app=app, set_as_current=False)
    seen: list[tuple[str | None, int]] = []

    @capp.task(bind=True, max_retries=3)
    def flaky(self: BoundTask, n: int) -> int:
        seen.append((self.request.id, self.request.retries))
        if self.request.retries < 2:
            raise self.retry(exc=ValueError("not yet"), countdown=0.01)
        return n * 10

    @capp.task(bind=True, max_retries=1, default_retry_delay=0.01)
    def hopeless(self: BoundTask) -> None:
        self.retry(exc=KeyError("gone"))

    def scenario() -> tuple[Any, Any, str]:
        r = flaky.delay(4)
        h = hopeless.delay()
        with pytest.raises(JobFailed) as failed:
            h.get(timeout=10)
        return r, r.get(timeout=10), failed.value.error_type

    r, value, error_type = await run(app, scenario)
    assert value == 40 and seen == [(r.id, 0), (r.id, 1), (r.id, 2)]
    assert error_type == "builtins.KeyError"  # out of retries: the exc given to retry() is raised
    rec = await app.job(r.id).arecord()
    assert rec.attempts == 3


async def test_autoretry_for_with_backoff_and_other_errors_fail_at_once(app: App) -> None:
    capp = Celery(app=app, set_as_current=False)
    calls: dict[str, int] = {"net": 0, "bug": 0}

    @capp.task(autoretry_for=(ConnectionError,), retry_backoff=0.01, retry_backoff_max=0.05, max_retries=5)
    def fetch() -> str:
        calls["net"] += 1
        if calls["net"] < 3:
            raise ConnectionError("down")
        return "ok"

    @capp.task(autoretry_for=(ConnectionError,), retry_backoff=0.01)
    def buggy() -> None:
        calls["bug"] += 1
        raise ZeroDivisionError("bug")

    def scenario() -> tuple[Any, str]:
        b = buggy.delay()
        value = fetch.delay().get(timeout=10)
        return value, b.get(timeout=10, propagate=False).error_type

    value, error_type = await run(app, scenario)
    assert value == "ok" and calls == {"net": 3, "bug": 1}
    assert error_type == "builtins.ZeroDivisionError"


async def test_pickle_habits_fail_at_send_and_say_what_to_change(app: App) -> None:
    capp = Celery(app=app, set_as_current=False)

    class Order:
        pk = 42

    @capp.task
    def ship(order: Any) -> None: ...

    with pytest.raises(TypeError, match=r"cannot be encoded.*Pass an id \(e\.g\. obj\.pk\)"):
        ship.delay(Order())
    with pytest.raises(Unsupported, match="JSON only"):
        ship.apply_async((1,), serializer="pickle")
    with pytest.raises(Unsupported, match="JSON only"):

        @capp.task(serializer="pickle")
        def pickled() -> None: ...

    broker = await app.connection()
    assert sum(sum(q.counts.values()) for q in await broker.stats()) == 0  # nothing was stored


def test_what_cannot_be_kept_is_refused_with_the_pigeon_equivalent(app: App) -> None:
    capp = Celery(app=app, set_as_current=False)
    with pytest.raises(Unsupported, match=r"pigeon\.testing\.drain"):
        capp.conf.task_always_eager = True
    with pytest.raises(Unsupported, match=r"pigeon\.testing\.drain"):
        Celery(app=app, set_as_current=False, task_always_eager=True)
    capp.conf.task_always_eager = False  # the default is fine

    @capp.task(acks_late=True, track_started=True, ignore_result=True)
    def fine(x: int) -> int:
        return x

    with pytest.raises(Unsupported, match=r"self\.progress"):
        fine.update_state(state="PROGRESS", meta={"current": 1})
    with pytest.raises(Unsupported, match=r"drain"):
        fine.apply((1,))
    with pytest.raises(Unsupported, match=r"chain\("):
        fine.apply_async((1,), link=fine.s())
    with pytest.raises(Unsupported, match=r"routing_key: use queue="):
        fine.apply_async((1,), routing_key="fast")
    with pytest.raises(TypeError, match="unknown task option"):

        @capp.task(acks_early=True)
        def typo() -> None: ...

    with pytest.raises(Unsupported, match="base="):

        @capp.task(base=object)
        def custom() -> None: ...


async def test_canvas_follows_celery_argument_order(app: App) -> None:
    capp = Celery(app=app, set_as_current=False)

    @capp.task
    def sub(x: int, y: int) -> int:
        return x - y

    @capp.task
    def const(v: int = 7) -> int:
        return v

    @capp.task
    def total(results: list[int], bonus: int = 0) -> int:
        return sum(results) + bonus

    def scenario() -> list[Any]:
        piped = (sub.s(10, 1) | sub.s(2) | sub.s(3)).apply_async()  # ((10-1)-2)-3
        immutable = chain(sub.s(10, 1), const.si(), sub.s(1)).delay()  # const() ignores 9: 7-1
        members = group(sub.s(i, 1) for i in range(1, 4))()  # 0, 1, 2
        chorded = chord(sub.s(i, 0) for i in range(4))(total.s(100))  # 0+1+2+3 + 100
        by_name = signature(sub.name, args=(5, 2), app=capp).delay()
        return [
            piped.get(timeout=10),
            immutable.get(timeout=10),
            members.get(timeout=10),
            chorded.get(timeout=10),
            by_name.get(timeout=10),
        ]

    assert await run(app, scenario) == [4, 6, [0, 1, 2], 106, 3]


async def test_a_failed_chain_step_fails_the_chain_result(app: App) -> None:
    capp = Celery(app=app, set_as_current=False)

    @capp.task
    def boom(x: int) -> int:
        raise RuntimeError(f"boom {x}")

    @capp.task
    def inc(x: int) -> int:
        return x + 1

    def scenario() -> str:
        r = (inc.s(1) | boom.s() | inc.s()).delay()
        with pytest.raises(JobFailed) as failed:
            r.get(timeout=10)
        return failed.value.error_message

    assert await run(app, scenario) == "boom 2"


async def test_revoke_a_pending_job(app: App) -> None:
    capp = Celery(app=app, set_as_current=False)

    @capp.task
    def later() -> None: ...

    def scenario() -> str:
        r = later.apply_async(countdown=60)
        r.revoke()
        return r.status

    assert await run(app, scenario) == "REVOKED"


@shared_task(name="tests.shared.double")
def double(n: int) -> int:
    return 2 * n


async def test_shared_task_binds_to_the_current_app(app: App) -> None:
    capp = Celery(app=app)  # made after the declaration, as in a Django project
    assert "tests.shared.double" in app.tasks and capp.tasks["tests.shared.double"] is double
    assert await run(app, lambda: capp.send_task("tests.shared.double", (21,)).get(timeout=10)) == 42
