"""Celery's canvas over pigeon's workflows: signatures, ``|``, ``chain``, ``group``, ``chord``.

Celery passes a chain's previous result as the *first* argument of the next step;
``task.s(10)`` in a chain means ``task(previous, 10)``. Pigeon fills the first
unbound parameter, so a step's own arguments are bound from the second parameter
on. An immutable signature (``.si()``) binds all its parameters, and the previous
result lands in a hidden parameter that is dropped.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pigeon import task as pigeon_task
from pigeon import workflows
from pigeon.contrib.celery._options import Unsupported
from pigeon.contrib.celery._result import AsyncResult, GroupResult
from pigeon.contrib.celery._task import with_pickle_hint
from pigeon.errors import JobCancelled, JobFailed

if TYPE_CHECKING:
    from pigeon.contrib.celery._app import Celery
    from pigeon.contrib.celery._task import CeleryTask

_STEP_OPTIONS = frozenset({"queue", "priority"})


class Signature:
    """A task with arguments and options; ``|`` chains signatures."""

    def __init__(
        self,
        task: CeleryTask,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        immutable: bool = False,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.task = task
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        self.immutable = immutable
        self.options = dict(options or {})

    def __repr__(self) -> str:
        return f"{self.task.name}{'si' if self.immutable else 's'}{self.args!r}"

    def set(self, **options: Any) -> Signature:
        """Add send options (``queue``, ``priority``, ``countdown``, ...); returns self, as in Celery."""
        self.options.update(options)
        return self

    def clone(self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Signature:
        return Signature(
            self.task,
            self.args + tuple(args),
            {**self.kwargs, **(kwargs or {})},
            immutable=self.immutable,
            options=self.options,
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task here, now, with these arguments added."""
        return self.task(*self.args, *args, **{**self.kwargs, **kwargs})

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return self.apply_async(args, kwargs)

    def apply_async(
        self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None, **options: Any
    ) -> AsyncResult:
        return self.task.apply_async(
            self.args + tuple(args), {**self.kwargs, **(kwargs or {})}, **{**self.options, **options}
        )

    def __or__(self, other: Signature | chain) -> chain:
        return chain(self, *(other.tasks if isinstance(other, chain) else (other,)))

    # -- as a pigeon workflow step -------------------------------------------

    def pigeon_signature(self, receives_previous: bool) -> pigeon_task.Signature:
        """This step for pigeon's workflows; ``receives_previous``: a result comes in first."""
        extra = sorted(set(self.options) - _STEP_OPTIONS)
        if extra and receives_previous:
            raise Unsupported(
                f"{self.task.name}: {', '.join(extra)} on a step after the first is not supported; "
                "put it on the first step, or send the step from the task before it"
            )
        task = self.task.pigeon.options(
            queue=self.options.get("queue"), priority=self.options.get("priority")
        )
        args, kwargs = self.args, self.kwargs
        if receives_previous and not self.immutable:
            args, kwargs = (), {**_shift(self.task, args), **kwargs}
        elif receives_previous:
            kwargs = {**_defaults(self.task, args, kwargs), **kwargs}
        try:
            return task.s(*args, **kwargs)
        except TypeError as exc:
            raise with_pickle_hint(exc) from None


def _params(task: CeleryTask) -> list[inspect.Parameter]:
    params = list(inspect.signature(task.fn).parameters.values())
    return params[1:] if task.options.bind else params


def _shift(task: CeleryTask, args: tuple[Any, ...]) -> dict[str, Any]:
    """Positional arguments bound from the second parameter on (the first takes the result)."""
    named = [p for p in _params(task) if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if len(args) > max(0, len(named) - 1):
        raise TypeError(f"{task.name}: too many arguments for a chained step ({len(args)} after the result)")
    return {p.name: a for p, a in zip(named[1:], args, strict=False)}


def _defaults(task: CeleryTask, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The defaults an immutable step leaves unbound, bound, so no result can take their place."""
    params = _params(task)
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return {}
    bound = inspect.signature(task.fn).bind_partial(*((None,) if task.options.bind else ()), *args, **kwargs)
    return {
        p.name: p.default
        for p in params
        if p.name not in bound.arguments and p.default is not p.empty and p.kind is not p.VAR_KEYWORD
    }


def _app_of(sigs: Iterable[Signature]) -> Celery:
    for s in sigs:
        return s.task.app
    raise ValueError("an empty workflow")


class _WorkflowResult(AsyncResult):
    """The last job's result, failing as soon as any job of the workflow fails."""

    def __init__(self, id: str, *, app: Celery, handle: Any) -> None:
        super().__init__(id, app=app)
        self._workflow = handle

    def get(
        self, timeout: float | None = None, propagate: bool = True, interval: float = 0.5, **_: Any
    ) -> Any:
        try:
            return self._workflow.result(timeout=timeout)
        except (JobFailed, JobCancelled) as exc:
            if propagate:
                raise
            return exc

    def revoke(self, terminate: bool = False, **_: Any) -> None:
        self._workflow.cancel()


class chain:  # noqa: N801 - Celery's name
    """Steps run one after another, each result the first argument of the next."""

    def __init__(self, *tasks: Signature | Iterable[Signature]) -> None:
        flat: list[Signature] = []
        for t in tasks:
            flat.extend([t] if isinstance(t, Signature) else t)
        if not flat:
            raise ValueError("a chain needs at least one step")
        self.tasks = tuple(flat)

    def __or__(self, other: Signature | chain) -> chain:
        return chain(*self.tasks, *(other.tasks if isinstance(other, chain) else (other,)))

    def __call__(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return self.apply_async(args, kwargs)

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return self.apply_async(args, kwargs)

    def apply_async(
        self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None, **options: Any
    ) -> AsyncResult:
        """Send the chain; the result is the last step's, failing when any step fails."""
        first = self.tasks[0].clone(tuple(args), kwargs)
        first.options.update(options)
        head = first.task.make_job(first.args, first.kwargs, **first.options)
        steps = [s.pigeon_signature(receives_previous=True) for s in self.tasks[1:]]
        flow = workflows.chain(_Prebuilt(first, head), *steps)
        app = _app_of(self.tasks)
        handle = flow.send()
        return _WorkflowResult(handle.ids[-1], app=app, handle=handle)


class _Prebuilt(pigeon_task.Signature):
    """The chain's first step, its job already built with the send options (countdown, eta, ...)."""

    def __init__(self, sig: Signature, job: Any) -> None:
        super().__init__(sig.task.pigeon, sig.args, sig.kwargs)
        object.__setattr__(self, "_job", job)

    def job(self, job_id: str, then: Any = None, payload: bytes | None = None) -> Any:
        import msgspec

        return msgspec.structs.replace(self._job, id=job_id, then=then)  # type: ignore[attr-defined]


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
        app = _app_of(self.tasks)
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
        return _WorkflowResult(handle.ids[-1], app=callback.task.app, handle=handle)


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
    if isinstance(varies, str):
        from pigeon.contrib.celery._app import current_app

        task = (app or current_app()).task_by_name(varies)
    else:
        task = varies
    immutable = bool(options.pop("immutable", False))
    return Signature(task, tuple(args), kwargs, immutable=immutable, options=options)
