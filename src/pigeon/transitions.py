"""The job state machine's transitions, computed once, in Python, for every broker.

``job.py`` draws the machine; this module computes what each move writes, and
brokers apply the fields as given (SQL parameters, Lua arguments, the memory
store's attributes). How a broker finds and locks the rows, claims and wakes
workers stays its own.

=================  ==========  ======  ===========  =======  ======  ==========
outcome            state       result  error        attempt  run_at  finished,
                                                                     expires_at
=================  ==========  ======  ===========  =======  ======  ==========
COMPLETE           SUCCEEDED   stored  cleared      kept     —       now, given
FAIL               FAILED      —       appended     kept     —       now, given
RETRY              SCHEDULED¹  —       appended²    kept     given   —
DEFER              SCHEDULED¹  —       kept         back     given   —
RELEASE            QUEUED      —       kept         back     —       —
=================  ==========  ======  ===========  =======  ======  ==========

¹ QUEUED when ``run_at`` is not in the future. ² when the outcome carries one.
An enqueue starts SCHEDULED when ``run_at`` is in the future, else QUEUED.
"""

from __future__ import annotations

import msgspec

from pigeon.job import WORKER_LOST, Job, JobState, Outcome, OutcomeKind

LOST_ERROR = msgspec.json.encode(WORKER_LOST)
"""The encoded error a recovered attempt records (``pigeon.WorkerLost``)."""


class Transition(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What settling one outcome writes to its job (the job must be RUNNING under ``token``).

    Attributes:
        state: the job's new state.
        result: the result to store (COMPLETE only).
        error: the encoded ErrorInfo that becomes the job's ``error``; unless
            ``keep_error``, it is also appended to ``errors`` when not None.
        keep_error: leave ``error`` and ``errors`` as they are.
        release: give the attempt back (``attempts - 1``).
        run_at: when the job may run next; None leaves it.
        finished_at: set for a final state, else None.
        expires_at: the retention of a final state (None: kept for ever).
    """

    job_id: str
    token: str
    state: JobState
    result: bytes | None = None
    error: bytes | None = None
    keep_error: bool = False
    release: bool = False
    run_at: float | None = None
    finished_at: float | None = None
    expires_at: float | None = None


def waiting(run_at: float | None, now: float) -> tuple[JobState, float]:
    """The state and run time of a job that waits from ``now`` until ``run_at`` (None: now)."""
    at = now if run_at is None else run_at
    return (JobState.SCHEDULED if at > now else JobState.QUEUED), at


def arriving(job: Job, now: float) -> tuple[JobState, float]:
    """An enqueued job's first state and run time."""
    return waiting(job.run_at, now)


def settled(o: Outcome, now: float) -> Transition:
    """The transition an outcome makes (see the module docstring's table)."""
    kind = o.kind
    if kind is OutcomeKind.COMPLETE:
        return Transition(
            job_id=o.job_id,
            token=o.token,
            state=JobState.SUCCEEDED,
            result=o.result,
            finished_at=now,
            expires_at=o.expires_at,
        )
    error = None if o.error is None else msgspec.json.encode(o.error)
    if kind is OutcomeKind.FAIL:
        return Transition(
            job_id=o.job_id,
            token=o.token,
            state=JobState.FAILED,
            error=error,
            finished_at=now,
            expires_at=o.expires_at,
        )
    if kind is OutcomeKind.RELEASE:
        return Transition(
            job_id=o.job_id, token=o.token, state=JobState.QUEUED, keep_error=True, release=True
        )
    state, run_at = waiting(o.run_at, now)
    if kind is OutcomeKind.DEFER:  # like a retry, but the attempt is given back and no error kept
        return Transition(
            job_id=o.job_id, token=o.token, state=state, keep_error=True, release=True, run_at=run_at
        )
    return Transition(job_id=o.job_id, token=o.token, state=state, error=error, run_at=run_at)
