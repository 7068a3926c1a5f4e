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
prepared on the server until LISTEN has shown a session of its own, but LISTEN does
not work: the listener (started by a worker's first claim or wait) checks that a
notice of its own reaches it, and when none does it says so once and idle workers
poll (every 0.25 s; see :mod:`pigeon.brokers.postgres_listen`). The URL's
``listen_url`` parameter (percent-encoded) names a direct connection for LISTEN
alone, which keeps wake-ups instant (statements are then never prepared). The schema
is created and upgraded by :meth:`PostgresBroker.migrate` (``pigeon migrate``);
:meth:`PostgresBroker.open` refuses a schema that is behind.

:meth:`PostgresBroker.enqueue_in` writes with the caller's own connection, so a
job commits or rolls back with the caller's transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Self
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from pigeon import bucket
from pigeon.brokers.base import BrokerBase, Capabilities
from pigeon.brokers.inspection import JobFilter
from pigeon.brokers.postgres_listen import Listener
from pigeon.brokers.postgres_rows import SETTLE_COLUMNS, EnqueueBatch, columns, settle_row
from pigeon.brokers.postgres_schema import SCHEMA_EXISTS, MigrationPlan, check_current, schema_version_query
from pigeon.brokers.postgres_sync import check_idle, connect_producer
from pigeon.brokers.sql import SqlReads, filter_clause, find_sql, queries, record_from_row
from pigeon.brokers.sync_pool import SyncPool
from pigeon.errors import BrokerConnectionError, BrokerError, ConfigurationError
from pigeon.job import (
    Claim,
    Job,
    JobRecord,
    Outcome,
    WorkerInfo,
    stored_claim,
)
from pigeon.transitions import LOST_ERROR

_NAMESPACE = re.compile(r"[a-z_][a-z0-9_]{0,47}")
_CONNECTION_STATES = ("57P01", "57P02", "57P03")  # admin/crash shutdown, cannot connect now
_POOL_TIMEOUT = 10.0
_CLAIM_PASSES = 4
_CHUNK = 1000
"""Outcomes per settle statement: a long outbox goes in steps, each holding row locks briefly."""
_PRUNE_BATCH = 10_000
"""Jobs one prune statement deletes, each its own short transaction."""
_PREPARE_AFTER = 5  # runs of one statement on a connection before it is prepared (psycopg's default)

AnyConnection = psycopg.AsyncConnection[Any] | psycopg.Connection[Any]


class PostgresBroker(SqlReads, BrokerBase):
    """The PostgreSQL broker: a pool for statements, one more connection to LISTEN."""

    capabilities = Capabilities()
    sync_connections = 2

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
        self._produced = False  # connected once: later connections wait out a restart
        self._producing = SyncPool(self._producer_connection, psycopg.Connection.close, self.sync_connections)
        self._listener = Listener(
            self._channel,
            self._where,
            lambda: self._connect(listen=True),
            self._connection,
            self._q["queued_in"],
        )

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
                conn.prepare_threshold = self._prepare_after()
                yield conn
        except psycopg.Error as exc:
            raise self._error(exc) from exc
        except (TimeoutError, OSError) as exc:
            raise BrokerConnectionError(f"PostgreSQL ({self._where}): {type(exc).__name__}: {exc}") from exc

    def _prepare_after(self) -> int | None:
        """After how many runs a statement is prepared on a pool connection; None: never.

        Prepared, a claim or a settle is neither parsed nor planned again: it halves the
        server's CPU per job at small batches. A pooler in transaction mode would run the
        next execution on a server connection that never saw the statement, so statements
        are prepared only once LISTEN has shown that this URL reaches a session of its own.
        """
        if self._listener.works and self._listen_conninfo == self._conninfo:
            return _PREPARE_AFTER
        return None

    async def _select(self, name: str, params: dict[str, Any]) -> list[Any]:
        return await self._fetch(name, params)

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
        plan = MigrationPlan(self.namespace)
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
        check_current(self.namespace, version, self._where)
        pool = AsyncConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=self._max,
            kwargs={"autocommit": True, **self._kwargs},
            check=check_idle,
            timeout=_POOL_TIMEOUT,
            name=f"pigeon-{self.namespace}",
            open=False,
        )
        await pool.open()
        self._pool = pool

    async def _schema_version(self, conn: psycopg.AsyncConnection[Any]) -> int:
        row = await (await conn.execute(SCHEMA_EXISTS, [self.namespace])).fetchone()
        if not (row and row[0]):
            return 0
        row = await (await conn.execute(schema_version_query(self.namespace))).fetchone()
        return int(row[0]) if row else 0

    async def close(self) -> None:
        await self._listener.close()
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
        batch = EnqueueBatch(jobs, self._channel)
        # A plain Cursor binds server-side (the arrays are binary), even on a connection whose
        # cursor factory binds client-side, as Django's does; it shares the caller's transaction.
        cur = psycopg.Cursor(connection)
        try:
            while (insert := batch.next_insert()) is not None:
                keys = batch.inserted(cur.execute(self._q[insert[0]], insert[1]).fetchall())
                if keys:
                    batch.found(cur.execute(self._q["pending_by_key"], {"keys": keys}).fetchall())
        except psycopg.Error as exc:
            raise self._error(exc) from exc
        return batch.ids()

    def enqueue_sync(self, jobs: Sequence[Job]) -> list[str]:
        """:meth:`enqueue` from any thread, on blocking connections of the broker's own.

        Raises:
            ConfigurationError: the schema is missing or behind (as :meth:`open`).
            BrokerError: the insert failed (BrokerConnectionError when unreachable).
        """
        try:
            return self._producing.run(lambda conn: self.enqueue_in_sync(conn, jobs), BrokerConnectionError)
        except psycopg.Error as exc:
            raise self._error(exc) from exc
        except (TimeoutError, OSError) as exc:
            raise BrokerConnectionError(f"PostgreSQL ({self._where}): {type(exc).__name__}: {exc}") from exc

    def close_sync(self) -> None:
        """Close the connections :meth:`enqueue_sync` opened."""
        self._producing.close()

    def _producer_connection(self) -> psycopg.Connection[Any]:
        patience = _POOL_TIMEOUT if self._produced else 0.0
        conn = connect_producer(self._conninfo, self._kwargs, self.namespace, self._where, patience)
        self._produced = True
        return conn

    async def _enqueue_async(self, conn: psycopg.AsyncConnection[Any], jobs: Sequence[Job]) -> list[str]:
        batch = EnqueueBatch(jobs, self._channel)
        while (insert := batch.next_insert()) is not None:
            keys = batch.inserted(await (await conn.execute(self._q[insert[0]], insert[1])).fetchall())
            if keys:
                found = await (await conn.execute(self._q["pending_by_key"], {"keys": keys})).fetchall()
                batch.found(found)
        return batch.ids()

    # -- consuming -----------------------------------------------------------

    async def claim(self, worker_id: str, queues: Sequence[str], limit: int, lease: float) -> list[Claim]:
        if limit <= 0 or not queues:
            return []
        if self._listener.works is None:
            self._listener.start()  # its check decides whether statements may be prepared
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
            rows.setdefault(o.job_id, settle_row(o, now))
        done: set[str] = set()
        for chunk in itertools.batched(rows.values(), _CHUNK):
            params = columns(SETTLE_COLUMNS, list(chunk))
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
        if self._pool is None:
            raise BrokerConnectionError("the PostgreSQL broker is not open (use `async with broker:`)")
        await self._listener.wait(queues, timeout)

    async def recover(self, dead_after: float, expires_at: float | None = None) -> int:
        now = time.time()
        params = {
            "now": now,
            "silent": now - dead_after,
            "lost_error": LOST_ERROR,
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

    async def requeue_jobs(self, job_ids: Sequence[str]) -> int:
        params = {"ids": list(job_ids), "now": time.time(), "channel": self._channel}
        try:
            return int((await self._fetch("requeue_many", params))[0][0]) if job_ids else 0
        except BrokerError as exc:
            if not isinstance(exc.__cause__, psycopg.errors.UniqueViolation):
                raise
        # A job's unique key is held by a newer pending job: the statement was undone; one by one.
        return sum([await self.requeue(job_id) for job_id in job_ids])

    async def cancel_jobs(self, job_ids: Sequence[str], expires_at: float) -> int:
        params = {"ids": list(job_ids), "now": time.time(), "expires_at": expires_at}
        return await self._execute("cancel_many", params) if job_ids else 0

    async def _change(self, name: str, params: dict[str, Any]) -> int:
        return await self._execute(name, params)

    async def progress(self, job_id: str, token: str, data: bytes) -> bool:
        return await self._execute("progress", {"id": job_id, "token": token, "data": data}) == 1

    async def take(self, key: str, rate: float, burst: float) -> float:
        params = {"key": key, "rate": float(rate), "burst": float(burst), "now": time.time()}
        ((granted, tokens),) = await self._fetch("take", params)
        return 0.0 if granted else bucket.wait(tokens, rate)

    async def unregister_worker(self, worker_id: str) -> None:
        await self._execute("delete_worker", {"worker_id": worker_id})

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
        if where.args and not where.states and where.newest is None:
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
