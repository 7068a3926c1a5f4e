"""The parameters PostgreSQL's batch statements unnest: one array per column.

An enqueue is an :class:`EnqueueBatch` (unique keys resolved within the batch
and against pending jobs, retried if a key changes hands); a settle's rows are
the transitions computed by :mod:`pigeon.transitions`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from pigeon.job import Job, Outcome
from pigeon.transitions import arriving, settled

UNIQUE_RETRIES = 3


class EnqueueBatch:
    """One enqueue: the insert's parameters, and which id stands for each job.

    A job repeating an earlier job's unique key within the batch is not sent;
    it gets that job's answer. A job whose key was taken gets the pending job's
    id; if that job finished in between, the insert is tried again.
    """

    def __init__(self, jobs: Sequence[Job], channel: str) -> None:
        self._jobs = jobs
        self._channel = channel
        self._answer: dict[int, str] = {}
        self._alias: dict[int, int] = {}
        self._todo: list[int] = []
        self._by_key: dict[str, int] = {}
        self._tries = 0
        for i, job in enumerate(jobs):
            key = job.unique_key
            if key is not None and key in self._by_key:
                self._alias[i] = self._by_key[key]
            else:
                if key is not None:
                    self._by_key[key] = i
                self._todo.append(i)

    def next_insert(self) -> tuple[str, dict[str, Any]] | None:
        """The next insert: its statement's name and parameters (None: every job is answered).

        One job without a concurrency limit (a lone ``send()``) goes as ``enqueue_one``, a
        plain one-row insert: the arrays of ``enqueue`` cost the server more to bind, plan
        and unnest than the insert itself costs.
        """
        if not self._todo:
            return None
        self._tries += 1
        if self._tries > UNIQUE_RETRIES:
            for i in self._todo:  # the key keeps changing hands; answer with the job's own id
                self._answer[i] = self._jobs[i].id
            self._todo = []
            return None
        now = time.time()
        rows = [enqueue_row(self._jobs[i], now) for i in self._todo]
        if len(rows) == 1 and rows[0][-2] is None:
            return "enqueue_one", {**dict(zip(ENQUEUE_NAMES, rows[0], strict=True)), "channel": self._channel}
        limit_keys = sorted({r[-2] for r in rows if r[-2] is not None})
        params = {**columns(ENQUEUE_COLUMNS, rows), "limit_keys": limit_keys, "channel": self._channel}
        return "enqueue", params

    def inserted(self, rows: list[Any]) -> list[str]:
        """Record the inserted ids; return the unique keys whose pending job must be looked up."""
        new = {r[0] for r in rows}
        keys: list[str] = []
        for i in self._todo:
            job = self._jobs[i]
            if job.id in new or job.unique_key is None:
                self._answer[i] = job.id  # inserted, or a job with this id exists already
            else:
                keys.append(job.unique_key)
        self._todo = [i for i in self._todo if i not in self._answer]
        return keys

    def found(self, rows: list[Any]) -> None:
        pending = {key: job_id for key, job_id in rows}
        for i in self._todo:
            key = self._jobs[i].unique_key
            if key in pending:
                self._answer[i] = pending[key]
        self._todo = [i for i in self._todo if i not in self._answer]

    def ids(self) -> list[str]:
        return [self._answer[self._alias.get(i, i)] for i in range(len(self._jobs))]


# The array parameters of the enqueue and settle statements, in the order rows are built.
ENQUEUE_COLUMNS = (
    "id task queue priority state envelope max_attempts unique_key run_at enqueued_at limit_key limit_n"
)
ENQUEUE_NAMES = ENQUEUE_COLUMNS.split()
SETTLE_COLUMNS = "id token state result error keep_error release run_at finished_at expires_at"


def columns(names: str, rows: list[tuple[Any, ...]]) -> dict[str, list[Any]]:
    """One list per named column: the arrays a statement unnests."""
    return {name: [row[i] for row in rows] for i, name in enumerate(names.split())}


def enqueue_row(j: Job, now: float) -> tuple[Any, ...]:
    state, run_at = arriving(j, now)
    row = (j.id, j.task, j.queue, j.priority, state.value, j.encode(), j.max_attempts, j.unique_key, run_at)
    return (*row, j.enqueued_at or now, j.limit_key, j.limit)


def settle_row(o: Outcome, now: float) -> tuple[Any, ...]:
    t = settled(o, now)
    return (
        t.job_id,
        t.token,
        t.state.value,
        t.result,
        t.error,
        t.keep_error,
        t.release,
        t.run_at,
        t.finished_at,
        t.expires_at,
    )
