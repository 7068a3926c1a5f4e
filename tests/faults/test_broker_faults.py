"""Faults of the broker itself, mid-drain: restarts and crashes of servers of the scenario's own,
and the SQLite file's write lock held past the busy timeout."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import resource
import sqlite3
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis

from tests.conftest import server_url, with_namespace
from tests.faults.harness import EVERY_PROCESS, LONG, Fault, Run, new_seed
from tests.faults.servers import PostgresServer, RedisServer
from tests.helpers import wait_until
from tests.integration.test_postgres import terminate

pytestmark = pytest.mark.timeout(900 if LONG else 180)

RESTARTS = 4 if LONG else 1


def drain_through(run: Run, jobs: int, fault: object) -> None:
    """Send ``jobs``, start two workers, call ``fault()`` mid-drain ``RESTARTS`` times, wait."""
    ids = run.send(jobs, hold=0.1)
    run.start_worker()
    run.start_worker()
    for i in range(RESTARTS):
        enough = (i + 1) * jobs // (RESTARTS + 2)
        wait_until(functools.partial(_beyond, run, enough), timeout=60, what="progress")
        time.sleep(run.rng.uniform(0.0, 0.3))  # a random moment, from the seed
        outage = Fault(run.name, EVERY_PROCESS, time.time())
        run.faults.append(outage)
        fault()  # type: ignore[operator]
        outage.until = time.time()
    run.wait_final(ids, timeout=180 if LONG else 90)
    figures = run.figures(repeats=RESTARTS)
    figures.check()
    for proc in run.workers:
        assert proc.poll() is None, run.output(proc)  # every worker outlived the broker's fault


@pytest.mark.server
@pytest.mark.parametrize("mode", ["immediate", "fast"])
def test_postgres_restart_mid_drain(tmp_path: Path, mode: str) -> None:
    server = PostgresServer(tmp_path / "pg")
    (tmp_path / "pg").mkdir()
    server.start()
    url = with_namespace(server.url, f"f_{uuid.uuid4().hex[:8]}")
    run = Run(f"PostgreSQL pg_ctl restart -m {mode}", url, tmp_path, new_seed())
    try:
        run.app.migrate()
        drain_through(run, 600 if LONG else 300, lambda: server.restart(mode))
    finally:
        run.stop()
        server.stop()


@pytest.mark.server
def test_redis_crash_and_restart_with_aof_mid_drain(tmp_path: Path) -> None:
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis")
    server.start()
    run = Run("Redis kill -9 and restart (AOF, appendfsync always)", server.url, tmp_path, new_seed())

    def crash_and_restart() -> None:
        server.crash()
        server.start()

    try:
        drain_through(run, 600 if LONG else 300, crash_and_restart)
    finally:
        run.stop()
        server.stop()


def test_sqlite_write_lock_held_past_the_busy_timeout(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    run = Run("SQLite write lock held 12 s (busy timeout 10 s)", url, tmp_path, new_seed())
    try:
        run.app.migrate()
        ids = run.send(200, hold=0.1)
        run.start_worker()
        run.start_worker()
        wait_until(lambda: len(run.executions()) > 40, timeout=60, what="progress")
        with contextlib.closing(sqlite3.connect(f"{tmp_path}/jobs.db", isolation_level=None)) as db:
            db.execute("BEGIN IMMEDIATE")  # another process's writer, as a long migration would be
            lock = Fault(run.name, EVERY_PROCESS, time.time())
            run.faults.append(lock)
            wait_until(lambda: _all_said(run, "database is locked"), timeout=30, what="the lock hit")
            time.sleep(12 - 10 + run.rng.uniform(0, 1))  # the lock held past the 10 s busy timeout
            lock.until = time.time()
            db.execute("ROLLBACK")
        run.wait_final(ids, timeout=90)
        figures = run.figures()
        figures.check()
        for proc in run.workers:
            assert proc.poll() is None, run.output(proc)
    finally:
        run.stop()


def _all_said(run: Run, text: str) -> bool:
    return all(text in run.output(p) for p in run.workers)


def test_sqlite_disk_full_then_freed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    run = Run("SQLite disk full, then freed", url, tmp_path, new_seed())
    try:
        run.app.migrate()
        ids = run.send(2000 if LONG else 600)
        run.app.close()  # the WAL is checkpointed: the cap below leaves little room to write
        cap = (tmp_path / "jobs.db").stat().st_size + 50_000
        worker = run.start_worker("-c", "8", max_file_bytes=cap)
        full = Fault(run.name, worker.pid, time.time())
        run.faults.append(full)
        wait_until(lambda: "disk I/O error" in run.output(worker), timeout=60, what="the disk full")
        assert worker.poll() is None, run.output(worker)
        time.sleep(run.rng.uniform(0.5, 1.5))  # full for a while, from the seed
        resource.prlimit(worker.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        full.until = time.time()
        run.wait_final(ids, timeout=90)
        figures = run.figures()
        figures.check()
        assert worker.poll() is None, run.output(worker)
        with contextlib.closing(sqlite3.connect(tmp_path / "jobs.db")) as db:
            assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        run.stop()


@pytest.mark.server
@pytest.mark.parametrize("kind", ["postgres", "redis"])
def test_connections_killed_mid_drain(tmp_path: Path, kind: str) -> None:
    # Every connection of this run's workers is cut on the shared server, as a network cut or
    # a proxy restart would: pg_terminate_backend by application name, CLIENT KILL by client name.
    namespace = f"f_{uuid.uuid4().hex[:10]}"
    base = server_url(kind)
    if kind == "postgres":
        separator = "&" if urlsplit(base).query else "?"
        url = with_namespace(f"{base}{separator}application_name={namespace}", namespace)
    else:
        url = with_namespace(base, namespace)
    run = Run(f"{kind} connections killed", url, tmp_path, new_seed())

    def cut() -> None:
        if kind == "postgres":
            assert asyncio.run(terminate(base, namespace)) > 0
        else:
            assert asyncio.run(_kill_redis_clients(base, f"pigeon:{namespace}")) > 0

    try:
        run.app.migrate()
        drain_through(run, 600 if LONG else 300, cut)
    finally:
        run.stop()


async def _kill_redis_clients(url: str, name: str) -> int:
    admin = aioredis.Redis.from_url(url)
    try:
        victims = [c for c in await admin.client_list() if c.get("name") == name]
        for c in victims:
            await admin.client_kill_filter(_id=c["id"])
        return len(victims)
    finally:
        await admin.aclose()


def _beyond(run: Run, enough: int) -> bool:
    return len(run.executions()) > enough
