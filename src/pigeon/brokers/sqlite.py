"""``sqlite:///path`` — the embedded default: one file, no server.

WAL mode lets one writer and many readers work at once, and a busy timeout
makes several processes (the web app, workers) share the file safely. Every
write is one ``BEGIN IMMEDIATE`` transaction; claims and settles are batched,
so throughput is bound by commits, not by rows.

The sqlite3 module blocks, so each broker instance owns one connection and one
thread that runs every statement. Another process's commits are noticed by
polling ``PRAGMA data_version``, which reads shared memory, not the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit

import msgspec

from pigeon import bucket
from pigeon.brokers.base import BrokerBase, Capabilities
from pigeon.brokers.inspection import JobFilter
from pigeon.brokers.sql import SqlReads, filter_clause, find_sql, queries, record_from_row
from pigeon.brokers.sqlite_schema import connect, write
from pigeon.brokers.sync_pool import SyncPool
from pigeon.bucket import Bucket
from pigeon.errors import BrokerConnectionError, BrokerError, ConfigurationError
from pigeon.job import (
    Claim,
    Job,
    JobRecord,
    JobState,
    Outcome,
    WorkerInfo,
    stored_claim,
)
from pigeon.policy import recovered
from pigeon.transitions import Transition, arriving, settled

T = TypeVar("T")

_PRUNE_BATCH = 5000
_MERGED_QUEUES = 500  # SQLITE_MAX_COMPOUND_SELECT's default
"""Jobs one prune statement deletes, each its own short write transaction."""
_WATCH_EVERY = 0.004
# Errors are stored as text: SQLite's json() refuses a BLOB (or, from 3.45, reads it as JSONB).


class SqliteBroker(SqlReads, BrokerBase):
    """The embedded broker: a SQLite file in WAL mode."""

    capabilities = Capabilities()
    sync_connections = 1

    def __init__(
        self, path: str, *, busy_timeout: float = 10.0, write_lock: threading.Lock | None = None
    ) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        self._busy_timeout = busy_timeout
        self._write_lock = write_lock or threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._open = False
        self._q = queries("sqlite")
        self.applied: list[str] = []
        # One connection: SQLite takes one writer at a time, and concurrent sends share its commits.
        self._producing = SyncPool(self._producer_connection, sqlite3.Connection.close, self.sync_connections)

    @classmethod
    def from_url(cls, url: str, shared: dict[str, Any]) -> Self:
        parts = urlsplit(url)
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if parts.netloc or not path or path == ":memory:":
            raise ConfigurationError(
                f"{url!r}: write sqlite:///relative/path.db or sqlite:////absolute/path.db"
            )
        # One lock per file for the brokers of one client (its workers' loops, the portal):
        # they queue for the write lock here, in turn, rather than in SQLite's busy handler,
        # which sleeps 1, 2, 5, 10 … 100 ms between tries and lets a busy writer starve them.
        lock = shared.setdefault(f"sqlite-write:{os.path.abspath(path)}", threading.Lock())
        return cls(path, write_lock=lock)

    # -- plumbing ------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if not self._open:
            raise BrokerConnectionError("the SQLite broker is not open (use `async with broker:`)")
        try:
            if self._thread is None:  # blocking_ok: the loop only serves synchronous callers
                return fn(*args)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._thread, functools.partial(fn, *args))
        except sqlite3.Error as exc:
            raise BrokerError(f"SQLite ({self.path}): {exc}") from exc
        except OSError as exc:
            raise BrokerError(f"SQLite ({self.path}): {type(exc).__name__}: {exc}") from exc

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        db = self._db
        assert db is not None
        with self._write_lock:
            return write(db, fn)

    def _connect(self) -> None:
        self._db, self.applied = connect(self.path, self._busy_timeout, self._write_lock)

    async def migrate(self) -> list[str]:
        """Create or upgrade the tables (opening the broker does this too)."""
        async with SqliteBroker(self.path, busy_timeout=self._busy_timeout) as fresh:
            return fresh.applied

    async def open(self) -> None:
        if not self.blocking_ok:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="pigeon-sqlite")
        self._open = True
        try:
            await self._run(self._connect)
        except BrokerError as exc:
            await self.close()
            raise BrokerConnectionError(str(exc)) from exc

    async def close(self) -> None:
        if not self._open:
            return
        self._open = False
        db, self._db = self._db, None
        if self._thread is None:
            if db is not None:
                db.close()
            return
        if db is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, db.close)
        self._thread.shutdown(wait=True)
        self._thread = None

    # -- producing -----------------------------------------------------------

    async def enqueue(self, jobs: Sequence[Job]) -> list[str]:
        # Rows are encoded before the write lock is taken: other processes wait on it.
        rows = _rows(jobs)
        return await self._run(self._write, functools.partial(self._insert, jobs=jobs, rows=rows))

    def _insert(self, db: sqlite3.Connection, jobs: Sequence[Job], rows: list[tuple[Any, ...]]) -> list[str]:
        if not any(j.unique_key for j in jobs):
            db.executemany(self._q["insert"], rows)
            return [j.id for j in jobs]
        ids = []
        for job, row in zip(jobs, rows, strict=True):
            if db.execute(self._q["insert"], row).rowcount == 0 and job.unique_key is not None:
                found = db.execute(self._q["pending_by_key"], (job.unique_key,)).fetchone()
                ids.append(found[0] if found else job.id)
            else:
                ids.append(job.id)
        return ids

    def enqueue_in_sync(self, connection: sqlite3.Connection, jobs: Sequence[Job]) -> list[str]:
        """Enqueue with the caller's sqlite3 connection to the same file, inside its transaction.

        The jobs are visible to workers when the caller commits, gone if it
        rolls back. The tables must exist in that database (open the broker
        once, or run ``pigeon migrate``).

        Raises:
            BrokerError: the insert failed.
        """
        try:
            return self._insert(connection, jobs, _rows(jobs))
        except sqlite3.Error as exc:
            raise BrokerError(f"SQLite ({self.path}): {exc}") from exc

    async def enqueue_in(self, connection: sqlite3.Connection, jobs: Sequence[Job]) -> list[str]:
        """:meth:`enqueue_in_sync`; sqlite3 connections block, and are used from their own thread."""
        return self.enqueue_in_sync(connection, jobs)

    def enqueue_sync(self, jobs: Sequence[Job]) -> list[str]:
        """:meth:`enqueue` from any thread, on the calling threads' own connection.

        Raises:
            BrokerError: the insert failed.
            BrokerConnectionError: the file cannot be opened or its tables made.
        """
        insert = functools.partial(self._insert, jobs=jobs, rows=_rows(jobs))
        try:
            with self._producing.connection() as db, self._write_lock:
                return write(db, insert)
        except sqlite3.Error as exc:
            raise BrokerError(f"SQLite ({self.path}): {exc}") from exc

    def close_sync(self) -> None:
        """Close the connection :meth:`enqueue_sync` opened."""
        self._producing.close()

    def _producer_connection(self) -> sqlite3.Connection:
        try:
            return connect(self.path, self._busy_timeout, self._write_lock)[0]
        except (sqlite3.Error, OSError) as exc:
            raise BrokerConnectionError(f"SQLite ({self.path}): {exc}") from exc

    # -- consuming -----------------------------------------------------------

    async def claim(self, worker_id: str, queues: Sequence[str], limit: int, lease: float) -> list[Claim]:
        if limit <= 0 or not queues:
            return []
        queues = list(dict.fromkeys(queues))  # a queue named twice would yield its jobs twice
        candidates = self._candidates(len(queues))
        token = os.urandom(8).hex()

        def claim(db: sqlite3.Connection) -> list[tuple[int, int, bytes, int, str]]:
            now = time.time()
            db.execute(self._q["promote"], (now,))
            seqs = self._within_limits(db, db.execute(candidates, queues), limit)
            if not seqs:
                return []
            sql = self._q["claim"].replace("{seqs}", ",".join("?" * len(seqs)))
            return db.execute(sql, (token, worker_id, now, now + lease, *seqs)).fetchall()

        rows = await self._run(self._write, claim)
        rows.sort(key=lambda r: (-r[0], r[1]))
        return [stored_claim(jid, env, token, attempts) for _, _, env, attempts, jid in rows]

    def _candidates(self, n: int) -> str:
        # One index walk per queue, merged in claim order; past SQLite's 500 terms of a
        # compound SELECT, one statement that sorts.
        if n > _MERGED_QUEUES:
            return self._q["candidates_any"].replace("{queues}", ",".join("?" * n))
        return " UNION ALL ".join([self._q["candidates"]] * n) + " ORDER BY priority DESC, seq"

    def _within_limits(self, db: sqlite3.Connection, rows: sqlite3.Cursor, limit: int) -> list[int]:
        # The cursor walks the claim order lazily; a key at its limit is passed over.
        running: dict[str, int] = {}
        chosen: list[int] = []
        for seq, key, cap, _ in rows:
            if key is not None:
                if key not in running:
                    running[key] = db.execute(self._q["running_by_key"], (key,)).fetchone()[0]
                if running[key] >= cap:
                    continue
                running[key] += 1
            chosen.append(seq)
            if len(chosen) == limit:
                break
        rows.close()
        return chosen

    async def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
        succeed, general = self._q["succeed"], self._q["settle"]

        def settle(db: sqlite3.Connection) -> list[bool]:
            now = time.time()
            done = []
            for o in outcomes:
                t = settled(o, now)
                if t.state is JobState.SUCCEEDED:
                    args: tuple[Any, ...] = (t.result, t.finished_at, t.expires_at, t.job_id, t.token)
                    done.append(db.execute(succeed, args).rowcount == 1)
                else:
                    done.append(db.execute(general, _settle_params(t)).rowcount == 1)
            return done

        return await self._run(self._write, settle)

    async def heartbeat(
        self, worker: WorkerInfo, leases: Sequence[tuple[str, str]], lease: float
    ) -> list[str]:
        def beat(db: sqlite3.Connection) -> list[str]:
            now = time.time()
            db.execute(self._q["upsert_worker"], (worker.id, msgspec.json.encode(worker), now))
            return [
                jid
                for jid, token in leases
                if db.execute(self._q["extend"], (now + lease, jid, token)).rowcount == 0
            ]

        return await self._run(self._write, beat)

    async def wait(self, queues: Sequence[str], timeout: float) -> None:
        def version() -> int:
            assert self._db is not None
            row = self._db.execute("PRAGMA data_version").fetchone()
            return int(row[0])

        deadline = time.monotonic() + timeout
        first = await self._run(version)
        while time.monotonic() < deadline:
            await asyncio.sleep(_WATCH_EVERY)
            if await self._run(version) != first:
                return

    async def recover(self, dead_after: float, expires_at: float | None = None) -> int:
        q = self._q

        def recover(db: sqlite3.Connection) -> int:
            now = time.time()
            rows = db.execute(q["recoverable"], (now, now - dead_after)).fetchall()
            for envelope, token, attempts in rows:  # in this write transaction: atomic
                outcome = recovered(Claim(Job.decode(envelope), token, attempts), now, expires_at)
                db.execute(q["settle"], _settle_params(settled(outcome, now)))
            db.execute(q["forget_silent_workers"], (now - dead_after,))
            return len(rows)

        return await self._run(self._write, recover)

    async def prune(self) -> int:
        now, total = time.time(), 0
        while True:
            n: int = await self._run(
                self._write, lambda db: db.execute(self._q["prune"], (now, _PRUNE_BATCH)).rowcount
            )
            total += n
            if n < _PRUNE_BATCH:
                return total

    # -- inspecting ----------------------------------------------------------

    def _read(self, sql: str, params: Sequence[Any] | dict[str, Any]) -> list[Any]:
        assert self._db is not None
        return self._db.execute(sql, params).fetchall()

    async def _select(self, name: str, params: dict[str, Any]) -> list[Any]:
        return await self._run(self._read, self._q[name], params)

    async def cancel(self, job_id: str, expires_at: float) -> bool:
        def cancel(db: sqlite3.Connection) -> bool:
            return db.execute(self._q["cancel"], (time.time(), expires_at, job_id)).rowcount == 1

        return await self._run(self._write, cancel)

    async def requeue(self, job_id: str) -> bool:
        def requeue(db: sqlite3.Connection) -> bool:
            try:
                return db.execute(self._q["requeue"], (time.time(), job_id)).rowcount == 1
            except sqlite3.IntegrityError:  # its unique key is taken by a newer pending job
                return False

        return await self._run(self._write, requeue)

    async def requeue_jobs(self, job_ids: Sequence[str]) -> int:
        def requeue(db: sqlite3.Connection) -> int:
            now, moved = time.time(), 0
            for job_id in job_ids:  # one write transaction: a failed statement is undone alone
                # IntegrityError: its unique key is taken by a newer pending job
                with contextlib.suppress(sqlite3.IntegrityError):
                    moved += db.execute(self._q["requeue"], (now, job_id)).rowcount
            return moved

        return await self._run(self._write, requeue)

    async def cancel_jobs(self, job_ids: Sequence[str], expires_at: float) -> int:
        def cancel(db: sqlite3.Connection) -> int:
            sql, now = self._q["cancel"], time.time()
            return sum(db.execute(sql, (now, expires_at, job_id)).rowcount for job_id in job_ids)

        return await self._run(self._write, cancel)

    async def _change(self, name: str, params: dict[str, Any]) -> int:
        sql = self._q[name]
        return await self._run(self._write, lambda db: db.execute(sql, params).rowcount)

    async def progress(self, job_id: str, token: str, data: bytes) -> bool:
        def report(db: sqlite3.Connection) -> bool:
            return db.execute(self._q["progress"], (data, job_id, token)).rowcount == 1

        return await self._run(self._write, report)

    async def take(self, key: str, rate: float, burst: float) -> float:
        def take(db: sqlite3.Connection) -> float:
            row = db.execute(self._q["bucket"], (key,)).fetchone()
            stored, wait = bucket.take(None if row is None else Bucket(*row), time.time(), rate, burst)
            db.execute(self._q["bucket_put"], (key, *stored))
            return wait

        return await self._run(self._write, take)

    async def unregister_worker(self, worker_id: str) -> None:
        await self._run(self._write, lambda db: db.execute(self._q["delete_worker"], (worker_id,)))

    # -- inspection (pigeon.brokers.inspection) ------------------------------

    async def find_jobs(
        self, where: JobFilter, *, limit: int = 50, before: str | None = None
    ) -> list[JobRecord]:
        # A task's page walks (task, state) backwards once per state, whatever the task's share
        # of the table: one walk of every row for a rare task, or a sort of a common task's, otherwise.
        if where.states or where.task is not None:
            sql, params = find_sql(
                self._q["find_in_state"], where, before, dialect="sqlite", table="pigeon_jobs"
            )
        else:
            clause, params = filter_clause(where, before, dialect="sqlite", table="pigeon_jobs")
            sql = self._q["find_any_state"].replace("{where}", clause)
        return [record_from_row(r[:-1]) for r in await self._run(self._read, sql, {**params, "limit": limit})]

    async def count_jobs(self, where: JobFilter) -> int:
        clause, params = filter_clause(where, None, dialect="sqlite", table="pigeon_jobs")
        rows = await self._run(self._read, self._q["count"].replace("{where}", clause), params)
        return int(rows[0][0])

    async def delete_jobs(self, job_ids: Sequence[str]) -> int:
        ids = list(job_ids)
        if not ids:
            return 0
        sql = self._q["delete"].replace("{ids}", ",".join("?" * len(ids)))
        return await self._run(self._write, lambda db: db.execute(sql, ids).rowcount)

    async def oldest_ready(self) -> dict[str, float]:
        return dict(await self._run(self._read, self._q["oldest_ready"], ()))

    async def pause_queue(self, queue: str) -> None:
        await self._run(self._write, lambda db: db.execute(self._q["pause"], (queue,)))

    async def resume_queue(self, queue: str) -> None:
        await self._run(self._write, lambda db: db.execute(self._q["resume"], (queue,)))

    async def paused_queues(self) -> list[str]:
        return [q for (q,) in await self._run(self._read, self._q["paused"], ())]


def _settle_params(t: Transition) -> tuple[Any, ...]:
    """The settle query's parameters, in the order of its placeholders."""
    error = None if t.error is None else t.error.decode()
    keep_errors = t.keep_error or error is None
    result = (t.state is JobState.SUCCEEDED, t.result, t.keep_error, error, keep_errors, error)
    times = (int(t.release), t.run_at, t.finished_at, t.finished_at is None, t.expires_at)
    return (str(t.state), *result, *times, t.job_id, t.token)


def _arrival(j: Job, now: float) -> tuple[Any, ...]:
    state, run_at = arriving(j, now)
    return (state.value, j.encode(), j.max_attempts, j.unique_key, run_at)


def _rows(jobs: Sequence[Job]) -> list[tuple[Any, ...]]:
    now = time.time()
    return [
        (
            j.id,
            j.task,
            j.queue,
            j.priority,
            *_arrival(j, now),
            j.enqueued_at or now,
            j.limit_key,
            j.limit,
        )
        for j in jobs
    ]
