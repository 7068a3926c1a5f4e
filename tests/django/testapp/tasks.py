"""Django tasks as a project would write them: plain django.tasks, with pigeon's options on 6.1."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from django.tasks import TaskContext

from tests.django.testapp.compat import task
from tests.django.testapp.models import Ran


@task
def add(a: int, b: int) -> int:
    return a + b


@task(queue_name="emails", priority=10)
def record(label: str) -> str:
    Ran.objects.create(label=label)
    return label


@task(backend="outside")
def outside_add(a: int, b: int) -> int:
    return a + b


@task(max_attempts=3)
def flaky(label: str) -> int:
    ran = Ran.objects.create(label=label)
    if Ran.objects.filter(label=label).count() < 2:
        raise ConnectionError(f"attempt {ran.pk} failed")
    return Ran.objects.filter(label=label).count()


@task(max_attempts=2)
def always_fails(label: str) -> None:
    raise ValueError(f"no {label}")


@task(takes_context=True, max_attempts=2)
def with_context(context: TaskContext[..., Any], label: str) -> dict[str, object]:
    if context.attempt < 2:
        raise RuntimeError("first attempt fails")
    return {"id": context.task_result.id, "attempt": context.attempt, "label": label}


@task
async def async_double(n: int) -> int:
    await asyncio.sleep(0)
    return n * 2


@task(timeout=0.2)
async def too_slow() -> None:
    await asyncio.sleep(30)


@task(unique_key="nightly-report")
def nightly() -> str:
    return "report"


@task(queue_name="inproc", backend="inproc")
def inproc_add(a: int, b: int) -> int:
    return a + b


@task
def echo(value: Any) -> Any:
    return value


@task
def wait_for(seconds: float = 0.0, label: str = "") -> str:
    return label


@task
def now() -> Any:
    """Returns what Django cannot store as a result (ImmediateBackend fails it too)."""
    return datetime.now(UTC)


@task
async def async_now() -> Any:
    return datetime.now(UTC)
