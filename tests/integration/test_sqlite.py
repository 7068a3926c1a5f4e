"""SQLite-only behaviour: what a prune reads when a retention period of jobs is kept."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pigeon import App
from pigeon.brokers import sqlite as sqlite_broker
from pigeon.brokers.base import create_broker
from pigeon.errors import JobNotFound
from pigeon.job import Outcome, OutcomeKind
from tests.helpers import make_job

Q = ("default",)


def _broker(url: str) -> sqlite_broker.SqliteBroker:
    broker = create_broker(url, {})
    assert isinstance(broker, sqlite_broker.SqliteBroker)
    return broker


async def _finished(url: str, n: int, expires_at: float) -> None:
    broker = _broker(url)
    await broker.migrate()
    async with broker:
        await broker.enqueue([make_job() for _ in range(n)])
        claims = await broker.claim("w", Q, n, 30)
        outcomes = [
            Outcome(job_id=c.job.id, token=c.token, kind=OutcomeKind.COMPLETE, expires_at=expires_at)
            for c in claims
        ]
        await broker.settle(outcomes)


async def test_prune_reads_the_expired_jobs_not_every_finished_one(tmp_path: Path) -> None:
    """A prune found its rows by state, reading every finished job kept (a day's, by default)
    under the write lock, every minute: 0.3 s a prune at 1,000,000 jobs, growing with them."""
    url = f"sqlite:///{tmp_path}/jobs.db"
    await _finished(url, 2000, time.time() + 3600)  # retained, not expired
    reads = 0

    def count() -> int:
        nonlocal reads
        reads += 1
        return 0

    broker = _broker(url)
    async with broker:
        prune = broker._q["prune"]
    db = sqlite3.connect(tmp_path / "jobs.db")
    db.set_progress_handler(count, 100)  # called every 100 virtual-machine steps
    assert db.execute(prune, (time.time(), sqlite_broker._PRUNE_BATCH)).rowcount == 0
    db.close()
    assert reads < 20, f"a prune with nothing expired ran {reads * 100:,} steps over 2,000 kept jobs"


async def test_prune_deletes_in_batches_until_none_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    await _finished(url, 25, time.time() - 1)
    monkeypatch.setattr(sqlite_broker, "_PRUNE_BATCH", 10)
    broker = _broker(url)
    async with broker:
        assert await broker.prune() == 25
        assert await broker.stats() == []


async def test_brokers_of_one_client_wait_their_turn_to_write_not_in_sqlites_busy_handler(
    tmp_path: Path,
) -> None:
    """A worker's loop and the portal each open a broker on the file. Waiting for each other's
    write lock in SQLite's busy handler (sleeps of 1, 2, 5 … 100 ms) starved the portal's sends
    at 1,000 reads/s (p99 tag→LED 437 ms); they now queue on one lock of the client's. Here the
    second broker's busy timeout (50 ms) is shorter than the first's transaction (0.3 s): it
    failed with "database is locked" and now waits its turn."""
    url = f"sqlite:///{tmp_path}/jobs.db"
    shared: dict[str, object] = {}
    first, second = create_broker(url, shared), create_broker(url, shared)
    assert isinstance(first, sqlite_broker.SqliteBroker) and isinstance(second, sqlite_broker.SqliteBroker)
    async with first, second:
        await second._run(lambda: second._db and second._db.execute("PRAGMA busy_timeout=50"))
        holding = threading.Event()

        def hold(db: sqlite3.Connection) -> None:
            holding.set()
            time.sleep(0.3)

        held = asyncio.create_task(first._run(first._write, hold))
        await asyncio.to_thread(holding.wait, 5)
        assert await second.enqueue([make_job()])
        await held
        assert len(await first.claim("w", Q, 10, 30)) == 1


def test_a_send_after_close_goes_to_the_url_set_since(tmp_path: Path) -> None:
    """Tests and set-up code point an app elsewhere between closes: its sends follow."""
    app = App(f"sqlite:///{tmp_path}/first.db")

    @app.task
    def noop() -> None: ...

    first = noop.send()
    app.close()
    app.url = f"sqlite:///{tmp_path}/second.db"
    second = noop.send()
    assert second.record() is not None
    app.close()
    app.url = f"sqlite:///{tmp_path}/first.db"
    assert first.record() is not None and noop.send().record() is not None
    with pytest.raises(JobNotFound):
        second.record()
    app.close()


async def test_a_broker_opens_while_another_connection_holds_the_write_lock(tmp_path: Path) -> None:
    """A Django request's transaction on the same file: the first lookup must not wait for its end."""
    path = tmp_path / "shared.db"
    async with sqlite_broker.SqliteBroker(str(path)) as first:  # migrated, as Django's migrate leaves it
        job = make_job()
        await first.enqueue([job])
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("PRAGMA journal_mode=DELETE")  # what a database Django created is in
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE held (x)")  # the transaction holds the write lock from here on
    try:
        # The old open switched to WAL and re-ran the migrations in a write transaction: both wait
        # for this lock, and failed with "database is locked" after the busy timeout.
        async with sqlite_broker.SqliteBroker(str(path), busy_timeout=2.0) as second:
            record = await second.get(job.id)
            assert record is not None and record.job.id == job.id
    finally:
        other.execute("ROLLBACK")
        other.close()


def _plan(db: sqlite3.Connection, sql: str, params: Any) -> str:
    return " | ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params))


async def test_reads_by_task_use_the_task_index_and_claims_keep_theirs(tmp_path: Path) -> None:
    """Counting one task's failed jobs walked every failed job (55 to 93 ms at 1,000,000 jobs), and a
    page of a rare task read the whole table; the (task, state) index must not take the claim's place."""
    from pigeon.brokers.inspection import JobFilter, parse_args_search
    from pigeon.brokers.sql import filter_clause, find_sql, queries
    from pigeon.job import JobState

    url = f"sqlite:///{tmp_path}/jobs.db"
    await _finished(url, 10, time.time() + 3600)
    q = queries("sqlite")
    db = sqlite3.connect(tmp_path / "jobs.db")

    def count_plan(where: JobFilter) -> str:
        clause, params = filter_clause(where, None, dialect="sqlite", table="pigeon_jobs")
        return _plan(db, q["count"].replace("{where}", clause), params)

    failed = (JobState.FAILED, JobState.CANCELLED)
    assert "COVERING INDEX pigeon_jobs_task_state" in count_plan(JobFilter(task="t", states=failed))
    assert "COVERING INDEX pigeon_jobs_task_state" in count_plan(JobFilter(task="t"))
    # A bounded search over every state reads the newest rowids, not every job of the task.
    bounded = JobFilter(task="t", args=parse_args_search("n=1"), newest=100_000)
    assert "INTEGER PRIMARY KEY (rowid>?)" in count_plan(bounded)

    sql, params = find_sql(
        q["find_in_state"],
        JobFilter(task="t", states=tuple(JobState)),
        None,
        dialect="sqlite",
        table="pigeon_jobs",
    )
    page = _plan(db, sql, {**params, "limit": 50})
    assert page.count("INDEX pigeon_jobs_task_state (task=? AND state=?)") == len(JobState)
    assert "SCAN pigeon_jobs" not in page

    claim = q["candidates"] + " ORDER BY priority DESC, seq"
    assert "INDEX pigeon_jobs_ready" in _plan(db, claim, ("default",))
    db.close()


async def test_a_claim_over_several_queues_walks_each_queues_ready_index_without_sorting(
    tmp_path: Path,
) -> None:
    """A claim over two queues read every queued job of both through the (state, queue) index and
    sorted them: 1.2 to 2.8 s a claim at 1,000,000 jobs, against microseconds for one queue."""
    url = f"sqlite:///{tmp_path}/jobs.db"
    broker = _broker(url)
    await broker.migrate()
    queues = ("default", "other", "third")
    async with broker:
        await broker.enqueue([make_job(queue=queues[i % 3], priority=i % 2) for i in range(3000)])
        store = broker._db
        assert store is not None
        store.execute("ANALYZE")  # the statistics a long-lived store has
        statements: list[str] = []
        store.set_trace_callback(statements.append)
        claims = await broker.claim("w", queues, 10, 30)
        store.set_trace_callback(None)
    assert [c.job.priority for c in claims] == [1] * 10
    [candidates] = [s for s in statements if "ORDER BY priority DESC, seq" in s]
    db = sqlite3.connect(tmp_path / "jobs.db")
    plan = _plan(db, candidates, ())
    db.close()
    assert plan.count("USING INDEX pigeon_jobs_ready (queue=?)") == len(queues), plan
    assert "TEMP B-TREE" not in plan, plan


async def test_a_claim_over_more_queues_than_a_compound_select_joins_still_claims(tmp_path: Path) -> None:
    """SQLite joins at most 500 SELECTs with UNION ALL; a claim over more queues reads them in one."""
    broker = _broker(f"sqlite:///{tmp_path}/jobs.db")
    await broker.migrate()
    queues = tuple(f"q{i}" for i in range(501))
    async with broker:
        await broker.enqueue([make_job(queue="q0"), make_job(queue="q500", priority=1)])
        claims = await broker.claim("w", queues, 10, 30)
    assert [c.job.queue for c in claims] == ["q500", "q0"]


async def test_a_queue_named_twice_in_a_claim_yields_each_job_once(tmp_path: Path) -> None:
    """One SELECT per queue would read a queue named twice twice, and fill the batch with repeats."""
    broker = _broker(f"sqlite:///{tmp_path}/jobs.db")
    await broker.migrate()
    async with broker:
        jobs = [make_job() for _ in range(3)]
        await broker.enqueue(jobs)
        claims = await broker.claim("w", ("default", "default"), 3, 30)
    assert sorted(c.job.id for c in claims) == sorted(j.id for j in jobs)
