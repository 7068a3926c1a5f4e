"""``postgresql://user@host/db`` — the server broker: PostgreSQL through psycopg 3.

Every operation is one statement on a pooled autocommit connection: claims lock
their rows with ``FOR UPDATE SKIP LOCKED`` so workers never wait on each other,
and settles apply a whole batch of outcomes through ``unnest`` arrays.
Statements that make jobs QUEUED also ``pg_notify`` the queue's name on the
namespace's channel; :meth:`PostgresBroker.wait` listens on a dedicated
connection, so an idle worker starts a job a millisecond or so after its commit.
Concurrency limits count RUNNING jobs per key in a table kept by triggers.

The URL's ``namespace`` parameter names the schema that holds the tables
(default ``pigeon``), so apps and test runs can share a server.

Behind a pooler in transaction mode (PgBouncer) every statement works, as none is
prepared on the server (``prepare_threshold=None``), but LISTEN does not: the
listener checks at start that a notice of its own reaches it, and when none does
it says so once and idle workers poll (every 0.25 s). The
URL's ``listen_url`` parameter (percent-encoded) names a direct connection for
LISTEN alone, which keeps wake-ups instant. The schema is
created and upgraded by :meth:`PostgresBroker.migrate` (``pigeon migrate``);
:meth:`PostgresBroker.open` refuses a schema that is behind.

:meth:`PostgresBroker.enqueue_in` writes with the caller's own connection, so a
job commits or rolls back with the caller's transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import selectors
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Self
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from pigeon.brokers.base import BrokerBase, Capabilities
from pigeon.brokers.inspection import JobFilter
from pigeon.brokers.sql import filter_clause, find_sql, migrations, queries, record_from_row
from pigeon.errors import BrokerConnectionError, BrokerError, ConfigurationError
from pigeon.job import (
    Claim,
    ErrorInfo,
    Job,
    JobRecord,
    JobState,
    Outcome,
    OutcomeKind,
    QueueStats,
    WorkerInfo,
    stored_claim,
)

_NAMESPACE = re.compile(r"[a-z_][a-z0-9_]{0,47}")
_CONNECTION_STATES = ("57P01", "57P02", "57P03")  # admin/crash shutdown, cannot connect now
_POOL_TIMEOUT = 10.0
_UNIQUE_RETRIES = 3
_CLAIM_PASSES = 4
_CHUNK = 1000
_PRUNE_BATCH = 10_000
"""Outcomes per settle statement: a worker that fell behind flushes a long outbox in steps,
each holding its row locks briefly."""
_PROBE_WAIT = 2.0
"""How long the listener waits for its own notice before concluding LISTEN is cut off."""
_POOLED_POLL = 0.25
"""Without LISTEN, the longest a wait lasts: idle workers then look for jobs this often."""
_LOST = msgspec.json.encode(ErrorInfo("pigeon.WorkerLost", "the worker running this job was lost"))
_worker_decoder = msgspec.json.Decoder(WorkerInfo)

AnyConnection = psycopg.AsyncConnection[Any] | psycopg.Connection[Any]
log = logging.getLogger("pigeon.broker.postgres")


class PostgresBroker(BrokerBase):
    """The PostgreSQL broker: a pool for statements, one more connection to LISTEN."""

    capabilities = Capabilities(transactional_enqueue=True)

    def __init__(
        self,
        conninfo: str,
        *,
        namespace: str = "pigeon",
        url: str = "",
        max_connections: int = 10,
        listen_conninfo: str | None = None,
    ) -> None:
        if not _NAMESPACE.fullmatch(namespace):
            raise ConfigurationError(
                f"namespace {namespace!r}: use lower-case letters, digits and _ (a PostgreSQL schema name)"
            )
        params = conninfo_to_dict(conninfo)
        params.setdefault("application_name", "pigeon")
        self._conninfo = conninfo
        self._listen_conninfo = listen_conninfo or conninfo
        # No statement prepared on the server: a transaction-mode pooler would hand the next
        # execution a server connection that never saw it.
        self._kwargs: dict[str, Any] = {
            "application_name": params["application_name"],
            "prepare_threshold": None,
        }
        self.namespace = namespace
        self.url = url or conninfo
        self._where = (
            f"{params.get('host', 'localhost')}:{params.get('port', 5432)}/{params.get('dbname', '')}"
        )
        self._max = max_connections
        self.prune_batch = _PRUNE_BATCH
        """Jobs one prune statement deletes; a prune runs as many as it needs."""
        self._q = {
            name: text.replace("{ns}", namespace).encode() for name, text in queries("postgres").items()
        }
        self._channel = f"pigeon:{namespace}"
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._waiters: dict[asyncio.Event, frozenset[str]] = {}
        self._pending: set[str] = set()
        self._listen_works: bool | None = None  # None until the listener's first check
        self._probe = f"pigeon.probe.{os.urandom(8).hex()}"

    @classmethod
    def from_url(cls, url: str, shared: dict[str, Any]) -> Self:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        namespace = next((v for k, v in query if k == "namespace"), "pigeon")
        listen = next((v for k, v in query if k == "listen_url"), None)
        rest = urlencode([(k, v) for k, v in query if k not in ("namespace", "listen_url")])
        conninfo = urlunsplit(parts._replace(scheme="postgresql", query=rest))
        if listen is not None and urlsplit(listen).scheme not in ("postgres", "postgresql"):
            raise ConfigurationError(f"listen_url {listen!r}: give a postgresql:// URL (percent-encoded)")
        return cls(conninfo, namespace=namespace, url=url, listen_conninfo=listen)

    # -- plumbing ------------------------------------------------------------

    def _error(self, exc: psycopg.Error) -> BrokerError:
        state = exc.sqlstate or ""
        text = f"PostgreSQL ({self._where}): {exc}"
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) and (
            not state or state.startswith("08") or state in _CONNECTION_STATES
        ):
            return BrokerConnectionError(text)
        return BrokerError(text)

    async def _connect(self, *, listen: bool = False) -> psycopg.AsyncConnection[Any]:
        conninfo = self._listen_conninfo if listen else self._conninfo
        return await psycopg.AsyncConnection.connect(conninfo, autocommit=True, **self._kwargs)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        if self._pool is None:
            raise BrokerConnectionError("the PostgreSQL broker is not open (use `async with broker:`)")
        try:
            async with self._pool.connection() as conn:
                yield conn
        except psycopg.Error as exc:
            raise self._error(exc) from exc
        except (TimeoutError, OSError) as exc:
            raise BrokerConnectionError(f"PostgreSQL ({self._where}): {type(exc).__name__}: {exc}") from exc

    async def _fetch(self, name: str, params: dict[str, Any] | Callable[[], dict[str, Any]]) -> list[Any]:
        """Run a named query; ``params`` may be built only once a connection is ready.

        The wait for a connection can last as long as an outage: a lease reckoned from the
        time before it could be over when the statement lands, and the job recovered at once.
        """
        async with self._connection() as conn:
            cur = await conn.execute(self._q[name], params() if callable(params) else params)
            return await cur.fetchall()

    async def _execute(self, name: str, params: dict[str, Any]) -> int:
        async with self._connection() as conn:
            cur = await conn.execute(self._q[name], params)
            return cur.rowcount

    async def migrate(self) -> list[str]:
        """Create or upgrade the namespace's schema; return the names of the migrations applied.

        Safe to run from several processes at once: they queue on an advisory lock.

        Raises:
            ConfigurationError: the schema is newer than this pigeon knows.
            BrokerError: PostgreSQL failed (BrokerConnectionError when unreachable).
        """
        plan = _MigrationPlan(self.namespace)
        try:
            async with await self._connect() as conn, conn.transaction():
                for statement, params in plan.prepare():
                    await conn.execute(statement, params)
                cur = await conn.execute(plan.select_done)
                for statement, params in plan.steps({v for (v,) in await cur.fetchall()}):
                    await conn.execute(statement, params)
        except psycopg.Error as exc:
            raise self._error(exc) from exc
        return plan.applied

    async def open(self) -> None:
        """Check the schema and open the pool.

        Raises:
            ConfigurationError: the schema is missing or behind (run ``pigeon migrate``), or newer.
            BrokerConnectionError: PostgreSQL cannot be reached.
        """
        try:
            async with await self._connect() as conn:
                version = await self._schema_version(conn)
        except psycopg.Error as exc:
            raise self._error(exc) from exc
        latest = migrations("postgres")[-1][0]
        _check_not_newer(self.namespace, version)
        if version < latest:
            raise ConfigurationError(
                f"the pigeon schema {self.namespace!r} on {self._where} is at version {version}, this pigeon"
                f" needs {latest}: run `pigeon migrate`"
            )
        pool = AsyncConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=self._max,
            kwargs={"autocommit": True, **self._kwargs},
            check=_check_idle,
            timeout=_POOL_TIMEOUT,
            name=f"pigeon-{self.namespace}",
            open=False,
        )
        await pool.open()
        self._pool = pool

    async def _schema_version(self, conn: psycopg.AsyncConnection[Any]) -> int:
        exists = "SELECT to_regclass(format('%%I.schema_version', %s::text)) IS NOT NULL"
        row = await (await conn.execute(exists, [self.namespace])).fetchone()
        if not (row and row[0]):
            return 0
        query = sql.SQL("SELECT coalesce(max(version), 0) FROM {}.schema_version")
        row = await (await conn.execute(query.format(sql.Identifier(self.namespace)))).fetchone()
        return int(row[0]) if row else 0

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    # -- producing -----------------------------------------------------------

    async def enqueue(self, jobs: Sequence[Job]) -> list[str]:
        async with self._connection() as conn:
            return await self._enqueue_async(conn, jobs)

    async def enqueue_in(self, connection: AnyConnection, jobs: Sequence[Job]) -> list[str]:
        """Enqueue with the caller's connection, inside the caller's transaction.

        The jobs become visible, and workers are notified, when that transaction
        commits; a rollback discards them. The broker need not be open.

        Raises:
            BrokerError: the insert failed (the caller's transaction is then aborted).
        """
        if isinstance(connection, psycopg.Connection):
            return await asyncio.to_thread(self.enqueue_in_sync, connection, jobs)
        try:
            return await self._enqueue_async(connection, jobs)
        except psycopg.Error as exc:
            raise self._error(exc) from exc

    def enqueue_in_sync(self, connection: psycopg.Connection[Any], jobs: Sequence[Job]) -> list[str]:
        """:meth:`enqueue_in` for a synchronous psycopg connection (a Django or Flask request).

        Raises:
            BrokerError: the insert failed (the caller's transaction is then aborted).
        """
        batch = _Batch(jobs, self._channel)
        # A plain Cursor binds server-side (the arrays are binary), even on a connection whose
        # cursor factory binds client-side, as Django's does; it shares the caller's transaction.
        cur = psycopg.Cursor(connection)
        try:
            while (params := batch.next_insert()) is not None:
                keys = batch.inserted(cur.execute(self._q["enqueue"], params).fetchall())
                if keys:
                    batch.found(cur.execute(self._q["pending_by_key"], {"keys": keys}).fetchall())
        except psycopg.Error as exc:
            raise self._error(exc) from exc
        return batch.ids()

    async def _enqueue_async(self, conn: psycopg.AsyncConnection[Any], jobs: Sequence[Job]) -> list[str]:
        batch = _Batch(jobs, self._channel)
        while (params := batch.next_insert()) is not None:
            keys = batch.inserted(await (await conn.execute(self._q["enqueue"], params)).fetchall())
            if keys:
                found = await (await conn.execute(self._q["pending_by_key"], {"keys": keys})).fetchall()
                batch.found(found)
        return batch.ids()

    # -- consuming -----------------------------------------------------------

    async def claim(self, worker_id: str, queues: Sequence[str], limit: int, lease: float) -> list[Claim]:
        if limit <= 0 or not queues:
            return []
        token = os.urandom(8).hex()
        rows: list[Any] = []
        full: list[str] = []
        for _ in range(_CLAIM_PASSES):  # another pass only when limited keys were found full

            def params(left: int = limit - len(rows), full: list[str] = full) -> dict[str, Any]:
                now = time.time()
                return {"queues": list(queues), "limit": left, "full": full, "now": now} | {
                    "token": token,
                    "worker_id": worker_id,
                    "lease_until": now + lease,
                }

            found = await self._fetch("claim", params)
            rows += [r for r in found if r[2] is not None]
            more_full = [r[5] for r in found if r[2] is None]
            if not more_full or len(rows) >= limit:
                break
            full += more_full
        rows.sort(key=lambda r: (-r[0], r[1]))
        return [stored_claim(r[4], r[2], token, r[3]) for r in rows]

    async def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
        now = time.time()
        rows: dict[str, tuple[Any, ...]] = {}
        for o in outcomes:  # a second outcome for one job in one batch is refused, as it would be later
            rows.setdefault(o.job_id, _settle_row(o, now))
        done: set[str] = set()
        for chunk in itertools.batched(rows.values(), _CHUNK):
            params = _columns(_SETTLE_COLUMNS, list(chunk))
            done.update(r[0] for r in await self._fetch("settle", {**params, "channel": self._channel}))
        accepted: list[bool] = []
        for o in outcomes:
            accepted.append(o.job_id in done)
            done.discard(o.job_id)
        return accepted

    async def heartbeat(
        self, worker: WorkerInfo, leases: Sequence[tuple[str, str]], lease: float
    ) -> list[str]:
        ids, tokens = [jid for jid, _ in leases], [token for _, token in leases]
        params = {"worker_id": worker.id, "info": msgspec.json.encode(worker), "id": ids, "token": tokens}

        def timed() -> dict[str, Any]:
            now = time.time()
            return {**params, "now": now, "lease_until": now + lease}

        kept = {r[0] for r in await self._fetch("heartbeat", timed)}
        return [jid for jid, _ in leases if jid not in kept]

    async def wait(self, queues: Sequence[str], timeout: float) -> None:
        wanted = frozenset(queues)
        if self._pending & wanted:
            self._pending -= wanted
            return
        if self._pool is None:
            raise BrokerConnectionError("the PostgreSQL broker is not open (use `async with broker:`)")
        if self._listen_works is False:
            await asyncio.sleep(min(timeout, _POOLED_POLL))
            return
        if self._listener is None or self._listener.done():
            # The broker owns this task and close() ends it: one listener serves every waiter.
            self._listener = asyncio.create_task(self._listen(), name=f"pigeon-listen-{self.namespace}")
        event = asyncio.Event()
        self._waiters[event] = wanted
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            pass
        finally:
            del self._waiters[event]

    def _wake(self, queue: str) -> None:
        if queue.startswith("pigeon.probe."):
            return  # another process's listener checking its connection
        woken = False
        for event, wanted in self._waiters.items():
            if queue in wanted:
                event.set()
                woken = True
        if not woken:
            self._pending.add(queue)  # for the next wait(), so a notice between two waits is not lost

    async def _listen(self) -> None:
        """Keep a LISTEN connection, reconnecting with back-off, and wake the waiters it concerns."""
        pause = 0.05
        listen = sql.SQL("LISTEN {}").format(sql.Identifier(self._channel))
        while True:
            try:
                async with await self._connect(listen=True) as conn:
                    await conn.execute(listen)
                    if self._listen_works is None and not await self._notices_arrive(conn):
                        self._listen_works = False
                        log.warning(
                            "LISTEN on %s receives no notifications (a pooler in transaction mode, such as"
                            " PgBouncer?): idle workers poll instead; add listen_url=<a direct"
                            " postgresql:// URL, percent-encoded> to the broker URL for instant wake-ups",
                            self._where,
                        )
                        for event in self._waiters:  # to poll from now on
                            event.set()
                        return
                    self._listen_works = True
                    # Jobs queued before LISTEN took effect notified nobody; look for them once.
                    wanted = sorted(set().union(*self._waiters.values()))
                    if wanted:
                        cur = await conn.execute(self._q["queued_in"], {"queues": wanted})
                        for (queue,) in await cur.fetchall():
                            self._wake(queue)
                    pause = 0.05
                    async for note in conn.notifies():
                        self._wake(note.payload)
            except psycopg.Error:
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    async def _notices_arrive(self, conn: psycopg.AsyncConnection[Any]) -> bool:
        """Send a notice of our own through the pool; say whether the LISTEN connection gets it."""
        async with self._connection() as other:
            await other.execute("SELECT pg_notify(%s, %s)", [self._channel, self._probe])
        try:
            async with asyncio.timeout(_PROBE_WAIT):
                async for note in conn.notifies():
                    if note.payload == self._probe:
                        return True
                    self._wake(note.payload)
        except TimeoutError:
            pass
        return False

    async def recover(self, dead_after: float, expires_at: float | None = None) -> int:
        now = time.time()
        params = {
            "now": now,
            "silent": now - dead_after,
            "lost_error": _LOST,
            "channel": self._channel,
            "expires": expires_at,
        }
        rows = await self._fetch("recover", params)
        return int(rows[0][0])

    async def prune(self) -> int:
        now, total = time.time(), 0
        while (n := await self._execute("prune", {"now": now, "limit": self.prune_batch})) > 0:
            total += n
            if n < self.prune_batch:
                break
        return total

    # -- inspecting ----------------------------------------------------------

    async def get(self, job_id: str) -> JobRecord | None:
        rows = await self._fetch("get", {"id": job_id})
        return record_from_row(rows[0]) if rows else None

    async def list_jobs(
        self,
        *,
        queue: str | None = None,
        state: JobState | None = None,
        task: str | None = None,
        limit: int = 100,
    ) -> list[JobRecord]:
        value = None if state is None else state.value
        params = {"queue": queue, "state": value, "task": task, "limit": limit}
        return [record_from_row(r) for r in await self._fetch("list", params)]

    async def stats(self) -> list[QueueStats]:
        counts: dict[str, dict[str, int]] = {}
        for queue, state, n in await self._fetch("stats", {}):
            counts.setdefault(queue, {})[state] = n
        return [QueueStats(q, c) for q, c in counts.items()]

    async def cancel(self, job_id: str, expires_at: float) -> bool:
        params = {"id": job_id, "now": time.time(), "expires_at": expires_at}
        return await self._execute("cancel", params) == 1

    async def requeue(self, job_id: str) -> bool:
        params = {"id": job_id, "now": time.time(), "channel": self._channel}
        try:
            rows = await self._fetch("requeue", params)
        except BrokerError as exc:
            if isinstance(exc.__cause__, psycopg.errors.UniqueViolation):
                return False  # its unique key is taken by a newer pending job
            raise
        return bool(rows[0][0] == 1)

    async def purge(self, *, queue: str | None = None, states: Sequence[JobState] = ()) -> int:
        wanted = [s.value for s in (states or [s for s in JobState if s.is_final])]
        return await self._execute("purge", {"states": wanted, "queue": queue})

    async def progress(self, job_id: str, token: str, data: bytes) -> bool:
        return await self._execute("progress", {"id": job_id, "token": token, "data": data}) == 1

    async def take(self, key: str, rate: float, burst: float) -> float:
        params = {"key": key, "rate": float(rate), "burst": float(burst), "now": time.time()}
        ((granted, tokens),) = await self._fetch("take", params)
        return 0.0 if granted else (1 - tokens) / rate

    async def register_worker(self, info: WorkerInfo) -> None:
        params = {"worker_id": info.id, "info": msgspec.json.encode(info), "now": time.time()}
        await self._execute("upsert_worker", params)

    async def unregister_worker(self, worker_id: str) -> None:
        await self._execute("delete_worker", {"worker_id": worker_id})

    async def workers(self) -> list[WorkerInfo]:
        rows = await self._fetch("workers", {})
        return [msgspec.structs.replace(_worker_decoder.decode(info), last_seen=seen) for info, seen in rows]

    # -- inspection (pigeon.brokers.inspection) ------------------------------

    async def _filtered(self, name: str, where: JobFilter, before: str | None, **extra: Any) -> list[Any]:
        clause, params = filter_clause(where, before, dialect="postgres", table=f"{self.namespace}.jobs")
        async with self._connection() as conn:
            cur = await conn.execute(self._q[name].replace(b"{where}", clause.encode()), {**params, **extra})
            return await cur.fetchall()

    async def find_jobs(
        self, where: JobFilter, *, limit: int = 50, before: str | None = None
    ) -> list[JobRecord]:
        table = f"{self.namespace}.jobs"
        if where.args and not where.states:
            clause, params = filter_clause(where, before, dialect="postgres", table=table)
            sql = self._q["find_any_state"].replace(b"{where}", clause.encode())
        else:
            text, params = find_sql(
                self._q["find_in_state"].decode(), where, before, dialect="postgres", table=table
            )
            sql = text.encode()
        async with self._connection() as conn:
            rows = await (await conn.execute(sql, {**params, "limit": limit})).fetchall()
        return [record_from_row(r[:-1]) for r in rows]

    async def count_jobs(self, where: JobFilter) -> int:
        return int((await self._filtered("count", where, None))[0][0])

    async def delete_jobs(self, job_ids: Sequence[str]) -> int:
        return await self._execute("delete", {"ids": list(job_ids)}) if job_ids else 0

    async def oldest_ready(self) -> dict[str, float]:
        return dict(await self._fetch("oldest_ready", {}))

    async def pause_queue(self, queue: str) -> None:
        await self._execute("pause", {"queue": queue})

    async def resume_queue(self, queue: str) -> None:
        await self._fetch("resume", {"queue": queue, "channel": self._channel})

    async def paused_queues(self) -> list[str]:
        return [q for (q,) in await self._fetch("paused", {})]


class _Batch:
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

    def next_insert(self) -> dict[str, Any] | None:
        if not self._todo:
            return None
        self._tries += 1
        if self._tries > _UNIQUE_RETRIES:
            for i in self._todo:  # the key keeps changing hands; answer with the job's own id
                self._answer[i] = self._jobs[i].id
            self._todo = []
            return None
        now = time.time()
        rows = [_enqueue_row(self._jobs[i], now) for i in self._todo]
        limit_keys = sorted({r[-2] for r in rows if r[-2] is not None})
        return {**_columns(_ENQUEUE_COLUMNS, rows), "limit_keys": limit_keys, "channel": self._channel}

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
_ENQUEUE_COLUMNS = (
    "id task queue priority state envelope max_attempts unique_key run_at enqueued_at limit_key limit_n"
)
_SETTLE_COLUMNS = "id token state result error keep_error release run_at finished_at expires_at"


def _columns(names: str, rows: list[tuple[Any, ...]]) -> dict[str, list[Any]]:
    """One list per named column: the arrays a statement unnests."""
    return {name: [row[i] for row in rows] for i, name in enumerate(names.split())}


def _enqueue_row(j: Job, now: float) -> tuple[Any, ...]:
    run_at = now if j.run_at is None else j.run_at
    state = "scheduled" if run_at > now else "queued"
    row = (j.id, j.task, j.queue, j.priority, state, j.encode(), j.max_attempts, j.unique_key, run_at)
    return (*row, j.enqueued_at or now, j.limit_key, j.limit)


def _settle_row(o: Outcome, now: float) -> tuple[Any, ...]:
    error = None if o.error is None else msgspec.json.encode(o.error)
    if o.kind is OutcomeKind.COMPLETE:
        return (o.job_id, o.token, "succeeded", o.result, None, False, False, None, now, o.expires_at)
    if o.kind is OutcomeKind.FAIL:
        return (o.job_id, o.token, "failed", None, error, False, False, None, now, o.expires_at)
    if o.kind is OutcomeKind.RETRY:
        run_at = o.run_at or now
        state = "scheduled" if run_at > now else "queued"
        return (o.job_id, o.token, state, None, error, False, False, run_at, None, None)
    if o.kind is OutcomeKind.DEFER:  # like a retry, but the attempt is given back
        run_at = o.run_at or now
        state = "scheduled" if run_at > now else "queued"
        return (o.job_id, o.token, state, None, None, True, True, run_at, None, None)
    return (o.job_id, o.token, "queued", None, None, True, True, None, None, None)


def _check_not_newer(namespace: str, version: int) -> None:
    latest = migrations("postgres")[-1][0]
    if version > latest:
        raise ConfigurationError(
            f"the pigeon schema {namespace!r} is at version {version}, newer than this pigeon knows"
            f" ({latest}): upgrade pigeon"
        )


async def _check_idle(conn: psycopg.AsyncConnection[Any]) -> None:
    """Refuse a pooled connection the server has closed (a restart, pg_terminate_backend).

    An idle connection's socket only turns readable when the server says goodbye,
    so the round trip of a real check is paid only then.
    """
    with selectors.DefaultSelector() as sel:  # not select.select: descriptors may exceed 1024
        sel.register(conn.fileno(), selectors.EVENT_READ)
        readable = sel.select(0)
    if readable:
        await AsyncConnectionPool.check_connection(conn)


class _MigrationPlan:
    """The statements of a migration run, shared by the async broker and :func:`migrate_connection`."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        ns = sql.Identifier(namespace)
        self._versions = sql.SQL("{}.schema_version").format(ns)
        self._ns = ns
        self.select_done = sql.SQL("SELECT version FROM {}").format(self._versions)
        self.applied: list[str] = []

    def prepare(self) -> list[tuple[Any, list[Any] | None]]:
        return [
            ("SELECT pg_advisory_xact_lock(hashtext('pigeon.migrate:' || %s))", [self.namespace]),
            (sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(self._ns), None),
            (
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (version integer PRIMARY KEY, name text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                ).format(self._versions),
                None,
            ),
        ]

    def steps(self, done: set[int]) -> list[tuple[Any, list[Any] | None]]:
        _check_not_newer(self.namespace, max(done, default=0))
        insert = sql.SQL("INSERT INTO {} (version, name) VALUES (%s, %s)").format(self._versions)
        out: list[tuple[Any, list[Any] | None]] = []
        for version, name, text in migrations("postgres"):
            if version not in done:
                out += [(text.replace("{ns}", self.namespace).encode(), None), (insert, [version, name])]
                self.applied.append(f"{version:04d}_{name}")
        return out


def migrate_connection(connection: psycopg.Connection[Any], namespace: str = "pigeon") -> list[str]:
    """Create or upgrade pigeon's schema with the caller's connection, in its transaction.

    For frameworks that run schema changes themselves (Django migrations).
    Returns the migrations applied.

    Raises:
        ConfigurationError: the schema is newer than this pigeon knows.
    """
    plan = _MigrationPlan(namespace)
    cur = psycopg.Cursor(connection)  # server-side binding, whatever the connection's cursor factory
    for statement, params in plan.prepare():
        cur.execute(statement, params)
    cur.execute(plan.select_done)
    for statement, params in plan.steps({v for (v,) in cur.fetchall()}):
        cur.execute(statement, params)
    return plan.applied
