"""``PigeonBackend``: Django's Tasks API (``django.tasks``) on pigeon's brokers and workers.

``enqueue`` inside ``transaction.atomic()`` joins the transaction: when the
queue lives in the Django database the job row is written with Django's own
connection (invisible until commit, gone on rollback); when it lives elsewhere
the job is sent on commit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core import checks
from django.db import connections, transaction
from django.tasks import Task as DjangoTask
from django.tasks import TaskResult, TaskResultStatus
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.exceptions import TaskResultDoesNotExist
from django.tasks.signals import task_enqueued
from django.utils.json import normalize_json

from pigeon.contrib.django import results
from pigeon.contrib.django._app import DjangoApp, get_app
from pigeon.contrib.django.conf import BackendConfig
from pigeon.contrib.django.dbapi import enqueue_in_django
from pigeon.errors import JobNotFound
from pigeon.job import Job
from pigeon.retry import BackoffPolicy
from pigeon.task import Task

if TYPE_CHECKING:
    _Task = DjangoTask[Any, Any]
else:  # Task is generic only in django-stubs
    _Task = DjangoTask


@dataclass(frozen=True, slots=True, kw_only=True)
class PigeonTask(_Task):
    """A django Task with pigeon's options; ``@task(max_attempts=5, timeout=30)`` on Django 6.1.

    Attributes:
        max_attempts: attempts before the task fails (default: the backend's
            ``max_attempts`` option, 1 unless set, as Django's backends).
        timeout: seconds one attempt may run.
        delay: seconds after enqueue before the task may start (ignored when
            ``run_after`` is given).
        unique_key: while a job with this key is pending, enqueues return it.
        backoff: delay policy between attempts (``pigeon.Backoff``, ``pigeon.Fixed``).
        retry_on: exception classes that spend an attempt and retry.
    """

    max_attempts: int | None = None
    timeout: float | None = None
    delay: float | None = None
    unique_key: str | None = None
    backoff: BackoffPolicy | None = None
    retry_on: tuple[type[BaseException], ...] | None = None

    def using(
        self,
        *,
        priority: int | None = None,
        queue_name: str | None = None,
        run_after: Any = None,
        backend: str | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        delay: float | None = None,
        unique_key: str | None = None,
    ) -> PigeonTask:
        """A copy with other defaults (Django's, and pigeon's per-send options)."""
        changes = {
            k: v
            for k, v in dict(
                priority=priority,
                queue_name=queue_name,
                run_after=run_after,
                backend=backend,
                max_attempts=max_attempts,
                timeout=timeout,
                delay=delay,
                unique_key=unique_key,
            ).items()
            if v is not None
        }
        return dataclasses.replace(self, **changes)


_SENDERS = 1024
"""Django tasks whose pigeon sender a backend keeps (each is made once, not per enqueue)."""
_DJANGO_FIELDS = {f.name for f in dataclasses.fields(_Task)}
PIGEON_TASK_FIELDS = tuple(f.name for f in dataclasses.fields(PigeonTask) if f.name not in _DJANGO_FIELDS)
"""The options PigeonTask adds to Django's Task, read from its fields."""


class PigeonBackend(BaseTaskBackend):
    """The pigeon TASKS backend (see :mod:`pigeon.contrib.django.conf` for ``OPTIONS``)."""

    task_class = PigeonTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self._params = params
        self._senders: dict[DjangoTask[Any, Any], Task[Any, Any]] = {}
        self._senders_of: DjangoApp | None = None

    @property
    def app(self) -> DjangoApp:
        """The pigeon App behind this backend (one per alias and process)."""
        return get_app(self.alias)

    @property
    def config(self) -> BackendConfig:
        return self.app.config

    # -- enqueue -------------------------------------------------------------

    def _job(self, task: DjangoTask[Any, Any], args: Sequence[Any], kwargs: dict[str, Any]) -> Job:
        # Django's own check (TaskResult normalises arguments), before anything is stored.
        normalize_json(args)
        normalize_json(kwargs)
        app = self.app
        if app is not self._senders_of:  # a new app (tests swap them): its own tasks
            self._senders, self._senders_of = {}, app
        try:
            sender = self._senders.get(task)
        except TypeError:  # a task with an unhashable option: checked and made each time
            self.validate_task(task)
            sender = self._sender(task)
        if sender is None:
            # A task is frozen: checked once, when its sender is made (inspecting its function
            # at every enqueue cost as much as encoding the arguments).
            self.validate_task(task)
            sender = self._sender(task)
            if len(self._senders) < _SENDERS:  # tasks made with .using() on the fly: keep a few
                self._senders[task] = sender
        job = sender.make_job(tuple(args), dict(kwargs))
        return results.with_keywords(job, results.keyword_names(task, kwargs))

    def _sender(self, task: DjangoTask[Any, Any]) -> Task[Any, Any]:
        """The pigeon task sending with the django task's options (made once per django task)."""
        delay = getattr(task, "delay", None)
        return self.app.register(task).options(
            queue=task.queue_name,
            priority=task.priority,
            max_attempts=getattr(task, "max_attempts", None),
            timeout=getattr(task, "timeout", None),
            unique_key=getattr(task, "unique_key", None),
            delay=delay if task.run_after is None else None,
            run_at=None if task.run_after is None else _aware(task.run_after),
        )

    def enqueue(
        self, task: DjangoTask[Any, Any], args: Sequence[Any], kwargs: dict[str, Any]
    ) -> TaskResult[Any, Any]:
        """Send a task; inside ``transaction.atomic()`` the job commits or rolls back with it.

        Raises:
            InvalidTask: the task does not fit this backend (queue, priority, …).
            TypeError: the arguments do not fit the function or cannot be encoded as JSON.
            BrokerError: the job could not be stored.
        """
        job = self._job(task, args, kwargs)
        app = self.app
        cfg = app.config
        conn = connections[cfg.database]
        if conn.in_atomic_block:
            if cfg.in_django_db:
                job_id = enqueue_in_django(app, conn, [job])[0]
            else:
                transaction.on_commit(lambda: app.enqueue([job]), using=cfg.database, robust=False)
                job_id = job.id
            result = self._ready(task, job_id, job, args, kwargs)
            transaction.on_commit(
                lambda: task_enqueued.send(type(self), task_result=result), using=cfg.database
            )
            return result
        job_id = app.client.enqueue([job])[0]  # the id alone: no handle to make
        result = self._ready(task, job_id, job, args, kwargs)
        task_enqueued.send(type(self), task_result=result)
        return result

    async def aenqueue(
        self, task: DjangoTask[Any, Any], args: Sequence[Any], kwargs: dict[str, Any]
    ) -> TaskResult[Any, Any]:
        """Asynchronous :meth:`enqueue` (async code has no Django transaction to join)."""
        job = self._job(task, args, kwargs)
        job_id = (await self.app.aenqueue([job]))[0].id
        result = self._ready(task, job_id, job, args, kwargs)
        await task_enqueued.asend(type(self), task_result=result)
        return result

    def _ready(
        self, task: DjangoTask[Any, Any], job_id: str, job: Job, args: Sequence[Any], kwargs: dict[str, Any]
    ) -> TaskResult[Any, Any]:
        return TaskResult(
            task=task,
            id=job_id,
            status=TaskResultStatus.READY,
            enqueued_at=results.to_datetime(job.enqueued_at),
            started_at=None,
            last_attempted_at=None,
            finished_at=None,
            args=list(args),
            kwargs=dict(kwargs),
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )

    # -- results -------------------------------------------------------------

    def get_result(self, result_id: str) -> TaskResult[Any, Any]:
        """The task's result as the broker holds it now.

        Raises:
            TaskResultDoesNotExist: unknown id, pruned, or not a django task's job.
        """
        try:
            record = self.app.job(result_id).record()
        except JobNotFound:
            raise TaskResultDoesNotExist(result_id) from None
        return results.to_task_result(record, self.alias)

    async def aget_result(self, result_id: str) -> TaskResult[Any, Any]:
        """Asynchronous :meth:`get_result`."""
        try:
            record = await self.app.job(result_id).arecord()
        except JobNotFound:
            raise TaskResultDoesNotExist(result_id) from None
        return results.to_task_result(record, self.alias)

    # -- checks --------------------------------------------------------------

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        """Configuration errors as system checks (``pigeon.E00x``, ``pigeon.W00x``)."""
        from pigeon.contrib.django.checks import check_backend

        return check_backend(self.alias, self._params)


def _aware(when: Any) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(results.to_timestamp(when), UTC)
