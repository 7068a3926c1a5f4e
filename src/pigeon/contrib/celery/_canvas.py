"""Celery's canvas over pigeon's workflows: ``group``, ``chord``, ``signature()``; signatures
and chains live with the task (``_task``), as ``task.s()`` and ``|`` make them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pigeon import workflows
from pigeon.contrib.celery._app import Celery, current_app
from pigeon.contrib.celery._options import Unsupported
from pigeon.contrib.celery._result import AsyncResult, GroupResult
from pigeon.contrib.celery._task import CeleryTask, Signature, WorkflowResult, app_of, chain

__all__ = ["Signature", "chain", "chord", "group", "signature"]


class group:  # noqa: N801 - Celery's name
    """Signatures run in parallel; ``group(sig for ...)`` takes a generator."""

    def __init__(self, *tasks: Signature | Iterable[Signature]) -> None:
        flat: list[Signature] = []
        for t in tasks:
            flat.extend([t] if isinstance(t, Signature) else t)
        self.tasks = tuple(flat)

    def __call__(self, **options: Any) -> GroupResult:
        return self.apply_async(**options)

    def delay(self) -> GroupResult:
        return self.apply_async()

    def apply_async(self, **options: Any) -> GroupResult:
        """Send every member in one round trip."""
        if not self.tasks:
            raise ValueError("a group needs at least one member")
        if options:
            raise Unsupported("send options on a whole group are not supported; .set() them on each member")
        handle = workflows.group(*(s.pigeon_signature(False) for s in self.tasks)).send()
        app = app_of(self.tasks)
        members = [
            AsyncResult(i, app=app, task_name=s.task.name)
            for i, s in zip(handle.ids, self.tasks, strict=True)
        ]
        return GroupResult(handle.id, members)

    def __or__(self, other: Signature) -> chord:
        return chord(self.tasks, other)


class chord:  # noqa: N801 - Celery's name
    """A group, then a callback with the list of results: ``chord(header)(callback)``.

    Unlike Celery, a failed member does not stop the callback: its slot holds
    ``{"error": {"type", "message"}}`` (see pigeon's workflows).
    """

    def __init__(self, header: Iterable[Signature], body: Signature | None = None) -> None:
        self.header = tuple(header)
        self.body = body

    def __call__(self, body: Signature | None = None, **options: Any) -> AsyncResult:
        return self.apply_async(body=body, **options)

    def apply_async(self, body: Signature | None = None, **options: Any) -> AsyncResult:
        callback = body or self.body
        if callback is None:
            raise ValueError("a chord needs a callback: chord(header)(callback)")
        if options:
            raise Unsupported("send options on a whole chord are not supported; .set() them on each member")
        flow = workflows.chord(
            [s.pigeon_signature(False) for s in self.header],
            callback.pigeon_signature(receives_previous=True),
        )
        handle = flow.send()
        return WorkflowResult(handle.ids[-1], app=callback.task.app, handle=handle)


def signature(
    varies: str | CeleryTask | Signature,
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    app: Celery | None = None,
    **options: Any,
) -> Signature:
    """``signature("proj.tasks.add", args=(2, 2))`` (a name is looked up on ``app``, by
    default the current app), or from a task or a signature."""
    if isinstance(varies, Signature):
        return varies.clone(args, kwargs)
    task = (app or current_app()).task_by_name(varies) if isinstance(varies, str) else varies
    immutable = bool(options.pop("immutable", False))
    return Signature(task, tuple(args), kwargs, immutable=immutable, options=options)
