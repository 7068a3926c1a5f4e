"""``memory://`` — an in-process broker for tests and :mod:`pigeon.testing`.

State lives in one store per app, guarded by a lock, so producers in threads and
workers on any event loop of the process see the same jobs. Nothing survives
the process.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import msgspec

from pigeon import bucket
from pigeon.brokers.base import BrokerBase, Capabilities
from pigeon.brokers.inspection import JobFilter, purged
from pigeon.job import (
    PENDING_STATES,
    Claim,
    ErrorInfo,
    Job,
    JobRecord,
    JobState,
    Outcome,
    QueueStats,
    WorkerInfo,
)
from pigeon.policy import recovered
from pigeon.transitions import Transition, arriving, settled


@dataclass(slots=True)
class _Row:
    job: Job
    seq: int
    state: JobState
    run_at: float
    attempts: int = 0
    token: str | None = None
    worker_id: str | None = None
    lease_until: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    expires_at: float | None = None
    result: bytes | None = None
    error: ErrorInfo | None = None
    errors: list[ErrorInfo] = field(default_factory=list)
    progress: bytes | None = None

    def failed_with(self, error: ErrorInfo | None) -> None:
        self.error = error
        if error is not None:
            self.errors.append(error)

    def record(self) -> JobRecord:
        return JobRecord(
            job=self.job,
            state=self.state,
            attempts=self.attempts,
            result=self.result,
            error=self.error,
            errors=tuple(self.errors),
            worker_id=self.worker_id,
            started_at=self.started_at,
            finished_at=self.finished_at,
            lease_until=self.lease_until,
            progress=self.progress,
        )


@dataclass
class _Store:
    lock: threading.Lock = field(default_factory=threading.Lock)
    rows: dict[str, _Row] = field(default_factory=dict)
    ready: dict[str, list[tuple[int, int, str]]] = field(default_factory=dict)
    scheduled: list[tuple[float, int, str]] = field(default_factory=list)
    unique: dict[str, str] = field(default_factory=dict)
    workers: dict[str, WorkerInfo] = field(default_factory=dict)
    seq: itertools.count[int] = field(default_factory=itertools.count)
    running: dict[str, int] = field(default_factory=dict)
    buckets: dict[str, bucket.Bucket] = field(default_factory=dict)
    paused: set[str] = field(default_factory=set)


class MemoryBroker(BrokerBase):
    """In-process broker; every instance of one app shares one store."""

    capabilities = Capabilities(cross_process=False)

    def __init__(self, store: _Store | None = None, url: str = "memory://") -> None:
        self._s = store or _Store()
        self.url = url

    @classmethod
    def from_url(cls, url: str, shared: dict[str, Any]) -> Self:
        store = shared.setdefault("memory-store", _Store())
        return cls(store, url)

    # -- helpers (lock held) -------------------------------------------------

    def _push_ready(self, row: _Row) -> None:
        self._leave_running(row)
        row.state = JobState.QUEUED
        heapq.heappush(self._s.ready.setdefault(row.job.queue, []), (-row.job.priority, row.seq, row.job.id))

    def _schedule(self, row: _Row, run_at: float) -> None:
        self._leave_running(row)
        row.state = JobState.SCHEDULED
        row.run_at = run_at
        heapq.heappush(self._s.scheduled, (run_at, row.seq, row.job.id))

    def _leave_running(self, row: _Row) -> None:
        key = row.job.limit_key
        if row.state is JobState.RUNNING and key is not None:
            self._s.running[key] -= 1

    def _finish(
        self, row: _Row, state: JobState, finished_at: float | None, expires_at: float | None
    ) -> None:
        self._leave_running(row)
        row.state = state
        row.finished_at = time.time() if finished_at is None else finished_at
        row.expires_at = expires_at
        row.token = None
        row.lease_until = None
        key = row.job.unique_key
        if key is not None and self._s.unique.get(key) == row.job.id:
            del self._s.unique[key]

    def _promote(self, now: float) -> None:
        sched = self._s.scheduled
        while sched and sched[0][0] <= now:
            run_at, _, job_id = heapq.heappop(sched)
            row = self._s.rows.get(job_id)
            if row is not None and row.state is JobState.SCHEDULED and row.run_at == run_at:
                self._push_ready(row)

    def _owned(self, job_id: str, token: str) -> _Row | None:
        row = self._s.rows.get(job_id)
        if row is None or row.state is not JobState.RUNNING or row.token != token:
            return None
        return row

    # -- the protocol --------------------------------------------------------

    async def enqueue(self, jobs: Sequence[Job]) -> list[str]:
        now = time.time()
        ids: list[str] = []
        with self._s.lock:
            for job in jobs:
                key = job.unique_key
                if key is not None and key in self._s.unique:
                    ids.append(self._s.unique[key])
                    continue
                if job.id in self._s.rows:
                    ids.append(job.id)
                    continue
                row = _Row(job=job, seq=next(self._s.seq), state=JobState.QUEUED, run_at=now)
                self._s.rows[job.id] = row
                if key is not None:
                    self._s.unique[key] = job.id
                state, run_at = arriving(job, now)
                if state is JobState.SCHEDULED:
                    self._schedule(row, run_at)
                else:
                    self._push_ready(row)
                ids.append(job.id)
        return ids

    async def claim(self, worker_id: str, queues: Sequence[str], limit: int, lease: float) -> list[Claim]:
        now = time.time()
        token = os.urandom(8).hex()
        claims: list[Claim] = []
        with self._s.lock:
            self._promote(now)
            heads = [self._s.ready.get(q) for q in queues if q not in self._s.paused]
            held: list[tuple[list[tuple[int, int, str]], tuple[int, int, str]]] = []
            while len(claims) < limit:
                best: list[tuple[int, int, str]] | None = None
                for heap in heads:
                    if heap and (best is None or heap[0] < best[0]):
                        best = heap
                if best is None:
                    break
                entry = heapq.heappop(best)
                row = self._s.rows.get(entry[2])
                if row is None or row.state is not JobState.QUEUED:
                    continue  # cancelled or re-queued since; a stale heap entry
                key = row.job.limit_key
                if key is not None:
                    if self._s.running.get(key, 0) >= row.job.limit:
                        held.append((best, entry))  # at its limit: stays queued, others go on
                        continue
                    self._s.running[key] = self._s.running.get(key, 0) + 1
                row.state = JobState.RUNNING
                row.attempts += 1
                row.token = token
                row.worker_id = worker_id
                row.started_at = now
                row.lease_until = now + lease
                claims.append(Claim(job=row.job, token=token, attempt=row.attempts))
            for heap, entry in held:
                heapq.heappush(heap, entry)
        return claims

    async def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
        done: list[bool] = []
        with self._s.lock:
            now = time.time()
            for o in outcomes:
                row = self._owned(o.job_id, o.token)
                done.append(row is not None)
                if row is not None:
                    self._apply(row, settled(o, now), o.error)
        return done

    def _apply(self, row: _Row, t: Transition, error: ErrorInfo | None) -> None:
        """A transition's fields on a row (the error kept as the outcome's ErrorInfo, not encoded)."""
        if t.state is JobState.SUCCEEDED:  # the hot path, first
            row.error = None
            row.result = t.result
            self._finish(row, t.state, t.finished_at, t.expires_at)
            return
        if not t.keep_error:
            row.failed_with(error)
        if t.release:
            row.attempts -= 1
        if t.finished_at is not None:
            self._finish(row, t.state, t.finished_at, t.expires_at)
            return
        row.token = None
        row.lease_until = None
        if t.state is JobState.SCHEDULED and t.run_at is not None:
            self._schedule(row, t.run_at)
        else:
            self._push_ready(row)

    async def heartbeat(
        self, worker: WorkerInfo, leases: Sequence[tuple[str, str]], lease: float
    ) -> list[str]:
        now = time.time()
        lost: list[str] = []
        with self._s.lock:
            self._s.workers[worker.id] = msgspec.structs.replace(worker, last_seen=now)
            for job_id, token in leases:
                row = self._owned(job_id, token)
                if row is None:
                    lost.append(job_id)
                else:
                    row.lease_until = now + lease
        return lost

    async def wait(self, queues: Sequence[str], timeout: float) -> None:
        # No other process can add work; the app's in-process notifier covers this one.
        await asyncio.sleep(timeout)

    async def recover(self, dead_after: float, expires_at: float | None = None) -> int:
        now = time.time()
        count = 0
        with self._s.lock:
            alive = {w.id for w in self._s.workers.values() if w.last_seen >= now - dead_after}
            for row in self._s.rows.values():
                if row.state is not JobState.RUNNING:
                    continue
                expired = row.lease_until is not None and row.lease_until < now
                if not expired and row.worker_id in alive:
                    continue
                if not expired and row.worker_id not in self._s.workers and row.lease_until is not None:
                    continue  # an unregistered claimer: only its lease can tell
                count += 1
                assert row.token is not None  # RUNNING: claimed under a token
                outcome = recovered(Claim(row.job, row.token, row.attempts), now, expires_at)
                self._apply(row, settled(outcome, now), outcome.error)
            for wid in [w for w in self._s.workers if w not in alive]:
                del self._s.workers[wid]
        return count

    async def prune(self) -> int:
        now = time.time()
        with self._s.lock:
            dead = [
                jid
                for jid, row in self._s.rows.items()
                if row.state.is_final and row.expires_at is not None and row.expires_at <= now
            ]
            for jid in dead:
                del self._s.rows[jid]
        return len(dead)

    async def get(self, job_id: str) -> JobRecord | None:
        with self._s.lock:
            row = self._s.rows.get(job_id)
            return None if row is None else row.record()

    async def list_jobs(
        self,
        *,
        queue: str | None = None,
        state: JobState | None = None,
        task: str | None = None,
        limit: int = 100,
    ) -> list[JobRecord]:
        with self._s.lock:
            rows = sorted(self._s.rows.values(), key=lambda r: r.seq, reverse=True)
            out = [
                r.record()
                for r in rows
                if (queue is None or r.job.queue == queue)
                and (state is None or r.state is state)
                and (task is None or r.job.task == task)
            ]
        return out[:limit]

    async def stats(self) -> list[QueueStats]:
        counts: dict[str, dict[str, int]] = {}
        with self._s.lock:
            for row in self._s.rows.values():
                per = counts.setdefault(row.job.queue, {})
                per[row.state.value] = per.get(row.state.value, 0) + 1
        return [QueueStats(q, c) for q, c in sorted(counts.items())]

    async def cancel(self, job_id: str, expires_at: float) -> bool:
        with self._s.lock:
            row = self._s.rows.get(job_id)
            if row is None or row.state.is_final:
                return False
            self._finish(row, JobState.CANCELLED, None, expires_at)
            return True

    async def requeue(self, job_id: str) -> bool:
        with self._s.lock:
            row = self._s.rows.get(job_id)
            if row is None or row.state not in (JobState.FAILED, JobState.CANCELLED):
                return False
            key = row.job.unique_key
            if key is not None:
                if key in self._s.unique:
                    return False
                self._s.unique[key] = job_id
            row.attempts = 0
            row.error = None  # the history stays
            row.finished_at = None
            row.expires_at = None
            self._push_ready(row)
            return True

    async def requeue_jobs(self, job_ids: Sequence[str]) -> int:
        return sum([await self.requeue(job_id) for job_id in job_ids])

    async def cancel_jobs(self, job_ids: Sequence[str], expires_at: float) -> int:
        return sum([await self.cancel(job_id, expires_at) for job_id in job_ids])

    async def purge(self, *, queue: str | None = None, states: Sequence[JobState] = ()) -> int:
        wanted = set(purged(states))
        with self._s.lock:
            dead = [
                jid
                for jid, row in self._s.rows.items()
                if row.state in wanted and (queue is None or row.job.queue == queue)
            ]
            for jid in dead:
                row = self._s.rows.pop(jid)
                self._leave_running(row)
                if row.state in PENDING_STATES and row.job.unique_key is not None:
                    self._s.unique.pop(row.job.unique_key, None)
        return len(dead)

    async def progress(self, job_id: str, token: str, data: bytes) -> bool:
        with self._s.lock:
            row = self._owned(job_id, token)
            if row is not None:
                row.progress = data
            return row is not None

    async def take(self, key: str, rate: float, burst: float) -> float:
        now = time.time()
        with self._s.lock:
            self._s.buckets[key], wait = bucket.take(self._s.buckets.get(key), now, rate, burst)
            return wait

    async def unregister_worker(self, worker_id: str) -> None:
        with self._s.lock:
            self._s.workers.pop(worker_id, None)

    async def workers(self) -> list[WorkerInfo]:
        with self._s.lock:
            return list(self._s.workers.values())

    # -- inspection (pigeon.brokers.inspection) ------------------------------

    async def find_jobs(
        self, where: JobFilter, *, limit: int = 50, before: str | None = None
    ) -> list[JobRecord]:
        with self._s.lock:
            top = None
            if before is not None:
                cursor = self._s.rows.get(before)
                if cursor is None:
                    return []
                top = cursor.seq
            out: list[JobRecord] = []
            low = self._lowest(where)
            for row in sorted(self._s.rows.values(), key=lambda r: r.seq, reverse=True):
                if len(out) >= limit or row.seq < low:
                    break
                if top is not None and row.seq >= top:
                    continue
                record = row.record()
                if where.matches(record):
                    out.append(record)
            return out

    async def count_jobs(self, where: JobFilter) -> int:
        with self._s.lock:
            low = self._lowest(where)
            return sum(1 for row in self._s.rows.values() if row.seq >= low and where.matches(row.record()))

    def _lowest(self, where: JobFilter) -> int:
        """The oldest enqueue position ``where.newest`` lets a search look at (the jobs kept's)."""
        if where.newest is None or not self._s.rows:
            return 0
        return max(r.seq for r in self._s.rows.values()) - where.newest + 1

    async def delete_jobs(self, job_ids: Sequence[str]) -> int:
        deleted = 0
        with self._s.lock:
            for job_id in job_ids:
                row = self._s.rows.pop(job_id, None)
                if row is None:
                    continue
                deleted += 1
                self._leave_running(row)
                key = row.job.unique_key
                if key is not None and self._s.unique.get(key) == job_id:
                    del self._s.unique[key]
        return deleted

    async def oldest_ready(self) -> dict[str, float]:
        out: dict[str, float] = {}
        with self._s.lock:
            for row in self._s.rows.values():
                if row.state is JobState.QUEUED:
                    q = row.job.queue
                    out[q] = min(out.get(q, row.job.enqueued_at), row.job.enqueued_at)
        return out

    async def pause_queue(self, queue: str) -> None:
        with self._s.lock:
            self._s.paused.add(queue)

    async def resume_queue(self, queue: str) -> None:
        with self._s.lock:
            self._s.paused.discard(queue)

    async def paused_queues(self) -> list[str]:
        with self._s.lock:
            return sorted(self._s.paused)
