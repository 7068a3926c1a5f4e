"""Every error pigeon raises, under one root.

::

    PigeonError
    ├── ConfigurationError          bad URL, bad option, schema behind
    ├── BrokerError                 the broker failed an operation
    │   ├── BrokerConnectionError   the broker cannot be reached
    │   └── UnsupportedFeature      the broker cannot do what was asked
    ├── JobError
    │   ├── JobNotFound             no such job (never existed, or pruned)
    │   ├── JobFailed               the job ended failed; carries the task's error
    │   ├── JobCancelled            the job was cancelled before it succeeded
    │   ├── UnknownTask             a job names a task this process does not know
    │   ├── DecodeError             a job's payload or result cannot be decoded
    │   │   └── MalformedJob        a stored job's envelope is not one pigeon wrote
    │   ├── ProcessDied             the pool process running a job died
    │   └── PayloadTooLarge         arguments or a result over max_payload (also a TypeError)
    └── TaskError
        └── InvalidTask             a task definition that cannot work

    Retry, Defer                    control flow, raised inside a task (not errors)

Argument errors at send time are plain ``TypeError`` so they read like any
other bad call in the caller's code.
"""

from __future__ import annotations


class PigeonError(Exception):
    """Root of every pigeon error."""


class ConfigurationError(PigeonError):
    """Invalid configuration: a bad URL, an unknown option, a schema that is behind."""


class BrokerError(PigeonError):
    """The broker failed an operation."""


class BrokerConnectionError(BrokerError):
    """The broker cannot be reached."""


class UnsupportedFeature(BrokerError):
    """The broker declares it cannot do what was asked."""


class JobError(PigeonError):
    """Something about one job."""


class JobNotFound(JobError):
    """No such job: it never existed, or it finished and was pruned."""


class JobFailed(JobError):
    """The job ended failed; carries the error the task raised.

    Attributes:
        job_id: the failed job.
        error_type: the dotted class path of the task's exception.
        error_message: ``str()`` of the task's exception.
        traceback: the formatted traceback, as the worker saw it.
    """

    def __init__(self, job_id: str, error_type: str, error_message: str, traceback: str) -> None:
        super().__init__(f"job {job_id} failed: {error_type}: {error_message}")
        self.job_id = job_id
        self.error_type = error_type
        self.error_message = error_message
        self.traceback = traceback


class JobCancelled(JobError):
    """The job was cancelled before it succeeded."""


class UnknownTask(JobError):
    """A job names a task that is not registered in this process."""


class DecodeError(JobError):
    """A job's payload or result cannot be decoded."""


class MalformedJob(DecodeError):
    """A stored job's envelope does not decode: written into the queue by something else.

    The worker fails such a job at once with this error; the bytes stay in the
    store and ``JobRecord.raw`` holds them.
    """


class ProcessDied(JobError):
    """The pool process running a job died (a crash, an OOM kill).

    Retried like a lost worker, whatever the task's ``retry_on``; recorded as
    ``pigeon.ProcessDied``.
    """


class PayloadTooLarge(JobError, TypeError):
    """A job's encoded arguments or result are over ``App(max_payload=…)``.

    At send time it is a ``TypeError`` like any argument that cannot be sent, raised
    before anything is stored; from a task's result it fails the job at once (the same
    call would return the same result), recorded as ``pigeon.PayloadTooLarge``.
    """


class TaskError(PigeonError):
    """Something about a task definition."""


class InvalidTask(TaskError):
    """A task definition that cannot work (e.g. a lambda on the process executor)."""


class Retry(Exception):
    """Raise inside a task to run it again later.

    The retry spends an attempt; when none are left the job fails.

    Args:
        delay: seconds to wait before the next attempt; ``None`` uses the
            task's back-off policy.
        reason: a note kept in the job's error field and the log.
    """

    def __init__(self, delay: float | None = None, reason: str = "") -> None:
        super().__init__(reason or "retry requested")
        self.delay = delay
        self.reason = reason


class Defer(Exception):
    """Raise inside a task to run it again later *without* spending an attempt.

    For a job that is waiting on something outside it (another job, a resource)
    rather than failing.

    Args:
        delay: seconds to wait before the job may run again.
    """

    def __init__(self, delay: float) -> None:
        super().__init__(f"deferred for {delay} s")
        self.delay = delay
