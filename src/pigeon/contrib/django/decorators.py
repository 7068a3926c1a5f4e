"""``task``: Django's ``@task`` with pigeon's options, on Django 6.0 as on 6.1."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, overload

import django
from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, DEFAULT_TASK_QUEUE_NAME, task_backends
from django.tasks import task as django_task
from django.tasks.base import DEFAULT_TASK_PRIORITY

from pigeon.contrib.django.backend import PIGEON_TASK_FIELDS, PigeonTask
from pigeon.errors import ConfigurationError


@overload
def task(function: Callable[..., Any], /) -> PigeonTask: ...


@overload
def task(
    *,
    priority: int = DEFAULT_TASK_PRIORITY,
    queue_name: str = DEFAULT_TASK_QUEUE_NAME,
    backend: str = DEFAULT_TASK_BACKEND_ALIAS,
    takes_context: bool = False,
    **options: Any,
) -> Callable[[Callable[..., Any]], PigeonTask]: ...


def task(
    function: Callable[..., Any] | None = None,
    /,
    *,
    priority: int = DEFAULT_TASK_PRIORITY,
    queue_name: str = DEFAULT_TASK_QUEUE_NAME,
    backend: str = DEFAULT_TASK_BACKEND_ALIAS,
    takes_context: bool = False,
    **options: Any,
) -> Any:
    """``django.tasks.task`` taking pigeon's options (``max_attempts``, ``timeout``, ``delay``,
    ``unique_key``, ``backoff``, ``retry_on``).

    On Django 6.1 plain ``@django.tasks.task(max_attempts=5)`` does the same;
    Django 6.0's decorator cannot pass options, so use this one there.

    Raises:
        ConfigurationError: an unknown option, or ``backend`` is not a pigeon backend.
    """
    unknown = sorted(set(options) - set(PIGEON_TASK_FIELDS))
    if unknown:
        raise ConfigurationError(
            f"unknown task option(s) {', '.join(unknown)} (pigeon's: {', '.join(PIGEON_TASK_FIELDS)})"
        )
    if django.VERSION >= (6, 1):
        return django_task(  # type: ignore[call-overload]  # 6.1 passes **options to task_class
            function,
            priority=priority,
            queue_name=queue_name,
            backend=backend,
            takes_context=takes_context,
            **options,
        )

    def wrap(f: Callable[..., Any]) -> PigeonTask:
        if not issubclass(task_backends[backend].task_class, PigeonTask):
            raise ConfigurationError(f"TASKS[{backend!r}] is not a pigeon backend: it cannot take {options}")
        return PigeonTask(
            func=f,
            run_after=None,  # 6.0's Task has no default for it
            priority=priority,
            queue_name=queue_name,
            backend=backend,
            takes_context=takes_context,
            **options,
        )

    return wrap(function) if function is not None else wrap
