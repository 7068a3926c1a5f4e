"""Registry: what a worker needs to know of an app's registrations.

:class:`~pigeon.app.App` is the registry; the worker, the ticker and progress
events read it through this protocol, so they depend on what is registered,
not on the app that holds it.
"""

from __future__ import annotations

from typing import Any, Protocol

from pigeon.hooks import JobHook
from pigeon.schedule import Schedule
from pigeon.services import Service
from pigeon.task import Task


class Registry(Protocol):
    """Registered tasks, event handlers, services, schedules and job hooks."""

    handlers: list[tuple[str, Task[Any, Any]]]
    services: list[tuple[Service, tuple[Any, ...]]]
    schedules: list[Schedule]
    job_hooks: list[JobHook]

    def resolve_task(self, name: str) -> Task[Any, Any] | None:
        """The task a job names, or None."""
        ...
