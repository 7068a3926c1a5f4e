"""The App behind a TASKS backend, and how its workers find django tasks by name.

A django ``Task`` is sent as a pigeon job named by the task's ``module_path``.
The sender registers it on first enqueue; a worker that never enqueued it
resolves the name on first sight by importing the module path (as Django's own
``Task.__reduce__`` does), so workers need no list of task modules.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import threading
import typing
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.core.signals import setting_changed
from django.db import close_old_connections
from django.tasks import Task as DjangoTask
from django.tasks import TaskContext, TaskResult, TaskResultStatus, task_backends
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.signals import task_finished, task_started
from django.utils.json import normalize_json

from pigeon.app import App
from pigeon.contrib.django.conf import BackendConfig, config_for
from pigeon.contrib.django.results import KEYWORDS, to_datetime
from pigeon.retry import Backoff
from pigeon.task import JobContext, Task
from pigeon.worker.config import WorkerConfig


class DjangoApp(App):
    """An :class:`App` whose broker URL follows the Django settings and whose workers import tasks."""

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        # The URL is read when a broker opens: Django swaps in the test database's name late.
        super().__init__(
            config.broker_url,
            result_ttl=config.result_ttl,
            failed_ttl=config.failed_ttl,
            max_payload=config.max_payload,
        )
        self._resolve_lock = threading.RLock()

    def resolve_task(self, name: str) -> Task[Any, Any] | None:
        """A registered task, or one found by importing ``name``'s module (see the module docstring)."""
        return self.tasks.get(name) or self.resolve(name)

    def __repr__(self) -> str:
        return f"<DjangoApp {self.config.alias}>"

    def worker_defaults(self) -> WorkerConfig:
        """The backend's QUEUES, then ``OPTIONS["worker"]`` (which may name other queues)."""
        changes: dict[str, Any] = {"queues": self.config.queues, **self.config.worker}
        return WorkerConfig().replace(**changes)

    def register(self, task: DjangoTask[Any, Any]) -> Task[Any, Any]:
        """The pigeon task that runs a django task (registered on first use)."""
        name = task.module_path
        with self._resolve_lock:
            found = self.tasks.get(name)
            if found is None:
                found = _pigeon_task(self, task)
            return found

    def resolve(self, name: str) -> Task[Any, Any] | None:
        """A task this process has not registered yet, found by importing ``name``'s module."""
        path = name.split("@", 1)[0]  # event handlers are named module.qualname@pattern
        module_name, _, attr = path.rpartition(".")
        with self._resolve_lock:
            while module_name:
                try:
                    module = importlib.import_module(module_name)
                except ImportError:
                    module_name, _, outer = module_name.rpartition(".")
                    attr = f"{outer}.{attr}"
                    continue
                found = self.tasks.get(name)
                if found is not None:  # importing the module registered it (@app.task, @app.on)
                    return found
                obj: Any = module
                for part in attr.split("."):
                    obj = getattr(obj, part, None)
                if isinstance(obj, DjangoTask):  # sent here, so ours whatever its default backend
                    return self.register(obj)
                return None
        return None


def _pigeon_task(app: DjangoApp, task: DjangoTask[Any, Any]) -> Task[Any, Any]:
    fn = task.func
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    if task.takes_context:
        params = params[1:]
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - unresolvable annotations: the arguments go as plain JSON
        hints = {}
    ctx_param = inspect.Parameter("pigeon_ctx", inspect.Parameter.POSITIONAL_ONLY, annotation=JobContext)
    params = [p.replace(annotation=hints.get(p.name, Any)) for p in params]
    if any(p.kind is p.POSITIONAL_OR_KEYWORD for p in params):
        params = _with_keywords_param(params)
    annotations = {p.name: p.annotation for p in params}
    runner = _Runner(app, task)
    wrapper: Callable[..., Any]
    if inspect.iscoroutinefunction(fn):

        async def run_async(pigeon_ctx: JobContext, /, *args: Any, **kwargs: Any) -> Any:
            kwargs.pop(KEYWORDS, None)
            return await runner.run_async(pigeon_ctx, args, kwargs)

        wrapper = run_async
    else:

        def run_sync(pigeon_ctx: JobContext, /, *args: Any, **kwargs: Any) -> Any:
            kwargs.pop(KEYWORDS, None)
            return runner.run_sync(pigeon_ctx, args, kwargs)

        wrapper = run_sync
    functools.update_wrapper(wrapper, fn, assigned=("__module__", "__qualname__", "__doc__", "__name__"))
    wrapper.__signature__ = sig.replace(  # type: ignore[union-attr]  # read by inspect.signature
        parameters=[ctx_param, *params], return_annotation=hints.get("return", Any)
    )
    wrapper.__annotations__ = {"pigeon_ctx": JobContext, **annotations, "return": hints.get("return", Any)}
    extra = _extras(task)
    return app.task(
        name=task.module_path,
        queue=task.queue_name,
        priority=task.priority,
        max_attempts=extra.get("max_attempts") or app.config.max_attempts,
        timeout=extra.get("timeout"),
        backoff=extra.get("backoff") or Backoff(),
        retry_on=extra.get("retry_on") or (Exception,),
    )(wrapper)


def _with_keywords_param(params: list[inspect.Parameter]) -> list[inspect.Parameter]:
    """``params`` plus the hidden keyword-only :data:`KEYWORDS` (before any ``**kwargs``)."""
    kind = inspect.Parameter.KEYWORD_ONLY
    extra = inspect.Parameter(KEYWORDS, kind, default=(), annotation=tuple[str, ...])
    if params and params[-1].kind is inspect.Parameter.VAR_KEYWORD:
        return [*params[:-1], extra, params[-1]]
    return [*params, extra]


def _extras(task: DjangoTask[Any, Any]) -> dict[str, Any]:
    """The pigeon fields of a :class:`~pigeon.contrib.django.backend.PigeonTask` (none on others)."""
    django_fields = {f.name for f in dataclasses.fields(DjangoTask)}
    names = [f.name for f in dataclasses.fields(task) if f.name not in django_fields]
    return {n: getattr(task, n) for n in names if getattr(task, n) is not None}


class _Runner:
    """Runs one django task function for a pigeon job, with Django's context and signals."""

    def __init__(self, app: DjangoApp, task: DjangoTask[Any, Any]) -> None:
        self.app = app
        self.task = task

    def _result(self, ctx: JobContext, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TaskResult[Any, Any]:
        now = to_datetime(datetime.now(UTC).timestamp())
        task = self.task
        if ctx.queue != task.queue_name and ctx.queue in self.app.config.queues:
            task = dataclasses.replace(task, queue_name=ctx.queue)
        return TaskResult(
            task=task,
            id=ctx.job_id,
            status=TaskResultStatus.RUNNING,
            enqueued_at=None,
            started_at=now,
            last_attempted_at=now,
            finished_at=None,
            args=list(args),
            kwargs=dict(kwargs),
            backend=self.app.config.alias,
            errors=[],
            worker_ids=[ctx.worker_id] * ctx.attempt,
        )

    def _call_args(self, result: TaskResult[Any, Any], args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (TaskContext(task_result=result), *args) if self.task.takes_context else args

    def run_sync(self, ctx: JobContext, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        close_old_connections()
        try:
            result = self._result(ctx, args, kwargs)
            sender = _sender(self.app)
            task_started.send(sender, task_result=result)
            try:
                # Normalised as Django's backends do, before the status is decided: a value
                # that cannot be stored fails the task here, and listeners hear FAILED.
                value = normalize_json(self.task.func(*self._call_args(result, args), **kwargs))
            except BaseException:
                _finish(result, TaskResultStatus.FAILED)
                task_finished.send(sender, task_result=result)
                raise
            _finish(result, TaskResultStatus.SUCCESSFUL)
            task_finished.send(sender, task_result=result)
            return value
        finally:
            close_old_connections()

    async def run_async(self, ctx: JobContext, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        from asgiref.sync import sync_to_async

        result = self._result(ctx, args, kwargs)
        sender = _sender(self.app)
        await task_started.asend(sender, task_result=result)
        try:
            value = normalize_json(await self.task.func(*self._call_args(result, args), **kwargs))
        except BaseException:
            _finish(result, TaskResultStatus.FAILED)
            await task_finished.asend(sender, task_result=result)
            raise
        finally:
            await sync_to_async(close_old_connections)()
        _finish(result, TaskResultStatus.SUCCESSFUL)
        await task_finished.asend(sender, task_result=result)
        return value


def _finish(result: TaskResult[Any, Any], status: TaskResultStatus) -> None:
    object.__setattr__(result, "status", status)
    object.__setattr__(result, "finished_at", to_datetime(datetime.now(UTC).timestamp()))


def _sender(app: DjangoApp) -> type[BaseTaskBackend]:
    """The configured backend class (a PigeonBackend), as Django's own backends send ``type(self)``."""
    return type(task_backends[app.config.alias])


_apps: dict[str, DjangoApp] = {}
_apps_lock = threading.Lock()


def get_app(alias: str = "default") -> DjangoApp:
    """The App behind ``TASKS[alias]``, for event handlers, services and workers.

    One per alias and process, shared by every thread (the TASKS backends
    themselves are per thread). Creating it connects to nothing.

    Raises:
        ConfigurationError: ``TASKS[alias]`` is not a pigeon backend or is misconfigured.
    """
    with _apps_lock:
        app = _apps.get(alias)
        if app is None:
            app = _apps[alias] = DjangoApp(config_for(alias))
        return app


def _forget_apps(*, setting: str, **kwargs: Any) -> None:
    """A changed TASKS (override_settings in tests) gets fresh apps."""
    if setting == "TASKS":
        with _apps_lock:
            old = list(_apps.values())
            _apps.clear()
        for app in old:
            app.close()


setting_changed.connect(_forget_apps, dispatch_uid="pigeon.contrib.django.forget_apps")
