"""The inspection protocol: what operators need from a broker beyond the hot path.

A :class:`JobFilter` says which jobs an operator means (queue, states, task, an
enqueue-time range, arguments); every broker answers it the same way:

- ``find_jobs(filter, limit=, before=)``: newest first, one page at a time. ``before`` is
  the last job id of the previous page (keyset pagination: no offset, no full scan
  to reach page 1,000).
- ``count_jobs(filter)``: how many jobs match (the figure a bulk confirmation shows).
- ``delete_jobs(ids)``: delete by id, whatever the state.
- ``oldest_ready()``: per queue, when its oldest QUEUED job was enqueued (how far behind it is).
- ``pause_queue(q)`` / ``resume_queue(q)`` / ``paused_queues()``: a paused queue keeps
  its jobs and takes new ones, but no claim takes a job from it until it is resumed.

Bulk retry / cancel / delete by filter is written once, above the brokers, in
:func:`apply_bulk`: it walks the filter's pages and hands each page's ids to one
``requeue_jobs``, ``cancel_jobs`` or ``delete_jobs`` call, guarded by state like the
per-job operations, so a job that moved meanwhile is left alone.
"""

from __future__ import annotations

import enum
import json
import re
import time
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import msgspec

from pigeon.job import Job, JobRecord, JobState, QueueStats, WorkerInfo


class JobFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Which jobs: every field given must match (an empty filter matches every job)."""

    queue: str | None = None
    states: tuple[JobState, ...] = ()
    task: str | None = None
    since: float | None = None
    """Enqueued at or after (Unix seconds)."""
    until: float | None = None
    """Enqueued before (Unix seconds)."""
    args: tuple[tuple[str, str], ...] = ()
    """``(name, JSON value)`` pairs: a top-level argument ``name`` equal to that value."""
    newest: int | None = None
    """Only the last ``newest`` enqueue positions (deleted jobs' included) are looked at: an
    argument search reads every job it looks at, so the dashboard bounds it this way."""

    def needles(self) -> list[tuple[bytes, bytes]]:
        """For each argument condition, the two byte strings either of which marks a match.

        ``"name":value`` followed by ``,`` or ``}``: the encoded arguments are compact JSON,
        so this is how the argument reads in the stored envelope, in every broker.
        """
        out = []
        for name, value in self.args:
            head = json.dumps(name).encode() + b":" + value.encode()
            out.append((head + b",", head + b"}"))
        return out

    def matches(self, record: JobRecord) -> bool:
        """The filter applied in Python (for brokers without a query language)."""
        if self.states and record.state not in self.states:
            return False
        return self.matches_job(record.job)

    @property
    def beyond_state(self) -> bool:
        """Whether it says more than queue and states (a broker indexing only those must read jobs)."""
        return bool(
            self.task is not None
            or self.since is not None
            or self.until is not None
            or self.args
            or self.newest is not None
        )

    def matches_job(self, job: Job) -> bool:
        """Everything but the states, checked on the envelope alone."""
        if self.queue is not None and job.queue != self.queue:
            return False
        if self.task is not None and job.task != self.task:
            return False
        if self.since is not None and job.enqueued_at < self.since:
            return False
        if self.until is not None and job.enqueued_at >= self.until:
            return False
        payload = bytes(job.payload)
        return all(a in payload or b in payload for a, b in self.needles())


_ARG = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.+?)\s*$")


def parse_args_search(text: str) -> tuple[tuple[str, str], ...]:
    """``order_id=42 customer=ann`` → ``(("order_id", "42"), ("customer", '"ann"'))``.

    A value that reads as JSON (a number, true, false, null, a quoted string) is
    taken as written; anything else is a string.

    Raises:
        ValueError: a term is not ``name=value``.
    """
    out = []
    for term in text.split():
        m = _ARG.match(term)
        if m is None:
            raise ValueError(f"search {term!r}: write argument=value, e.g. order_id=42")
        name, raw = m.groups()
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if isinstance(value, dict | list):
            raise ValueError(f"search {term!r}: compare arguments with a number, a string, true/false/null")
        out.append((name, json.dumps(value, separators=(",", ":"), ensure_ascii=False)))
    return tuple(out)


@runtime_checkable
class Inspecting(Protocol):
    """The optional inspection protocol: looking at and tidying a broker's jobs, workers and queues.

    ``pigeon status|jobs|workers|queues``, the dashboard and metrics read through it;
    a broker implementing it has ``capabilities.inspect`` (derived, not declared).
    """

    async def list_jobs(
        self,
        *,
        queue: str | None = None,
        state: JobState | None = None,
        task: str | None = None,
        limit: int = 100,
    ) -> list[JobRecord]:
        """Jobs, newest first."""
        ...

    async def stats(self) -> list[QueueStats]:
        """Counts by state for every queue that has jobs."""
        ...

    async def workers(self) -> list[WorkerInfo]:
        """The workers registered by their heartbeats and not yet gone."""
        ...

    async def unregister_worker(self, worker_id: str) -> None:
        """Forget a worker that stopped (so ``workers()`` no longer lists it)."""
        ...

    async def requeue(self, job_id: str) -> bool:
        """FAILED/CANCELLED → QUEUED with attempts reset. False otherwise."""
        ...

    async def requeue_jobs(self, job_ids: Sequence[str]) -> int:
        """:meth:`requeue` for every id, in one call; return how many were requeued."""
        ...

    async def cancel_jobs(self, job_ids: Sequence[str], expires_at: float) -> int:
        """``Broker.cancel`` for every id, in one call; return how many were cancelled."""
        ...

    async def purge(self, *, queue: str | None = None, states: Sequence[JobState] = ()) -> int:
        """Delete jobs in ``states`` (all final states when empty); return how many."""
        ...

    async def find_jobs(
        self, where: JobFilter, *, limit: int = 50, before: str | None = None
    ) -> list[JobRecord]:
        """Jobs matching ``where``, newest first, older than the job ``before`` when given.

        An unknown ``before`` yields no jobs.
        """
        ...

    async def count_jobs(self, where: JobFilter) -> int:
        """How many jobs match ``where``."""
        ...

    async def delete_jobs(self, job_ids: Sequence[str]) -> int:
        """Delete jobs by id, in any state; return how many were deleted."""
        ...

    async def oldest_ready(self) -> dict[str, float]:
        """For each queue with QUEUED jobs, the enqueue time of its oldest one."""
        ...

    async def pause_queue(self, queue: str) -> None:
        """Stop claims from ``queue`` (running jobs run on); idempotent."""
        ...

    async def resume_queue(self, queue: str) -> None:
        """Let claims take from ``queue`` again; idempotent."""
        ...

    async def paused_queues(self) -> list[str]:
        """The paused queues, sorted."""
        ...


InspectionBroker = Inspecting
"""The name the dashboard and the on-call CLI first knew :class:`Inspecting` by."""


class BulkAction(enum.StrEnum):
    """What an operator does to every job a filter matches."""

    RETRY = "retry"
    """FAILED / CANCELLED → QUEUED with fresh attempts."""
    CANCEL = "cancel"
    """QUEUED / SCHEDULED / RUNNING → CANCELLED."""
    DELETE = "delete"
    """Gone, whatever the state."""


BULK_PAGE = 500
"""Jobs read and changed per broker call in a bulk action: memory stays flat at any count."""


async def apply_bulk(
    broker: object,
    where: JobFilter,
    action: BulkAction,
    *,
    expires_at: float,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Apply ``action`` to every job matching ``where``; return how many it changed.

    ``broker`` is a :class:`~pigeon.brokers.base.Broker` that also implements
    :class:`Inspecting`. ``expires_at`` is when a job cancelled here is pruned.
    ``progress(changed, done)`` is called after each page of :data:`BULK_PAGE` jobs with
    how many that page changed and how many so far, so a long action can be followed.
    """
    inspect = as_inspection(broker)
    done = 0
    before: str | None = None
    while True:
        page = await inspect.find_jobs(where, limit=BULK_PAGE, before=before)
        if not page:
            return done
        ids = [r.job.id for r in page]
        if action is BulkAction.DELETE:
            changed = await inspect.delete_jobs(ids)
        elif action is BulkAction.RETRY:
            changed = await inspect.requeue_jobs(ids)
        else:
            changed = await inspect.cancel_jobs(ids, expires_at)
        done += changed
        if progress is not None:
            progress(changed, done)
        if len(page) < BULK_PAGE or (action is BulkAction.DELETE and changed == 0):
            return done
        if action is BulkAction.DELETE:
            continue  # the page is gone: the next one starts from the newest left
        before = ids[-1]


@runtime_checkable
class DeadLettering(Protocol):
    """Failed jobs kept as messages in dead-letter queues, not as records (RabbitMQ alone).

    ``pigeon jobs dead`` and ``pigeon jobs requeue-dead`` read through it; on a
    broker with a record of every job they read the FAILED jobs instead.
    """

    async def dead_letters(self, queues: Sequence[str], limit: int = 50) -> list[JobRecord]:
        """Up to ``limit`` failed jobs of ``queues``, left where they are."""
        ...

    async def requeue_dead(self, queues: Sequence[str], job_ids: Sequence[str] | None = None) -> int:
        """Queue failed jobs of ``queues`` again (those of ``job_ids``, or all), attempts reset."""
        ...


def as_inspection(broker: object) -> Inspecting:
    """``broker`` as an :class:`Inspecting` broker.

    Raises:
        ConfigurationError: the broker does not implement the inspection protocol.
    """
    if not isinstance(broker, Inspecting):
        from pigeon.errors import ConfigurationError

        raise ConfigurationError(f"the broker {type(broker).__name__} does not support inspection")
    return broker


def default_expiry(ttl: float) -> float:
    """When a job finished now with retention ``ttl`` seconds is pruned."""
    return time.time() + ttl


def purged(states: Sequence[JobState]) -> list[JobState]:
    """The states a purge deletes: ``states``, or every final state when none are given."""
    return list(states) or [s for s in JobState if s.is_final]
