"""The job: an immutable envelope, and its life cycle.

A :class:`Job` is built once, when a task is sent, and encoded once; no part of
pigeon changes it afterwards. What changes is the broker's record of it
(:class:`JobRecord`): its state, attempts, lease, result.

The state machine, the only place it is written down::

                 enqueue (run_at in the future)
                ┌──────────────► SCHEDULED ──────┐ due
                │                    ▲           ▼
    enqueue ────┴──────────────► QUEUED ◄────────┘
                                  │  ▲  ▲
                           claim  │  │  │ release (shutdown, attempt given back)
                                  │  │  │ defer (rate limit: to SCHEDULED, attempt given back)
                                  ▼  │  │ recover (lease expired / worker dead,
                               RUNNING ─┘            attempts left)
                 complete ┌──────┼──────────┐ fail, or retry/recover
                          ▼      │ retry    ▼ with no attempts left
                    SUCCEEDED    │ (delay)  FAILED
                                 └──► SCHEDULED

    QUEUED / SCHEDULED / RUNNING ── cancel ──► CANCELLED (a running job's token ends
                                                with it: its worker stops the attempt)
    RUNNING ── claimed past its ``expires_at`` ──► CANCELLED (never run)
    FAILED / CANCELLED ── retry (by an operator) ──► QUEUED, attempts reset

SUCCEEDED, FAILED and CANCELLED are final; a final job keeps its result or error
until the retention expires and the pruner deletes it.

Every claim carries a fresh ``token``; every settle (complete, retry, fail,
release) and every lease extension names that token and is refused if the job
is no longer RUNNING under it. A worker that stalled past its lease cannot
settle a job another worker now owns (fencing).
"""

from __future__ import annotations

import enum
import os
import time
from typing import Annotated

import msgspec


class JobState(enum.StrEnum):
    """Where a job is in its life cycle (see the module docstring)."""

    QUEUED = "queued"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
PENDING_STATES = (JobState.QUEUED, JobState.SCHEDULED, JobState.RUNNING)

MIN_PRIORITY = -100
MAX_PRIORITY = 100


MALFORMED_TASK = "pigeon.malformed"
"""The task name of the stand-in for a stored envelope that does not decode."""

_Int = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
_Time = Annotated[float, msgspec.Meta(ge=0, le=1e12)]  # aware-UTC Unix seconds, or a duration


def new_id() -> str:
    """A job id: time-ordered (milliseconds) then random, 32 hex digits like a UUID."""
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"


class Step(msgspec.Struct, frozen=True, omit_defaults=True):
    """A workflow step on the wire: a task name and the arguments bound so far."""

    task: str
    args: msgspec.Raw
    queue: str | None = None
    priority: int | None = None


class Then(msgspec.Struct, frozen=True):
    """What follows a chain step: the workflow's id, the next step's place, the steps left."""

    root: str
    index: _Int
    steps: tuple[Step, ...]


class Job(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One invocation of a task: the immutable envelope every broker stores.

    ``payload`` is the arguments, already encoded (JSON) when the job was built;
    brokers store and return it untouched.
    """

    id: str
    task: str
    queue: str = "default"
    payload: msgspec.Raw = msgspec.Raw(b"{}")
    priority: Annotated[int, msgspec.Meta(ge=MIN_PRIORITY, le=MAX_PRIORITY)] = 0
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)] = 3
    timeout: _Time | None = None
    run_at: _Time | None = None
    unique_key: str | None = None
    enqueued_at: _Time = 0.0
    limit_key: str | None = None
    """Jobs sharing a limit key run at most ``limit`` at a time across all workers."""
    limit: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)] = 0
    then: Then | None = None
    """What follows this job's success (a chain's remaining steps): see workflows.py."""
    expires_at: float | None = None
    """A job not started by this time never runs: the worker that claims it cancels it."""
    headers: tuple[tuple[str, str], ...] = ()
    """Context carried with the job, e.g. W3C trace context (``traceparent``): see otel.py."""

    def encode(self) -> bytes:
        return _ENCODER.encode(self)

    @staticmethod
    def decode(data: bytes) -> Job:
        return _JOB_DECODER.decode(data)


_ENCODER = msgspec.json.Encoder()
_JOB_DECODER = msgspec.json.Decoder(Job)


def decode_stored(job_id: str, data: bytes) -> tuple[Job, str | None]:
    """The envelope stored under ``job_id``, or a stand-in and why it does not decode.

    Anything with access to a queue can write into it; a stored envelope that is
    not one of ours must cost one job, never the worker or the batch it came
    with. Only JSON is ever parsed (never pickle, never eval). The stand-in
    keeps the id, so the job can be settled, listed and shown.
    """
    try:
        job = _JOB_DECODER.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, ValueError) as exc:
        reason = f"the stored envelope does not decode: {exc}"
    else:
        if job.id == job_id:
            return job, None
        reason = f"the stored envelope names another job ({job.id[:64]!r})"
    return Job(id=job_id, task=MALFORMED_TASK, payload=msgspec.Raw(b"null")), reason


class ErrorInfo(msgspec.Struct, frozen=True):
    """What a failed attempt left behind: the exception's class path, message, traceback."""

    type: str
    message: str
    traceback: str = ""


class JobRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A broker's view of one job: the envelope plus its mutable life cycle."""

    job: Job
    state: JobState
    attempts: int = 0
    result: bytes | None = None
    error: ErrorInfo | None = None
    """The last attempt's error, if it failed; cleared by a success."""
    errors: tuple[ErrorInfo, ...] = ()
    """Every failed attempt's error, oldest first, attempts lost with their worker included."""
    worker_id: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    lease_until: float | None = None
    progress: bytes | None = None
    raw: bytes | None = None
    """The stored envelope as found, when it does not decode (``job`` is then a stand-in)."""


WORKER_LOST = ErrorInfo("pigeon.WorkerLost", "the worker running this job was lost")
"""The error recorded for an attempt whose worker was lost (its lease expired, or it went silent)."""


class Claim(msgspec.Struct, frozen=True, gc=False):
    """A job handed to a worker: valid while the lease under ``token`` holds."""

    job: Job
    token: str
    attempt: int
    malformed: str | None = None
    """Why the stored envelope does not decode (``job`` is a stand-in): the worker fails it."""


def stored_claim(job_id: str, data: bytes, token: str, attempt: int) -> Claim:
    """A claim of the envelope stored under ``job_id`` (see :func:`decode_stored`)."""
    job, malformed = decode_stored(job_id, data)
    return Claim(job, token, attempt, malformed)


class OutcomeKind(enum.StrEnum):
    COMPLETE = "complete"
    RETRY = "retry"
    FAIL = "fail"
    RELEASE = "release"
    DEFER = "defer"


class Outcome(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """How one claimed job ended; brokers apply a batch of these in one round trip.

    - COMPLETE: SUCCEEDED with ``result``.
    - RETRY: SCHEDULED at ``run_at`` (or QUEUED when due), ``error`` kept.
    - FAIL: FAILED with ``error``.
    - RELEASE: QUEUED again and the attempt given back (graceful shutdown).
    - DEFER: SCHEDULED at ``run_at`` with the attempt given back (a rate limit said wait).

    One is made per job, so it is not tracked by the garbage collector (``gc=False``: it
    holds only strings, bytes, numbers and an ErrorInfo, and can be in no reference cycle);
    so are :class:`Claim`, the policy's endings and the transitions.
    """

    job_id: str
    token: str
    kind: OutcomeKind
    result: bytes | None = None
    error: ErrorInfo | None = None
    run_at: float | None = None
    expires_at: float | None = None


class ServiceInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A service a worker runs: whether it runs now, how often it started and crashed."""

    name: str
    running: bool
    starts: int
    crashes: int
    last_error: str | None = None


class WorkerInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A registered worker, as ``pigeon status`` shows it."""

    id: str
    hostname: str
    pid: int
    queues: tuple[str, ...]
    concurrency: int
    started_at: float
    last_seen: float
    version: str = ""
    """The pigeon version the worker runs."""
    services: tuple[ServiceInfo, ...] = ()
    """The services this worker supervises, as of its last heartbeat."""


class QueueStats(msgspec.Struct, frozen=True):
    """Job counts of one queue, by state."""

    queue: str
    counts: dict[str, int]


class Progress(msgspec.Struct, frozen=True):
    """A job's latest progress report."""

    fraction: float
    message: str = ""
    at: float = 0.0
