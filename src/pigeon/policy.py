"""Retry policy: what the end of one attempt means for its job, decided in one place.

:func:`decide` is a pure function of the claim, the task's options, how the
attempt ended and the time; it returns the :class:`~pigeon.job.Outcome` a broker
applies. The endings are frozen msgspec Structs, which build several times faster than
frozen dataclasses: one is made per job; those that hold no exception are not tracked by
the garbage collector (``gc=False``), cheaper still. The worker calls it for every
attempt, and for the jobs of a worker that was lost (:class:`Lost`), so a lost attempt
is judged as a failed one:

=====================================  ==============================================
the attempt ended                      the job
=====================================  ==============================================
returned (:class:`Completed`)          COMPLETE, kept ``result_ttl``
handed back at shutdown                RELEASE (the attempt given back)
``raise Defer(d)``, or over its rate   DEFER to now + d (the attempt given back)
``raise Retry(d)``                     RETRY at now + d (back-off if d is None) while
                                       attempts are left, else FAIL
an error in ``retry_on``, its process  RETRY after the back-off while attempts are
died, or its worker was lost           left, else FAIL
any other error; a job that cannot     FAIL, kept ``failed_ttl``
run (:class:`Unrunnable`)
=====================================  ==============================================

A lost worker's job is retried at once (no back-off): the loss is the
worker's, not the job's.
"""

from __future__ import annotations

import msgspec

from pigeon.errors import Defer, ProcessDied, Retry
from pigeon.job import WORKER_LOST, Claim, ErrorInfo, Outcome, OutcomeKind
from pigeon.task import TaskOptions


class Retention(msgspec.Struct, frozen=True, gc=False):
    """How long finished jobs are kept: seconds after success, after failure or cancel."""

    result_ttl: float
    failed_ttl: float


class Completed(msgspec.Struct, frozen=True, gc=False):
    """The task returned ``result`` (encoded)."""

    result: bytes


class Raised(msgspec.Struct, frozen=True):
    """The task raised ``error``; ``info`` is its recorded form (type, message, traceback)."""

    error: BaseException
    info: ErrorInfo


class Unrunnable(msgspec.Struct, frozen=True):
    """The job cannot run at all (unknown task, undecodable, a broken chain): fail at once."""

    info: ErrorInfo
    error: BaseException | None = None
    """The exception, where one was raised (job hooks report it)."""


class Deferred(msgspec.Struct, frozen=True, gc=False):
    """The job waits ``delay`` seconds without spending its attempt (a rate limit)."""

    delay: float


class Released(msgspec.Struct, frozen=True, gc=False):
    """The attempt was handed back unfinished (the worker is stopping)."""


class Lost(msgspec.Struct, frozen=True, gc=False):
    """The attempt's worker was lost (its lease expired, or it went silent)."""


Ending = Completed | Raised | Unrunnable | Deferred | Released | Lost


def decide(
    claim: Claim, options: TaskOptions | None, ending: Ending, now: float, retention: Retention
) -> Outcome:
    """The outcome of one attempt (see the module docstring's table).

    Args:
        claim: the attempt (its job, token and attempt number).
        options: the task's options; None when the task is unknown here.
        ending: how the attempt ended.
        now: the current time, Unix seconds.
        retention: how long finished jobs are kept.
    """
    job_id, token = claim.job.id, claim.token
    match ending:
        case Completed():  # most jobs: first, and without binding, which costs more
            return Outcome(
                job_id=job_id,
                token=token,
                kind=OutcomeKind.COMPLETE,
                result=ending.result,
                expires_at=now + retention.result_ttl,
            )
        case Released():
            return Outcome(job_id=job_id, token=token, kind=OutcomeKind.RELEASE)
        case Deferred(delay) | Raised(Defer(delay=delay)):
            return Outcome(job_id=job_id, token=token, kind=OutcomeKind.DEFER, run_at=now + delay)
        case Unrunnable(info):
            return fail(claim, info, now, retention)
        case Lost():
            return retry(claim, options, 0.0, WORKER_LOST, now, retention)
        case Raised(Retry(delay=delay), info):
            return retry(claim, options, delay, info, now, retention)
        case Raised(error, info) if _retryable(error, options):
            return retry(claim, options, None, info, now, retention)
        case Raised(_, info):
            return fail(claim, info, now, retention)


def _retryable(error: BaseException, options: TaskOptions | None) -> bool:
    return isinstance(error, ProcessDied) or (options is not None and isinstance(error, options.retry_on))


def retry(
    claim: Claim,
    options: TaskOptions | None,
    delay: float | None,
    info: ErrorInfo,
    now: float,
    retention: Retention,
) -> Outcome:
    """RETRY after ``delay`` (the task's back-off when None), or FAIL with no attempts left."""
    if claim.attempt >= claim.job.max_attempts:
        return fail(claim, info, now, retention)
    if delay is None:
        delay = (options or TaskOptions()).backoff.delay(claim.attempt)
    return Outcome(
        job_id=claim.job.id, token=claim.token, kind=OutcomeKind.RETRY, error=info, run_at=now + delay
    )


def fail(claim: Claim, info: ErrorInfo, now: float, retention: Retention) -> Outcome:
    """FAIL with ``info``, kept ``failed_ttl``."""
    return Outcome(
        job_id=claim.job.id,
        token=claim.token,
        kind=OutcomeKind.FAIL,
        error=info,
        expires_at=now + retention.failed_ttl,
    )


def recovered(claim: Claim, now: float, expires_at: float | None) -> Outcome:
    """A lost attempt's outcome, as :func:`decide` judges :class:`Lost`; a failure kept until
    ``expires_at`` (for ever when None), as ``Broker.recover`` is asked to."""
    outcome = decide(claim, None, Lost(), now, Retention(0.0, 0.0))
    if outcome.kind is OutcomeKind.FAIL:
        return msgspec.structs.replace(outcome, expires_at=expires_at)
    return outcome
