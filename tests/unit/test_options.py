"""Task and send options are spelled once: the keyword types follow the dataclasses."""

from __future__ import annotations

import dataclasses

import pytest

from pigeon import App
from pigeon.task import SendOptionArgs, SendOptions, TaskOptionArgs, TaskOptions


def test_the_keywords_are_the_option_fields() -> None:
    assert set(TaskOptionArgs.__annotations__) == {f.name for f in dataclasses.fields(TaskOptions)} | {"name"}
    assert set(SendOptionArgs.__annotations__) == {f.name for f in dataclasses.fields(SendOptions)}


def test_options_reach_the_task_and_the_handler() -> None:
    app = App("memory://")

    @app.task(queue="q", max_attempts=5, rate="10/s")
    def plain() -> None: ...

    @app.on("order.*", priority=7, name="orders")
    async def handler(order: dict[str, int]) -> None: ...

    assert plain.defaults == TaskOptions(queue="q", max_attempts=5, executor="thread", rate="10/s")
    assert handler.name == "orders" and handler.defaults.priority == 7
    assert handler.defaults.executor == "async"
    assert app.handlers == [("order.*", handler)]
    assert plain.options(delay=2.0, queue=None).send_defaults == SendOptions(delay=2.0)


def test_a_bad_option_is_refused_at_registration() -> None:
    app = App("memory://")
    with pytest.raises(ValueError, match="max_attempts"):
        app.task(max_attempts=0)(lambda: None)


def test_options_share_the_tasks_codec_and_leave_the_task_alone() -> None:
    app = App("memory://")

    @app.task(queue="base")
    def add(a: int, b: int) -> int:
        return a + b

    urgent = add.options(priority=9, queue="urgent")
    assert urgent.codec is add.codec  # built once per task, not on every send with options
    assert (urgent.make_job((1, 2), {}).queue, urgent.make_job((1, 2), {}).priority) == ("urgent", 9)
    assert (add.make_job((1, 2), {}).queue, add.make_job((1, 2), {}).priority) == ("base", 0)
    with pytest.raises(TypeError):
        urgent.make_job(("x", 2), {})
