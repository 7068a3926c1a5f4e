"""A Celery-shaped task over a pigeon task: ``delay``, ``apply_async``, ``bind=True``, ``self.retry``."""

from __future__ import annotations

import functools
import inspect
import threading
import time
import typing
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from pigeon.contrib.celery._options import (
    CompatOptions,
    MaxRetriesExceededError,
    Unsupported,
    check_serializer,
    map_priority,
)
from pigeon.errors import ConfigurationError, Retry
from pigeon.job import Job
from pigeon.task import JobContext, Task, default_name

if TYPE_CHECKING:
    from pigeon.contrib.celery._app import Celery
    from pigeon.contrib.celery._canvas import Signature
    from pigeon.contrib.celery._result import AsyncResult

PARENT = "celery_parent_result"
"""A hidden keyword-only parameter of every compatible task: in a chain, the previous
result lands here when the step's own parameters are all bound (``.si()``), and is dropped."""

_PICKLE_HINT = (
    " — Celery's pickle serializer let objects through; pigeon sends JSON. Pass an id "
    "(e.g. obj.pk) and load the object in the task, or plain data / a msgspec Struct / a "
    "frozen dataclass."
)

_IGNORED_SEND_OPTIONS = frozenset({"retry", "retry_policy", "ignore_result", "add_to_parent"})


@dataclass(frozen=True)
class Request:
    """What ``self.request`` holds in a ``bind=True`` task."""

    id: str | None
    task: str
    retries: int = 0
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    hostname: str | None = None
    delivery_info: dict[str, Any] = field(default_factory=dict)
    called_directly: bool = False
    is_eager: bool = False
    eta: str | None = None
    expires: str | None = None


class BoundTask:
    """``self`` in a ``bind=True`` task: the task, with the running job's request."""

    def __init__(self, task: CeleryTask, request: Request, ctx: JobContext | None) -> None:
        self._task = task
        self.request = request
        self._ctx = ctx

    def __getattr__(self, name: str) -> Any:
        return getattr(self._task, name)

    def retry(
        self,
        exc: BaseException | None = None,
        countdown: float | None = None,
        eta: datetime | None = None,
        max_retries: int | None = None,
        throw: bool = True,
        **options: Any,
    ) -> typing.NoReturn:
        """Run the task again later; raise ``exc`` (or ``MaxRetriesExceededError``) when out of retries.

        A per-call ``max_retries`` can lower the task's limit, not raise it: the job's
        attempts were fixed when it was sent.
        """
        limit = self._task.options.max_retries if max_retries is None else max_retries
        if limit is not None and self.request.retries >= limit:
            if exc is not None:
                raise exc
            raise MaxRetriesExceededError(f"{self._task.name}: no retries left after {limit}")
        if eta is not None:
            delay = max(0.0, _aware(eta).timestamp() - time.time())
        else:
            delay = self._task.options.default_retry_delay if countdown is None else float(countdown)
        raise Retry(delay=delay, reason=f"retry requested: {exc!r}" if exc is not None else "")

    def progress(self, fraction: float, message: str = "") -> None:
        """Report how far the job is (pigeon's equivalent of ``update_state(state="PROGRESS")``)."""
        if self._ctx is not None:
            self._ctx.progress(fraction, message)

    def update_state(self, task_id: str | None = None, state: str | None = None, meta: Any = None) -> None:
        """Refused: pigeon's states are its own; report progress with ``self.progress(fraction, message)``."""
        raise Unsupported(
            "update_state() with custom states is not supported: report progress with "
            "self.progress(fraction, message), visible on the handle, in `pigeon jobs show` "
            "and as a pigeon.progress event"
        )


class CeleryTask:
    """A task declared the Celery way, run by pigeon. See ``pigeon.contrib.celery``."""

    def __init__(self, fn: Callable[..., Any], options: CompatOptions, app: Celery | None) -> None:
        self.fn = fn
        self.options = options
        self.name = options.name or default_name(fn)
        self.max_retries = options.max_retries
        self.default_retry_delay = options.default_retry_delay
        self._app = app
        self._pigeon: weakref.WeakKeyDictionary[Celery, Task[Any, Any]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<@task: {self.name}>"

    @property
    def app(self) -> Celery:
        """The app this task was declared on, or for a shared task the current app."""
        if self._app is None:
            from pigeon.contrib.celery._app import current_app

            return current_app()
        return self._app

    @property
    def pigeon(self) -> Task[Any, Any]:
        """The pigeon task behind this one on :attr:`app` (registered there on first use)."""
        return self.pigeon_on(self.app)

    def pigeon_on(self, app: Celery) -> Task[Any, Any]:
        """The pigeon task behind this one on ``app``."""
        with self._lock:
            found = self._pigeon.get(app)
            if found is None:
                found = self._pigeon[app] = app.register(self)
            return found

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function here, now (as Celery does): no broker, no retries."""
        if self.options.bind:
            request = Request(None, self.name, args=args, kwargs=kwargs, called_directly=True)
            return self.fn(BoundTask(self, request, None), *args, **kwargs)
        return self.fn(*args, **kwargs)

    def run_job(self, ctx: JobContext, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run one attempt for a worker."""
        if not self.options.bind:
            return self.fn(*args, **kwargs)
        request = Request(
            ctx.job_id,
            self.name,
            retries=ctx.attempt - 1,
            args=args,
            kwargs=kwargs,
            hostname=ctx.worker_id,
            delivery_info={"routing_key": ctx.queue, "queue": ctx.queue},
        )
        return self.fn(BoundTask(self, request, ctx), *args, **kwargs)

    async def arun_job(self, ctx: JobContext, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return await self.run_job(ctx, args, kwargs)

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
        from pigeon.contrib.celery._result import AsyncResult

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
            run_at=None if eta is None else _aware(eta),
            timeout=min(limits) if limits else None,
            expires=_expires(expires if expires is not None else self.options.expires),
        )
        try:
            job = task.make_job(args, kwargs)
        except TypeError as exc:
            raise with_pickle_hint(exc) from None
        return job if task_id is None else msgspec.structs.replace(job, id=task_id)

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A signature: this task with some arguments; in a chain the previous result comes first."""
        from pigeon.contrib.celery._canvas import Signature

        return Signature(self, args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """An immutable signature: in a chain it ignores the previous result."""
        from pigeon.contrib.celery._canvas import Signature

        return Signature(self, args, kwargs, immutable=True)

    def signature(
        self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None, **opts: Any
    ) -> Signature:
        """``task.signature(args, kwargs, immutable=..., queue=...)``."""
        from pigeon.contrib.celery._canvas import Signature

        immutable = bool(opts.pop("immutable", False))
        return Signature(self, tuple(args), dict(kwargs or {}), immutable=immutable, options=opts)

    def AsyncResult(self, task_id: str) -> AsyncResult:  # noqa: N802 - Celery's name
        """A result handle on a job of this task by id."""
        from pigeon.contrib.celery._result import AsyncResult

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


def check_send_options(name: str, options: dict[str, Any]) -> None:
    """Refuse send options pigeon cannot honour; options that mean nothing pass."""
    refused = sorted(set(options) - _IGNORED_SEND_OPTIONS)
    if not refused:
        return
    hints = {
        "link": "chain(task.s(...), callback.s())",
        "link_error": "catch the error in the task, or `pigeon jobs list --state failed`",
        "headers": "pass what you need as an argument",
        "routing_key": "queue=",
        "exchange": "queue=",
    }
    hint = "; ".join(f"{k}: use {hints[k]}" for k in refused if k in hints)
    raise Unsupported(
        f"{name}: send option(s) {', '.join(refused)} not supported" + (f" ({hint})" if hint else "")
    )


def with_pickle_hint(exc: TypeError) -> TypeError:
    message = str(exc)
    if "cannot be encoded" in message or "Encoding objects of type" in message:
        return TypeError(message + _PICKLE_HINT)
    return exc


def _aware(moment: datetime) -> datetime:
    # Celery reads a naive eta as UTC (enable_utc, its default).
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _expires(expires: float | datetime | timedelta | None) -> float | datetime | None:
    if isinstance(expires, datetime):
        return _aware(expires)
    if isinstance(expires, timedelta):
        return expires.total_seconds()
    return expires


def make_runner(task: CeleryTask) -> Callable[..., Any]:
    """The function pigeon runs: the Celery function's signature (without ``self``), a
    ``JobContext`` first and the hidden chain parameter last."""
    fn = task.fn
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())[1 if task.options.bind else 0 :]
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - unresolvable annotations: the arguments go as plain JSON
        hints = {}
    params = [p.replace(annotation=hints.get(p.name, Any)) for p in params]
    ctx = inspect.Parameter("celery_ctx", inspect.Parameter.POSITIONAL_ONLY, annotation=JobContext)
    parent = inspect.Parameter(PARENT, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Any)
    var_kw = [p for p in params if p.kind is p.VAR_KEYWORD]
    params = [ctx, *(p for p in params if p.kind is not p.VAR_KEYWORD), parent, *var_kw]
    runner: Callable[..., Any]
    if inspect.iscoroutinefunction(fn):

        async def run_async(celery_ctx: JobContext, /, *args: Any, **kwargs: Any) -> Any:
            kwargs.pop(PARENT, None)
            return await task.arun_job(celery_ctx, args, kwargs)

        runner = run_async
    else:

        def run_sync(celery_ctx: JobContext, /, *args: Any, **kwargs: Any) -> Any:
            kwargs.pop(PARENT, None)
            return task.run_job(celery_ctx, args, kwargs)

        runner = run_sync
    functools.update_wrapper(runner, fn, assigned=("__module__", "__qualname__", "__doc__", "__name__"))
    ret = hints.get("return", Any)
    runner.__signature__ = sig.replace(parameters=params, return_annotation=ret)  # type: ignore[union-attr]
    runner.__annotations__ = {p.name: p.annotation for p in params} | {"return": ret}
    return runner


def registration_error(name: str) -> ConfigurationError:
    return ConfigurationError(
        f"task {name!r} is not bound to an app: create pigeon.contrib.celery.Celery(...) "
        "before sending (as Celery's shared_task needs a current app)"
    )
