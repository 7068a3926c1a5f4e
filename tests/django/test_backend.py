"""PigeonBackend against Django's Tasks contract, with a real worker, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import django
import pytest
from django.tasks import TaskResultStatus, task_backends
from django.tasks.base import Task as DjangoTask
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.tasks.signals import task_enqueued, task_finished, task_started

from pigeon.contrib.django import PigeonBackend, PigeonTask, get_app
from tests.django.testapp import tasks
from tests.helpers import eventually, wait_until


def on(alias: str, task: DjangoTask[..., Any]) -> DjangoTask[..., Any]:
    return task.using(backend=alias)


def finished(task: DjangoTask[..., Any], result_id: str, timeout: float = 15.0) -> Any:
    def done() -> Any:
        r = task.get_result(result_id)
        return r if r.is_finished else None

    return wait_until(done, timeout=timeout, what=f"task {result_id} finished")


def test_capabilities() -> None:
    backend = task_backends["default"]
    assert isinstance(backend, PigeonBackend)
    assert backend.supports_defer and backend.supports_async_task
    assert backend.supports_get_result and backend.supports_priority
    assert backend.queues == {"default", "emails"}


def test_task_options_through_the_decorator() -> None:
    assert isinstance(tasks.flaky, PigeonTask) and tasks.flaky.max_attempts == 3
    assert tasks.too_slow.timeout == 0.2
    assert tasks.add.using(max_attempts=4, unique_key="k").max_attempts == 4
    with pytest.raises(InvalidTask, match="not valid for backend"):
        tasks.add.using(queue_name="nowhere")


def test_enqueue_run_and_result(alias: str, worker: Any) -> None:
    seen: list[tuple[str, Any, str]] = []

    def listen(signal: str) -> Any:
        def receiver(sender: Any, task_result: Any, **kwargs: Any) -> None:
            seen.append((signal, sender, task_result.status))

        return receiver

    receivers = {s: listen(name) for s, name in ((task_enqueued, "enqueued"), (task_started, "started"),
                                                  (task_finished, "finished"))}  # fmt: skip
    for s, r in receivers.items():
        s.connect(r)
    try:
        add = on(alias, tasks.add)
        result = add.enqueue(2, b=3)
        assert result.status == TaskResultStatus.READY and result.backend == alias
        assert result.args == [2] and result.kwargs == {"b": 3}
        assert result.enqueued_at is not None and result.enqueued_at.tzinfo is not None
        done = finished(add, result.id)
    finally:
        for s, r in receivers.items():
            s.disconnect(r)
    assert done.status is TaskResultStatus.SUCCESSFUL
    assert done.return_value == 5
    assert (done.args, done.kwargs) == ([2], {"b": 3})  # as enqueued
    assert done.errors == [] and done.attempts == 1 and len(done.worker_ids) == 1
    assert done.enqueued_at <= done.started_at <= done.finished_at
    assert done.last_attempted_at == done.started_at
    # The worker may start the job before the sender's thread sends task_enqueued.
    assert sorted((name, sender) for name, sender, _ in seen) == [
        ("enqueued", PigeonBackend),
        ("finished", PigeonBackend),
        ("started", PigeonBackend),
    ]
    names = [name for name, _, _ in seen]
    assert names.index("started") < names.index("finished")
    # Each signal carries the state at its moment; task_enqueued may arrive last.
    assert {name: status for name, _, status in seen} == {
        "enqueued": TaskResultStatus.READY,
        "started": TaskResultStatus.RUNNING,
        "finished": TaskResultStatus.SUCCESSFUL,
    }
    result.refresh()
    assert result.status is TaskResultStatus.SUCCESSFUL  # type: ignore[comparison-overlap]  # refresh() moved it on


def test_failure_keeps_class_path_and_traceback(alias: str, worker: Any) -> None:
    fails = on(alias, tasks.always_fails)
    done = finished(fails, fails.enqueue("cake").id)
    assert done.status is TaskResultStatus.FAILED
    assert done.attempts == 2
    assert len(done.errors) == 2  # one per attempt
    for error in done.errors:
        assert error.exception_class is ValueError
        assert "no cake" in error.traceback and "Traceback" in error.traceback
    with pytest.raises(ValueError, match="Task failed"):
        _ = done.return_value


def test_retries_then_succeeds(alias: str, worker: Any) -> None:
    flaky = on(alias, tasks.flaky)
    done = finished(flaky, flaky.enqueue(f"flaky-{alias}").id)
    assert done.status is TaskResultStatus.SUCCESSFUL and done.return_value == 2
    assert done.attempts == 2
    (error,) = done.errors  # the first attempt's
    assert error.exception_class is ConnectionError


def test_takes_context(alias: str, worker: Any) -> None:
    t = on(alias, tasks.with_context)
    result = t.enqueue("ctx")
    done = finished(t, result.id)
    assert done.return_value == {"id": result.id, "attempt": 2, "label": "ctx"}


async def test_async_task_and_async_api(alias: str, worker: Any) -> None:
    t = on(alias, tasks.async_double)
    try:
        result = await t.aenqueue(21)
        done = await eventually(lambda: t.aget_result(result.id), lambda r: r.is_finished, what="async task")
    finally:
        await get_app(alias).aclose()  # this test's event loop ends with the test
    assert done.return_value == 42


def test_timeout_fails_the_attempt(alias: str, worker: Any) -> None:
    t = on(alias, tasks.too_slow)
    done = finished(t, t.enqueue().id)
    assert done.status is TaskResultStatus.FAILED
    assert done.errors[0].exception_class is TimeoutError


def test_run_after_defers(alias: str, worker: Any) -> None:
    when = datetime.now(UTC) + timedelta(milliseconds=300)
    t = on(alias, tasks.add).using(run_after=when)
    result = t.enqueue(1, 1)
    assert t.get_result(result.id).status is TaskResultStatus.READY
    assert t.get_result(result.id).task.run_after is not None
    done = finished(t, result.id)
    assert done.started_at is not None and done.started_at >= when


def test_priority_and_queue_reach_the_job(alias: str) -> None:
    t = on(alias, tasks.record)
    result = t.enqueue("queued")
    record = get_app(alias).job(result.id).record()
    assert (record.job.queue, record.job.priority) == ("emails", 10)
    assert t.get_result(result.id).task.queue_name == "emails"


def test_unique_key_returns_the_pending_job(alias: str) -> None:
    t = on(alias, tasks.nightly)
    assert t.enqueue().id == t.enqueue().id


def test_unknown_result() -> None:
    with pytest.raises(TaskResultDoesNotExist):
        tasks.add.get_result("0" * 32)


def test_a_worker_that_never_enqueued_resolves_the_task(alias: str) -> None:
    """A fresh app (another process, in effect) runs a job by importing the task's module path."""
    from pigeon.contrib.django._app import DjangoApp
    from pigeon.testing import drain

    add = on(alias, tasks.add)
    result = add.enqueue(20, 22)
    fresh = DjangoApp(get_app(alias).config)
    assert tasks.add.module_path not in dict(fresh.tasks)
    try:
        drain(fresh)
    finally:
        fresh.close()
    assert add.get_result(result.id).return_value == 42


def test_result_of_a_plain_pigeon_job_is_not_a_task_result(alias: str) -> None:
    app = get_app(alias)

    def plain() -> None: ...

    handle = app.task(name="tests.django.plain")(plain).send()
    with pytest.raises(TaskResultDoesNotExist):
        task_backends[alias].get_result(handle.id)


@pytest.mark.skipif(django.VERSION < (6, 1), reason="Django 6.0's tasks cannot be pickled at all")
def test_pickled_task_keeps_pigeon_options() -> None:
    import pickle

    again = pickle.loads(pickle.dumps(tasks.flaky))
    assert dataclasses.asdict(again) == dataclasses.asdict(tasks.flaky)


@pytest.mark.skipif(django.VERSION >= (6, 1), reason="Django 6.1's @task takes pigeon's options")
def test_django_60_decorator_cannot_take_options() -> None:
    from django.tasks import task as django_task

    def job() -> None: ...

    with pytest.raises(TypeError, match="max_attempts"):
        django_task(max_attempts=5)(job)  # type: ignore[call-overload]


@pytest.mark.parametrize("make", [tasks.now, tasks.async_now], ids=["sync", "async"])
def test_a_return_value_django_cannot_store_fails_the_task_for_listeners_too(
    alias: str, worker: Any, make: DjangoTask[..., Any]
) -> None:
    heard: list[Any] = []

    def receiver(sender: Any, task_result: Any, **kwargs: Any) -> None:
        heard.append(task_result.status)

    task_finished.connect(receiver)
    try:
        t = on(alias, make)
        done = finished(t, t.enqueue().id)
    finally:
        task_finished.disconnect(receiver)
    assert done.status is TaskResultStatus.FAILED
    assert done.errors[0].exception_class is TypeError
    assert heard == [TaskResultStatus.FAILED]


def test_an_argument_django_rejects_stores_nothing(alias: str) -> None:
    from pigeon.testing import jobs

    heard: list[Any] = []

    def receiver(sender: Any, task_result: Any, **kwargs: Any) -> None:
        heard.append(task_result.id)

    task_enqueued.connect(receiver)
    try:
        t = on(alias, tasks.echo)
        with pytest.raises(TypeError, match="Unsupported type"):
            t.enqueue(datetime.now(UTC))
        with pytest.raises(TypeError, match="Unsupported type"):
            t.enqueue(value={1, 2})
    finally:
        task_enqueued.disconnect(receiver)
    assert heard == [] and jobs(get_app(alias)) == []


async def test_an_argument_django_rejects_stores_nothing_async(alias: str) -> None:
    t = on(alias, tasks.echo)
    with pytest.raises(TypeError, match="Unsupported type"):
        await t.aenqueue(datetime.now(UTC))
    from asgiref.sync import sync_to_async

    from pigeon.testing import jobs

    try:
        assert await sync_to_async(jobs)(get_app(alias)) == []
    finally:
        await get_app(alias).aclose()


def test_get_result_keeps_args_and_kwargs_as_enqueued(alias: str, worker: Any) -> None:
    t = on(alias, tasks.wait_for)
    by_name = t.enqueue(seconds=0)
    mixed = t.enqueue(0, label="x")
    skipped = t.enqueue(label="y")
    assert (t.get_result(by_name.id).args, t.get_result(by_name.id).kwargs) == ([], {"seconds": 0})
    done = finished(t, mixed.id)
    assert (done.args, done.kwargs, done.return_value) == ([0], {"label": "x"}, "x")
    done = finished(t, skipped.id)
    assert (done.args, done.kwargs, done.return_value) == ([], {"label": "y"}, "y")


def test_keywords_ride_in_a_header_not_in_the_arguments(alias: str) -> None:
    import msgspec

    from pigeon.contrib.django.results import KEYWORDS, KEYWORDS_HEADER
    from pigeon.testing import jobs

    t = on(alias, tasks.wait_for)
    sent = t.enqueue(0, label="x")
    (job,) = [r.job for r in jobs(get_app(alias)) if r.job.id == sent.id]
    assert msgspec.json.decode(bytes(job.payload)) == {"seconds": 0, "label": "x"}
    assert KEYWORDS not in msgspec.json.decode(bytes(job.payload))
    assert (KEYWORDS_HEADER, "label") in job.headers
    assert (t.get_result(sent.id).args, t.get_result(sent.id).kwargs) == ([0], {"label": "x"})


def test_a_job_stored_with_the_keywords_argument_still_runs_and_reads(alias: str, worker: Any) -> None:
    from pigeon.contrib.django.results import KEYWORDS

    t = on(alias, tasks.wait_for)
    app = get_app(alias)
    # As producers stored it before the header: the names as a hidden argument.
    job = app.register(t).make_job((), {"seconds": 0, "label": "old", KEYWORDS: ("seconds", "label")})
    assert not job.headers
    (handle,) = app.enqueue([job])
    done = finished(t, handle.id)
    assert (done.args, done.kwargs, done.return_value) == ([], {"seconds": 0, "label": "old"}, "old")


def test_arguments_over_max_payload_store_nothing(alias: str) -> None:
    from pigeon.limits import MAX_BYTES
    from pigeon.testing import jobs

    heard: list[Any] = []

    def receiver(sender: Any, task_result: Any, **kwargs: Any) -> None:
        heard.append(task_result.id)

    task_enqueued.connect(receiver)
    try:
        with pytest.raises(TypeError, match=f"over the limit of {MAX_BYTES}"):
            on(alias, tasks.echo).enqueue("x" * MAX_BYTES)
    finally:
        task_enqueued.disconnect(receiver)
    assert heard == [] and jobs(get_app(alias)) == []
    assert get_app(alias).client.max_payload == MAX_BYTES
