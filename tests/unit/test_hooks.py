"""Job hooks as a worker calls them: start, success, failure, retry, dead; a broken hook harms nothing."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

from pigeon import App, Fixed, JobState
from pigeon.errors import Retry
from pigeon.hooks import JobHook
from pigeon.job import Job
from pigeon.testing import drain
from tests.helpers import make_job

current = contextvars.ContextVar[str]("current", default="")


class Recorder(JobHook):
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int, str]] = []

    @contextlib.contextmanager
    def _around(self, job: Job) -> Iterator[None]:
        token = current.set(job.id)
        try:
            yield
        finally:
            current.reset(token)

    def around(self, job: Job, attempt: int) -> contextlib.AbstractContextManager[Any]:
        return self._around(job)

    def _add(self, name: str, job: Job, attempt: int, error: BaseException | None = None) -> None:
        self.calls.append((name, job.task.rsplit(".", 1)[-1], attempt, "" if error is None else str(error)))

    def on_start(self, job: Job, attempt: int) -> None:
        self._add("start", job, attempt)

    def on_success(self, job: Job, attempt: int) -> None:
        self._add("success", job, attempt)

    def on_failure(self, job: Job, attempt: int, error: BaseException | None) -> None:
        self._add("failure", job, attempt, error)

    def on_retry(self, job: Job, attempt: int, error: BaseException | None) -> None:
        self._add("retry", job, attempt, error)

    def on_dead(self, job: Job, attempt: int, error: BaseException | None) -> None:
        self._add("dead", job, attempt, error)


class Broken(JobHook):
    def around(self, job: Job, attempt: int) -> contextlib.AbstractContextManager[Any]:
        raise RuntimeError("broken around")

    def on_start(self, job: Job, attempt: int) -> None:
        raise RuntimeError("broken start")


def make_app() -> tuple[App, Recorder, list[str]]:
    app = App("memory://")
    seen: list[str] = []
    recorder = Recorder()
    app.job_hooks += [Broken(), recorder]

    @app.task
    def ok() -> None:
        seen.append(current.get())  # the hook's context is the task's

    @app.task(max_attempts=2, backoff=Fixed(0))
    def bad() -> None:
        raise ValueError("nope")

    @app.task(max_attempts=3, backoff=Fixed(0))
    def again(n: int) -> None:
        if n == 0:
            raise Retry(delay=0)

    return app, recorder, seen


def test_hooks_see_every_ending() -> None:
    app, recorder, seen = make_app()
    ok_id = app.tasks[next(n for n in app.tasks if n.endswith(".ok"))].send().id
    app.tasks[next(n for n in app.tasks if n.endswith(".bad"))].send()
    drain(app)
    assert seen == [ok_id]
    by_task: dict[str, list[tuple[str, int, str]]] = {}
    for name, task, attempt, error in recorder.calls:
        by_task.setdefault(task, []).append((name, attempt, error))
    assert by_task["ok"] == [("start", 1, ""), ("success", 1, "")]
    assert by_task["bad"] == [
        ("start", 1, ""),
        ("failure", 1, "nope"),
        ("retry", 1, "nope"),
        ("start", 2, ""),
        ("failure", 2, "nope"),
        ("dead", 2, "nope"),
    ]
    assert app.job(ok_id).status is JobState.SUCCEEDED
    app.close()


def test_a_requested_retry_is_not_a_failure() -> None:
    app, recorder, _ = make_app()
    app.tasks[next(n for n in app.tasks if n.endswith(".again"))].send(0)
    drain(app)
    names = [c[0] for c in recorder.calls[:3]]
    assert names == ["start", "retry", "start"]
    app.close()


def test_an_undecodable_job_reports_its_decode_error() -> None:
    app, recorder, _ = make_app()

    @app.task
    def typed(n: int) -> None:
        pass

    app.enqueue([make_job(typed.name, payload=b'{"n": "not a number"}')])
    drain(app)
    (start, failure, dead) = recorder.calls
    assert (start[0], failure[0], dead[0]) == ("start", "failure", "dead")
    assert failure[3] != "" and failure[3] == dead[3]  # the exception itself, not None
    app.close()
