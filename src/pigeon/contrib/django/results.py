"""A pigeon job record as Django's ``TaskResult``."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
from datetime import UTC, datetime
from typing import Any

import msgspec
from django.conf import settings
from django.tasks import Task as DjangoTask
from django.tasks import TaskResult, TaskResultStatus
from django.tasks.base import TaskError
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.utils import timezone
from django.utils.json import normalize_json
from django.utils.module_loading import import_string

from pigeon import codec
from pigeon.job import Job, JobRecord, JobState

STATUS = {
    JobState.QUEUED: TaskResultStatus.READY,
    JobState.SCHEDULED: TaskResultStatus.READY,
    JobState.RUNNING: TaskResultStatus.RUNNING,
    JobState.SUCCEEDED: TaskResultStatus.SUCCESSFUL,
    JobState.FAILED: TaskResultStatus.FAILED,
    JobState.CANCELLED: TaskResultStatus.FAILED,  # Django has no cancelled state
}


KEYWORDS_HEADER = "pigeon-keywords"
"""A job header naming the parameters enqueued by keyword (comma-separated), so
``get_result`` shows them so."""
KEYWORDS = "_pigeon_keywords"
"""Where jobs stored before :data:`KEYWORDS_HEADER` carried those names: a hidden argument.
Still read, and still accepted by the task's wrapper, so such jobs run and read as before."""


def to_datetime(ts: float | None) -> datetime | None:
    """Unix seconds as Django wants them: aware UTC with USE_TZ, naive local time without."""
    if ts is None:
        return None
    when = datetime.fromtimestamp(ts, UTC)
    return when if settings.USE_TZ else timezone.make_naive(when)


def to_timestamp(when: datetime) -> float:
    """A ``run_after`` as Unix seconds (a naive one is in the current time zone, as Django reads it)."""
    if timezone.is_naive(when):
        when = timezone.make_aware(when)
    return when.timestamp()


def django_task(name: str) -> DjangoTask[Any, Any]:
    """The django Task a job's name refers to.

    Raises:
        TaskResultDoesNotExist: the name is not an importable django task (a plain pigeon job).
    """
    try:
        found = import_string(name)
    except ImportError:
        found = None
    if not isinstance(found, DjangoTask):
        raise TaskResultDoesNotExist(f"{name!r} is not a django task")
    return found


def _params(task: DjangoTask[Any, Any]) -> list[inspect.Parameter]:
    params = list(inspect.signature(task.func).parameters.values())
    return params[1:] if task.takes_context else params


def keyword_names(task: DjangoTask[Any, Any], kwargs: dict[str, Any]) -> tuple[str, ...]:
    """The parameters in ``kwargs`` that could have been passed by position (to say they were not)."""
    if not kwargs:  # the common case, and reading the signature costs more than the send's encoding
        return ()
    return tuple(p.name for p in _params(task) if p.kind is p.POSITIONAL_OR_KEYWORD and p.name in kwargs)


def with_keywords(job: Job, keywords: tuple[str, ...]) -> Job:
    """``job`` carrying the names of the parameters enqueued by keyword (none: as it is)."""
    if not keywords:
        return job
    return msgspec.structs.replace(job, headers=(*job.headers, (KEYWORDS_HEADER, ",".join(keywords))))


def split_arguments(task: DjangoTask[Any, Any], job: Job) -> tuple[list[Any], dict[str, Any]]:
    """A job's payload (arguments by parameter name) as the ``args`` and ``kwargs`` enqueued."""
    values = dict(codec.decode_any(bytes(job.payload)))
    keywords = set(values.pop(KEYWORDS, ()))
    keywords.update(n for k, v in job.headers if k == KEYWORDS_HEADER for n in v.split(",") if n)
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for p in _params(task):
        if p.name not in values:
            continue
        value = values[p.name]
        if p.kind is p.VAR_POSITIONAL:
            args.extend(value)
        elif p.kind is p.VAR_KEYWORD:
            kwargs.update(value)
        elif p.kind is p.KEYWORD_ONLY or p.name in keywords:
            kwargs[p.name] = value
        else:
            args.append(value)
    return args, kwargs


def to_task_result(record: JobRecord, alias: str) -> TaskResult[Any, Any]:
    """The TaskResult of a job record.

    ``started_at`` and ``last_attempted_at`` are both the last attempt's start
    (pigeon keeps one); ``worker_ids`` repeats the last worker once per attempt,
    so ``attempts`` is right; ``errors`` holds every failed attempt's error.

    Raises:
        TaskResultDoesNotExist: the job is not a django task's.
    """
    job = record.job
    task = django_task(job.task)
    changes: dict[str, Any] = {}
    if task.backend != alias:
        changes["backend"] = alias
    if job.queue != task.queue_name:
        changes["queue_name"] = job.queue
    if job.priority != task.priority:
        changes["priority"] = job.priority
    if job.run_at is not None:
        changes["run_after"] = to_datetime(job.run_at)
    if changes:
        with contextlib.suppress(InvalidTask):  # e.g. a queue since removed from QUEUES: as declared
            task = dataclasses.replace(task, **changes)
    args, kwargs = split_arguments(task, job)
    history = record.errors or ((record.error,) if record.error is not None else ())
    errors = [TaskError(exception_class_path=e.type, traceback=e.traceback) for e in history]
    if record.state is JobState.CANCELLED:
        errors.append(TaskError(exception_class_path="pigeon.errors.JobCancelled", traceback=""))
    result: TaskResult[Any, Any] = TaskResult(
        task=task,
        id=job.id,
        status=STATUS[record.state],
        enqueued_at=to_datetime(job.enqueued_at),
        started_at=to_datetime(record.started_at),
        last_attempted_at=to_datetime(record.started_at),
        finished_at=to_datetime(record.finished_at),
        args=args,
        kwargs=kwargs,
        backend=alias,
        errors=errors,
        worker_ids=[record.worker_id] * record.attempts if record.worker_id else [],
    )
    if record.state is JobState.SUCCEEDED and record.result is not None:
        object.__setattr__(result, "_return_value", normalize_json(codec.decode_any(record.result)))
    return result
