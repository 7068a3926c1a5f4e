"""Test helpers: jobs built by hand, and waiting on conditions with deadlines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec

from pigeon.job import Job, new_id

T = TypeVar("T")


def make_job(
    task: str = "tests.noop",
    *,
    queue: str = "default",
    priority: int = 0,
    run_at: float | None = None,
    unique_key: str | None = None,
    max_attempts: int = 3,
    payload: bytes = b"{}",
) -> Job:
    return Job(
        id=new_id(),
        task=task,
        queue=queue,
        payload=msgspec.Raw(payload),
        priority=priority,
        max_attempts=max_attempts,
        run_at=run_at,
        unique_key=unique_key,
        enqueued_at=time.time(),
    )


async def eventually(
    probe: Callable[[], Awaitable[T]],
    check: Callable[[T], bool] = bool,
    *,
    timeout: float = 10.0,
    what: str = "condition",
) -> T:
    """Poll ``probe`` until ``check`` holds on its value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        value = await probe()
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s (last value: {value!r})")
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.1)


def wait_until(check: Callable[[], Any], *, timeout: float = 10.0, what: str = "condition") -> Any:
    """Synchronous ``eventually``."""
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(pause)
        pause = min(pause * 2, 0.1)
