"""A Celery-shaped task over a pigeon task (``delay``, ``apply_async``, ``bind=True``), and
its signatures and chains: ``task.s()`` makes a :class:`Signature`, ``sig | sig`` a
:class:`chain`, so the three live together (groups and chords: ``_canvas``).

Celery passes a chain's previous result as the *first* argument of the next step;
``task.s(10)`` in a chain means ``task(previous, 10)``. Pigeon fills the first unbound
parameter, so a step's own arguments are bound from the second parameter on. An
immutable signature (``.si()``) binds all its parameters, and the previous result lands
in a hidden parameter that is dropped.
"""

from __future__ import annotations

import functools
import inspect
import threading
import typing
import weakref
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

import msgspec

from pigeon import task as pigeon_task
from pigeon import workflows
from pigeon.contrib.celery import _current
from pigeon.contrib.celery._current import CeleryApp
from pigeon.contrib.celery._options import (
    CompatOptions,
    Unsupported,
    aware,
    check_send_options,
    check_serializer,
    expires_in,
    map_priority,
    with_pickle_hint,
)
from pigeon.contrib.celery._result import AsyncResult
from pigeon.contrib.celery._run import BoundTask, Request, make_runner
from pigeon.errors import JobCancelled, JobFailed
from pigeon.job import Job
from pigeon.task import Task, default_name

_STEP_OPTIONS = frozenset({"queue", "priority"})


class CeleryTask:
    """A task declared the Celery way, run by pigeon. See ``pigeon.contrib.celery``."""

    def __init__(self, fn: Callable[..., Any], options: CompatOptions, app: CeleryApp | None) -> None:
        self.fn = fn
        self.options = options
        self.name = options.name or default_name(fn)
        self.max_retries = options.max_retries
        self.default_retry_delay = options.default_retry_delay
        self._app = app
        self._pigeon: weakref.WeakKeyDictionary[CeleryApp, Task[Any, Any]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<@task: {self.name}>"

    @property
    def app(self) -> CeleryApp:
        """The app this task was declared on, or for a shared task the current app."""
        return _current.current() if self._app is None else self._app

    @property
    def pigeon(self) -> Task[Any, Any]:
        """The pigeon task behind this one on :attr:`app` (registered there on first use)."""
        return self.pigeon_on(self.app)

    def pigeon_on(self, app: CeleryApp) -> Task[Any, Any]:
        """The pigeon task behind this one on ``app`` (registered on its pigeon App once)."""
        with self._lock:
            found = self._pigeon.get(app)
            if found is None:
                o = self.options
                found = self._pigeon[app] = app.pigeon.task(
                    name=self.name,
                    queue=o.queue,
                    priority=o.priority,
                    max_attempts=o.max_attempts,
                    timeout=o.timeout,
                    backoff=o.backoff,
                    retry_on=o.autoretry_for,
                    rate=o.rate,
                )(make_runner(self))
            return found

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function here, now (as Celery does): no broker, no retries."""
        if self.options.bind:
            request = Request(None, self.name, args=args, kwargs=kwargs, called_directly=True)
            return self.fn(BoundTask(self, request, None), *args, **kwargs)
        return self.fn(*args, **kwargs)

    # -- sending ---------------------------------------------------------------

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        """Send with these arguments (``apply_async`` without options)."""
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: tuple[Any, ...] | list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: datetime | None = None,
        expires: float | datetime | timedelta | None = None,
        queue: str | None = None,
        priority: int | None = None,
        task_id: str | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Send one job. Arguments are checked and encoded as JSON here.

        Raises:
            TypeError: the arguments do not fit the function, or cannot be sent as JSON.
            Unsupported: an option pigeon cannot honour (``link``, ``pickle``, ...).
        """
        job = self.make_job(
            tuple(args or ()),
            dict(kwargs or {}),
            countdown=countdown,
            eta=eta,
            expires=expires,
            queue=queue,
            priority=priority,
            task_id=task_id,
            **options,
        )
        self.app.pigeon.enqueue([job])
        return AsyncResult(job.id, app=self.app, task_name=self.name)

    def make_job(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        countdown: float | None = None,
        eta: datetime | None = None,
        expires: float | datetime | timedelta | None = None,
        queue: str | None = None,
        priority: int | None = None,
        task_id: str | None = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        serializer: str | None = None,
        **options: Any,
    ) -> Job:
        """The job ``apply_async`` would send (see there)."""
        check_send_options(self.name, options)
        check_serializer(self.name, serializer)
        if countdown is not None and eta is not None:
            raise ValueError("give countdown or eta, not both")
        limits = [v for v in (time_limit, soft_time_limit) if v is not None]
        task = self.pigeon.options(
            queue=queue,
            priority=None if priority is None else map_priority(priority),
            delay=countdown,
            run_at=None if eta is None else aware(eta),
            timeout=min(limits) if limits else None,
            expires=expires_in(expires if expires is not None else self.options.expires),
        )
        try:
            job = task.make_job(args, kwargs)
        except TypeError as exc:
            raise with_pickle_hint(exc) from None
        return job if task_id is None else msgspec.structs.replace(job, id=task_id)

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A signature: this task with some arguments; in a chain the previous result comes first."""
        return Signature(self, args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """An immutable signature: in a chain it ignores the previous result."""
        return Signature(self, args, kwargs, immutable=True)

    def signature(
        self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None, **opts: Any
    ) -> Signature:
        """``task.signature(args, kwargs, immutable=..., queue=...)``."""
        immutable = bool(opts.pop("immutable", False))
        return Signature(self, tuple(args), dict(kwargs or {}), immutable=immutable, options=opts)

    def AsyncResult(self, task_id: str) -> AsyncResult:  # noqa: N802 - Celery's name
        """A result handle on a job of this task by id."""
        return AsyncResult(task_id, app=self.app, task_name=self.name)

    def apply(self, *args: Any, **kwargs: Any) -> typing.NoReturn:
        """Refused: eager execution. Run jobs in tests with ``pigeon.testing.drain(app)``."""
        raise Unsupported(
            "apply() (eager execution) is not supported: call the task directly to run it here, "
            "or send it and run pigeon.testing.drain(app) in tests"
        )

    def update_state(self, *args: Any, **kwargs: Any) -> typing.NoReturn:
        """Refused, as on ``self`` in a bound task."""
        BoundTask(self, Request(None, self.name), None).update_state()
        raise AssertionError("unreachable")


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


def app_of(sigs: Iterable[Signature]) -> CeleryApp:
    for s in sigs:
        return s.task.app
    raise ValueError("an empty workflow")


class WorkflowResult(AsyncResult):
    """The last job's result, failing as soon as any job of the workflow fails."""

    def __init__(self, id: str, *, app: CeleryApp, handle: Any) -> None:
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
        app = app_of(self.tasks)
        handle = flow.send()
        return WorkflowResult(handle.ids[-1], app=app, handle=handle)


class _Prebuilt(pigeon_task.Signature):
    """The chain's first step, its job already built with the send options (countdown, eta, ...)."""

    def __init__(self, sig: Signature, job: Any) -> None:
        super().__init__(sig.task.pigeon, sig.args, sig.kwargs)
        object.__setattr__(self, "_job", job)

    def job(self, job_id: str, then: Any = None, payload: bytes | None = None) -> Any:
        import msgspec

        return msgspec.structs.replace(self._job, id=job_id, then=then)  # type: ignore[attr-defined]
