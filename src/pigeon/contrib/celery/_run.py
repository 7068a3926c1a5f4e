"""Running a compatible task: the function pigeon runs, ``self`` in a ``bind=True`` task."""

from __future__ import annotations

import functools
import inspect
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from pigeon.contrib.celery._options import CompatOptions, MaxRetriesExceededError, Unsupported, aware
from pigeon.errors import Retry
from pigeon.task import JobContext

PARENT = "celery_parent_result"
"""A hidden keyword-only parameter of every compatible task: in a chain, the previous
result lands here when the step's own parameters are all bound (``.si()``), and is dropped."""


class _Task(Protocol):
    """What running needs of a task (``CeleryTask``; a bound task reaches the rest by name)."""

    @property
    def fn(self) -> Callable[..., Any]: ...

    @property
    def name(self) -> str: ...

    @property
    def options(self) -> CompatOptions: ...


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

    def __init__(self, task: _Task, request: Request, ctx: JobContext | None) -> None:
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
            delay = max(0.0, aware(eta).timestamp() - time.time())
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


def run_job(task: _Task, ctx: JobContext, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run one attempt for a worker."""
    if not task.options.bind:
        return task.fn(*args, **kwargs)
    request = Request(
        ctx.job_id,
        task.name,
        retries=ctx.attempt - 1,
        args=args,
        kwargs=kwargs,
        hostname=ctx.worker_id,
        delivery_info={"routing_key": ctx.queue, "queue": ctx.queue},
    )
    return task.fn(BoundTask(task, request, ctx), *args, **kwargs)


def make_runner(task: _Task) -> Callable[..., Any]:
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
            return await run_job(task, celery_ctx, args, kwargs)

        runner = run_async
    else:

        def run_sync(celery_ctx: JobContext, /, *args: Any, **kwargs: Any) -> Any:
            kwargs.pop(PARENT, None)
            return run_job(task, celery_ctx, args, kwargs)

        runner = run_sync
    functools.update_wrapper(runner, fn, assigned=("__module__", "__qualname__", "__doc__", "__name__"))
    ret = hints.get("return", Any)
    runner.__signature__ = sig.replace(parameters=params, return_annotation=ret)  # type: ignore[union-attr]
    runner.__annotations__ = {p.name: p.annotation for p in params} | {"return": ret}
    return runner
