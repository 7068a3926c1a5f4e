"""PostgreSQL-only behaviour: transactional enqueue, migrations, lost connections, wake-ups.

Needs a server from ``scripts/servers/postgres.sh start`` (``PIGEON_TEST_POSTGRES_URL``).
Every test works in its own namespace (schema) and tags its connections with its
own ``application_name``, so it can cut them without disturbing parallel tests.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import msgspec
import psycopg
import pytest

from pigeon.brokers.base import create_broker
from pigeon.brokers.postgres import PostgresBroker
from pigeon.brokers.sql import migrations
from pigeon.errors import BrokerConnectionError, ConfigurationError
from pigeon.job import Claim, ErrorInfo, JobState, Outcome, OutcomeKind
from tests.conftest import server_url, with_namespace
from tests.helpers import eventually, make_job

pytestmark = pytest.mark.server

Q = ("default",)


@pytest.fixture
def base_url() -> str:
    return server_url("postgres")


@pytest.fixture
def tag() -> str:
    return f"pigeon_t_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def url(base_url: str, tag: str) -> str:
    separator = "&" if urlsplit(base_url).query else "?"
    return with_namespace(f"{base_url}{separator}application_name={tag}", tag)


def new_broker(url: str) -> PostgresBroker:
    broker = create_broker(url, {})
    assert isinstance(broker, PostgresBroker)
    return broker


@pytest.fixture
async def broker(url: str) -> AsyncIterator[PostgresBroker]:
    b = new_broker(url)
    await b.migrate()
    async with b:
        yield b


async def terminate(base_url: str, application_name: str) -> int:
    """Cut every server connection tagged ``application_name``, as a server restart would."""
    async with await psycopg.AsyncConnection.connect(base_url, autocommit=True) as admin:
        cur = await admin.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
            " WHERE application_name = %s",
            [application_name],
        )
        row = await cur.fetchone()
        return int(row[0]) if row else 0


# -- transactional enqueue ---------------------------------------------------


async def test_enqueue_in_is_invisible_until_commit(broker: PostgresBroker, base_url: str) -> None:
    job = make_job()
    waiting = asyncio.create_task(broker.wait(Q, 30))
    async with await psycopg.AsyncConnection.connect(base_url) as conn:
        async with conn.transaction():
            assert await broker.enqueue_in(conn, [job]) == [job.id]
            assert await broker.claim("w", Q, 10, 30) == []
            assert await broker.get(job.id) is None
        async with asyncio.timeout(10):
            await waiting  # NOTIFY is delivered at commit
    (claim,) = await broker.claim("w", Q, 10, 30)
    assert claim.job == job


async def test_enqueue_in_is_gone_on_rollback(broker: PostgresBroker, base_url: str) -> None:
    job = make_job()
    async with await psycopg.AsyncConnection.connect(base_url) as conn:
        await broker.enqueue_in(conn, [job])
        await conn.rollback()
    assert await broker.get(job.id) is None
    assert await broker.claim("w", Q, 10, 30) == []


async def test_enqueue_in_sync_connection(broker: PostgresBroker, base_url: str) -> None:
    kept, dropped, via_async = make_job(), make_job(), make_job()
    with psycopg.connect(base_url) as conn:
        assert broker.enqueue_in_sync(conn, [kept]) == [kept.id]
        assert await broker.get(kept.id) is None
        conn.commit()
        broker.enqueue_in_sync(conn, [dropped])
        conn.rollback()
        assert await broker.enqueue_in(conn, [via_async]) == [via_async.id]
        conn.commit()
    assert (await broker.get(kept.id)).state is JobState.QUEUED  # type: ignore[union-attr]
    assert await broker.get(dropped.id) is None
    assert (await broker.get(via_async.id)).state is JobState.QUEUED  # type: ignore[union-attr]


async def test_enqueue_in_answers_pending_job_for_taken_unique_key(
    broker: PostgresBroker, base_url: str
) -> None:
    first = make_job(unique_key="report-1")
    await broker.enqueue([first])
    again, twin = make_job(unique_key="report-1"), make_job(unique_key="report-2")
    same_batch = make_job(unique_key="report-2")
    async with await psycopg.AsyncConnection.connect(base_url, autocommit=True) as conn:
        ids = await broker.enqueue_in(conn, [again, twin, same_batch])
    assert ids == [first.id, twin.id, twin.id]


# -- schema ------------------------------------------------------------------


async def test_open_refuses_a_schema_that_is_behind(url: str) -> None:
    with pytest.raises(ConfigurationError, match="run `pigeon migrate`"):
        async with new_broker(url):
            pass


async def test_open_refuses_a_schema_that_is_newer(url: str, base_url: str, tag: str) -> None:
    await new_broker(url).migrate()
    async with await psycopg.AsyncConnection.connect(base_url, autocommit=True) as conn:
        await conn.execute(f"INSERT INTO {tag}.schema_version (version, name) VALUES (9999, 'future')")
    with pytest.raises(ConfigurationError, match="upgrade pigeon"):
        async with new_broker(url):
            pass


async def test_migrate_is_idempotent_under_races(url: str) -> None:
    brokers = [new_broker(url) for _ in range(4)]
    applied = await asyncio.gather(*(b.migrate() for b in brokers))
    every = [f"{version:04d}_{name}" for version, name, _ in migrations("postgres")]
    assert every[:2] == ["0001_initial", "0002_flow_control"]
    assert sorted(applied, key=len) == [[], [], [], every]
    assert await brokers[0].migrate() == []
    async with brokers[0] as b:
        await b.enqueue([make_job()])


def test_bad_namespace_is_a_configuration_error(base_url: str) -> None:
    with pytest.raises(ConfigurationError, match="namespace"):
        create_broker(with_namespace(base_url, "Robert'); DROP TABLE"), {})


async def test_namespaces_are_separate(broker: PostgresBroker, base_url: str) -> None:
    other = new_broker(with_namespace(base_url, f"t_{uuid.uuid4().hex[:12]}"))
    await other.migrate()
    async with other:
        await other.enqueue([make_job()])
        assert await broker.claim("w", Q, 10, 30) == []
        assert len(await other.claim("w", Q, 10, 30)) == 1


# -- connections -------------------------------------------------------------


async def test_unreachable_server_is_a_connection_error() -> None:
    with pytest.raises(BrokerConnectionError):
        async with new_broker("postgresql://postgres@127.0.0.1:1/nowhere?connect_timeout=2"):
            pass


async def test_survives_lost_connections(broker: PostgresBroker, base_url: str, tag: str) -> None:
    producer = new_broker(broker.url)
    async with producer:
        await broker.enqueue([make_job()])
        await broker.wait(["warm-up"], 0.1)  # the listener is connected from here on
        assert await terminate(base_url, tag) >= 3  # pools of both brokers, and the listener

        # Stale pooled connections are noticed before use: the next calls just work.
        job = make_job()
        assert await producer.enqueue([job]) == [job.id]
        claims = await broker.claim("w", Q, 10, 30)
        assert len(claims) == 2

        # The listener reconnects by itself; a wait() is woken again by an enqueue.
        waiting = asyncio.create_task(broker.wait(Q, 30))
        deadline = time.monotonic() + 15
        while not waiting.done():
            assert time.monotonic() < deadline, "wait() was not woken after the listener lost its connection"
            await producer.enqueue([make_job()])
            await asyncio.wait({waiting}, timeout=0.2)
        await waiting


async def test_synchronous_sends_survive_lost_connections(
    broker: PostgresBroker, base_url: str, tag: str
) -> None:
    """A send() after the server cut the producer's pooled connection just works, as asend() does."""
    producer = new_broker(broker.url)
    first, second = make_job(), make_job()
    try:
        assert await asyncio.to_thread(producer.enqueue_sync, [first]) == [first.id]
        assert await terminate(base_url, tag) >= 2  # the broker's pool, and the producer's connection
        assert await asyncio.to_thread(producer.enqueue_sync, [second]) == [second.id]
    finally:
        producer.close_sync()
    assert {c.job.id for c in await broker.claim("w", Q, 10, 30)} == {first.id, second.id}


async def test_synchronous_sends_refuse_what_opening_refuses(url: str) -> None:
    """No schema: the same ConfigurationError as opening the broker; no server: a connection error."""
    unmigrated = new_broker(url)
    with pytest.raises(ConfigurationError, match="pigeon migrate"):
        await asyncio.to_thread(unmigrated.enqueue_sync, [make_job()])
    nowhere = new_broker("postgresql://postgres@127.0.0.1:1/nowhere?connect_timeout=2")
    with pytest.raises(BrokerConnectionError):
        await asyncio.to_thread(nowhere.enqueue_sync, [make_job()])


async def test_operations_fail_cleanly_then_recover_when_killed_mid_use(
    broker: PostgresBroker, base_url: str, tag: str
) -> None:
    async def enqueue_after_cut() -> list[str]:
        await terminate(base_url, tag)
        return await broker.enqueue([make_job()])

    # Whatever a cut costs (at most a BrokerConnectionError), the broker comes back.
    async def attempt() -> bool:
        try:
            await enqueue_after_cut()
        except BrokerConnectionError:
            return False
        return True

    await eventually(attempt, what="an enqueue after connections were cut")
    assert len(await broker.claim("w", Q, 10, 30)) >= 1


# -- wake-ups ----------------------------------------------------------------


async def test_wait_wakes_for_its_queues_only(broker: PostgresBroker) -> None:
    producer = new_broker(broker.url)
    async with producer:
        await broker.wait(["warm-up"], 0.1)
        waiting = asyncio.create_task(broker.wait(["mine"], 30))
        await producer.enqueue([make_job(queue="theirs"), make_job(queue="later", run_at=time.time() + 60)])
        await producer.enqueue([make_job(queue="mine")])
        async with asyncio.timeout(10):
            await waiting
        assert len(await broker.claim("w", ["mine"], 10, 30)) == 1


async def test_a_lone_send_notifies_when_queued_only(broker: PostgresBroker) -> None:
    # One job goes as enqueue_one, whose notice rides in RETURNING: sent for a QUEUED job,
    # not for a SCHEDULED one, as the batch statement does.
    producer = new_broker(broker.url)
    async with producer:
        await broker.wait(["warm-up"], 0.1)
        waiting = asyncio.create_task(broker.wait(["alone"], 30))
        await producer.enqueue([make_job(queue="alone", run_at=time.time() + 60)])
        done, _ = await asyncio.wait({waiting}, timeout=1.0)
        assert not done, "a scheduled job woke the queue's waiters"
        await producer.enqueue([make_job(queue="alone")])
        async with asyncio.timeout(10):
            await waiting


async def test_notice_between_two_waits_is_not_lost(broker: PostgresBroker) -> None:
    producer = new_broker(broker.url)
    async with producer:
        await broker.wait(["warm-up"], 0.1)

        async def notice_kept() -> bool:
            await producer.enqueue([make_job()])
            await eventually(lambda: _has_notice(broker), what="the notice received")
            # Nobody was waiting when the notice came; the next wait() returns at once.
            started = time.monotonic()
            await broker.wait(Q, 5)
            return time.monotonic() - started < 4

        assert await notice_kept()


async def _has_notice(broker: PostgresBroker) -> bool:
    return "default" in broker._listener.pending


async def test_release_retry_and_requeue_wake_waiters(broker: PostgresBroker) -> None:
    producer = new_broker(broker.url)
    async with producer:
        job = make_job()
        await producer.enqueue([job])
        await broker.wait(["warm-up"], 0.1)
        (c,) = await producer.claim("w", Q, 1, 30)
        moves: list[Callable[[Claim], Outcome]] = [
            lambda c: Outcome(job_id=job.id, token=c.token, kind=OutcomeKind.RELEASE),
            lambda c: Outcome(
                job_id=job.id, token=c.token, kind=OutcomeKind.RETRY, error=ErrorInfo("E", "m")
            ),
        ]
        for move in moves:
            waiting = asyncio.create_task(broker.wait(Q, 30))
            assert await producer.settle([move(c)]) == [True]
            async with asyncio.timeout(10):
                await waiting
            (c,) = await producer.claim("w", Q, 1, 30)
        await producer.settle([Outcome(job_id=job.id, token=c.token, kind=OutcomeKind.FAIL)])
        waiting = asyncio.create_task(broker.wait(Q, 30))
        assert await producer.requeue(job.id) is True
        async with asyncio.timeout(10):
            await waiting


# -- concurrency limits --------------------------------------------------------


async def test_limit_slot_comes_back_after_recover_and_purge(broker: PostgresBroker) -> None:
    jobs = [msgspec.structs.replace(make_job(), limit_key="gpu", limit=1) for _ in range(3)]
    await broker.enqueue(jobs)
    (first,) = await broker.claim("w", Q, 10, 0.05)
    assert await broker.claim("w", Q, 10, 30) == []
    await eventually(lambda: broker.recover(60), lambda n: n == 1, what="the expired lease recovered")
    (second,) = await broker.claim("w", Q, 10, 30)
    assert await broker.purge(states=[JobState.RUNNING]) == 1  # an operator removes the running job
    (third,) = await broker.claim("w", Q, 10, 30)
    assert await broker.claim("w", Q, 10, 30) == []
    assert {first.job.id, second.job.id, third.job.id} <= {j.id for j in jobs}


async def test_settle_stays_linear_when_statistics_are_stale(
    broker: PostgresBroker, base_url: str, tag: str
) -> None:
    """A queue's statistics are always out of date. ANALYZE here sees no job running, then
    2,000 run: settling them must visit each row a bounded number of times, not pair every
    outcome with every running job (which took 1.5 s here, and 37 s for 12,800 outcomes)."""
    from pigeon.brokers import postgres_rows as rows_of

    n = 2000
    await broker.enqueue([make_job() for _ in range(n)])
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f"ANALYZE {tag}.jobs")
    claims: list[Claim] = []
    while len(claims) < n:
        claims += await broker.claim("w", Q, 500, 60)
    with psycopg.connect(base_url) as conn:  # churn, as heartbeats would: rows turn over
        conn.execute(f"UPDATE {tag}.jobs SET lease_until = lease_until + 1")
        conn.execute(f"UPDATE {tag}.jobs SET lease_until = lease_until + 1")
        conn.rollback()
    now = time.time()
    rows = [
        rows_of.settle_row(
            Outcome(job_id=c.job.id, token=c.token, kind=OutcomeKind.COMPLETE, expires_at=now + 60), now
        )
        for c in claims
    ]
    # The broker's own statement, on its own connections, with EXPLAIN ANALYZE in front: it
    # runs (and commits) as a settle would, and reports the work it did.
    settle = broker._q["settle"]
    broker._q["settle"] = b"EXPLAIN (ANALYZE, FORMAT JSON) " + settle
    try:
        params = {**rows_of.columns(rows_of.SETTLE_COLUMNS, rows), "channel": "x"}
        ((plan,),) = await broker._fetch("settle", params)
    finally:
        broker._q["settle"] = settle
    assert [(q.queue, q.counts) for q in await broker.stats()] == [("default", {"succeeded": n})]
    visited = _rows_visited(plan[0]["Plan"])
    assert visited <= 10 * n, f"settling {n:,} jobs visited {visited:,} rows"


async def test_a_claim_over_two_queues_reads_a_few_rows_of_each(
    broker: PostgresBroker, base_url: str, tag: str
) -> None:
    """A claim's order runs across its queues, which no index holds; one walk of the ready
    index per queue, each cut at the claim's limit, keeps a claim over two deep queues to a
    few rows instead of reading and sorting both (as SQLite's claim did: seconds at a million)."""
    await broker.enqueue([make_job(queue=("default", "other")[i % 2], priority=i % 3) for i in range(4000)])
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f"ANALYZE {tag}.jobs")
    claim = broker._q["claim"]
    broker._q["claim"] = b"EXPLAIN (ANALYZE, FORMAT JSON) " + claim
    try:
        now = time.time()
        params = {"queues": ["default", "other"], "limit": 10, "full": [], "now": now}
        params |= {"token": "t", "worker_id": "w", "lease_until": now + 30}
        ((plan,),) = await broker._fetch("claim", params)
    finally:
        broker._q["claim"] = claim
    read = _table_rows_read(plan[0]["Plan"])
    assert read <= 60, f"a claim of 10 over two queues of 2,000 jobs read {read:,} rows of the table"


def _table_rows_read(node: dict[str, Any]) -> int:
    """Rows that every scan of a table (not of a CTE or a function) produced, over all its loops."""
    own = node["Actual Rows"] * node["Actual Loops"] if "Relation Name" in node else 0
    return int(own) + sum(_table_rows_read(child) for child in node.get("Plans", []))


def _rows_visited(node: dict[str, Any]) -> int:
    """Rows that every scan in a plan produced, over all its loops."""
    own = node["Actual Rows"] * node["Actual Loops"] if "Scan" in node["Node Type"] else 0
    return int(own) + sum(_rows_visited(child) for child in node.get("Plans", []))


async def test_settle_reads_only_its_rows_when_statistics_call_the_table_small(
    broker: PostgresBroker, base_url: str, tag: str
) -> None:
    """With statistics that call the table small, a settle joined to it was planned as a
    hash join over the whole table, read for every settle; each outcome now finds its row
    by key (and the update by address), whatever the statistics say."""
    from pigeon.brokers import postgres_rows as rows_of

    await broker.enqueue([make_job() for _ in range(2000)])
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f"ANALYZE {tag}.jobs")
    await broker.enqueue([make_job() for _ in range(2000)])
    claims = await broker.claim("w", Q, 200, 60)
    now = time.time()
    rows = [
        rows_of.settle_row(
            Outcome(job_id=c.job.id, token=c.token, kind=OutcomeKind.COMPLETE, expires_at=now + 60), now
        )
        for c in claims
    ]
    settle = broker._q["settle"]
    broker._q["settle"] = b"EXPLAIN (ANALYZE, FORMAT JSON) " + settle
    try:
        params = {**rows_of.columns(rows_of.SETTLE_COLUMNS, rows), "channel": "x"}
        ((plan,),) = await broker._fetch("settle", params)
    finally:
        broker._q["settle"] = settle
    assert (await broker.stats())[0].counts == {"queued": 3800, "succeeded": 200}
    read = _table_rows_read(plan[0]["Plan"])
    assert read <= 3 * len(claims), f"settling {len(claims)} of 4,000 jobs read {read:,} rows of the table"


@pytest.mark.parametrize("call", ["settle", "heartbeat"])
async def test_a_row_changed_while_waiting_for_its_lock_is_still_found(
    broker: PostgresBroker, base_url: str, tag: str, call: str
) -> None:
    """A settle or heartbeat that waits on a row another transaction updates (a heartbeat
    racing a settle) locks the row's newest version, which its own snapshot does not see:
    it must still apply to it, not skip it and refuse the outcome or lose the lease."""
    from pigeon.job import WorkerInfo

    await broker.enqueue([make_job()])
    (claim,) = await broker.claim("w", Q, 1, 60)
    outcome = Outcome(
        job_id=claim.job.id, token=claim.token, kind=OutcomeKind.COMPLETE, expires_at=time.time() + 60
    )
    async with await psycopg.AsyncConnection.connect(base_url) as other:
        await other.execute(
            f"UPDATE {tag}.jobs SET lease_until = lease_until + 1 WHERE id = %s", [claim.job.id]
        )
        if call == "settle":
            running: asyncio.Task[Any] = asyncio.create_task(broker.settle([outcome]))
        else:
            now = time.time()
            info = WorkerInfo(
                id="w", hostname="h", pid=1, queues=Q, concurrency=1, started_at=now, last_seen=now
            )
            running = asyncio.create_task(broker.heartbeat(info, [(claim.job.id, claim.token)], 60))

        async def blocked() -> int:
            async with await psycopg.AsyncConnection.connect(base_url, autocommit=True) as admin:
                cur = await admin.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE application_name = %s AND wait_event_type = 'Lock'",
                    [tag],
                )
                row = await cur.fetchone()
                return int(row[0]) if row else 0

        await eventually(blocked, lambda n: n == 1, what=f"the {call} waiting for the row's lock")
        await other.commit()
    if call == "settle":
        assert await running == [True]
        record = await broker.get(claim.job.id)
        assert record is not None and record.state is JobState.SUCCEEDED
    else:
        assert await running == []  # the lease is kept, not lost


async def test_statements_are_prepared_once_listen_shows_a_session_of_its_own(
    base_url: str, tag: str
) -> None:
    """Prepared, a claim and a settle are not parsed and planned again at every call."""
    broker = PostgresBroker(base_url, namespace=tag, max_connections=1)  # one connection to look at
    await broker.migrate()
    async with broker:
        await _claims_get_prepared(broker)


async def _claims_get_prepared(broker: PostgresBroker) -> None:
    assert broker._prepare_after() is None  # nothing known yet: a pooler may be in between
    await broker.enqueue([make_job() for _ in range(20)])
    async with asyncio.timeout(10):
        while broker._listener.works is None:  # the first claim starts the listener's check
            await broker.claim("w", Q, 1, 30)
            await asyncio.sleep(0.01)
    assert broker._prepare_after() == 5
    for _ in range(10):
        await broker.claim("w", Q, 1, 30)
    async with broker._connection() as conn:
        cur = await conn.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in await cur.fetchall()]
    assert any("WITH due AS" in text for text in prepared), prepared


async def test_a_claim_that_waited_for_a_connection_gets_its_full_lease(base_url: str, tag: str) -> None:
    # During an outage every call waits for the pool; a lease reckoned from before that wait
    # could be over when the claim lands, and the job recovered from a live worker at once.
    broker = PostgresBroker(base_url, namespace=tag, max_connections=1)
    await broker.migrate()
    async with broker:
        await broker.enqueue([make_job()])
        lease = 0.5
        async with broker._connection():  # the pool's one connection, held as an outage would
            began = time.time()
            claim = asyncio.create_task(broker.claim("w", ["default"], 1, lease))
            pool = broker._pool
            assert pool is not None

            async def waiting() -> int:
                return int(pool.get_stats().get("requests_waiting", 0))

            # The claim asks first; the listener it starts may ask too, for its check.
            await eventually(waiting, lambda n: n >= 1, what="the claim waiting for a connection")
            await asyncio.sleep(max(0.0, began + 2 * lease - time.time()))  # the outage outlasts the lease
            landed = time.time()
        (claimed,) = await claim
        record = await broker.get(claimed.job.id)
    assert record is not None and record.lease_until is not None
    assert record.lease_until >= landed + lease * 0.9, (record.lease_until - landed, lease)


# -- a table that churns -------------------------------------------------------


async def test_jobs_table_is_vacuumed_after_a_fixed_count_of_dead_rows(
    broker: PostgresBroker, base_url: str, tag: str
) -> None:
    """Claims step over the dead entries at the head of the ready index until VACUUM removes
    them; autovacuum's default (20% of the table dead) lets a large table pile up hundreds of
    thousands, so the migration makes the jobs table's trigger a count, not a share."""
    with psycopg.connect(base_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT reloptions FROM pg_class WHERE oid = %s::regclass", [f"{tag}.jobs"]
        ).fetchone()
    options = dict(o.split("=", 1) for o in (row[0] if row and row[0] else []))
    assert options.get("autovacuum_vacuum_scale_factor") == "0"
    assert int(options.get("autovacuum_vacuum_threshold", "0")) > 0
    assert options.get("autovacuum_vacuum_cost_delay") == "0"


async def _expired(broker: PostgresBroker, n: int) -> list[str]:
    jobs = [make_job() for _ in range(n)]
    await broker.enqueue(jobs)
    claims = await broker.claim("w", Q, n, 30)
    past = time.time() - 1
    await broker.settle(
        [Outcome(job_id=c.job.id, token=c.token, kind=OutcomeKind.COMPLETE, expires_at=past) for c in claims]
    )
    return [j.id for j in jobs]


async def test_prune_deletes_in_batches_until_none_is_left(broker: PostgresBroker) -> None:
    await _expired(broker, 7)
    broker.prune_batch = 3
    assert await broker.prune() == 7
    assert await broker.stats() == []


async def test_prune_passes_over_a_row_another_transaction_holds(
    broker: PostgresBroker, base_url: str, tag: str
) -> None:
    """A prune is maintenance: it must not queue behind an operator's or a requeue's lock
    (nor hold its own locks for long); the held job goes at the next prune."""
    held, *rest = await _expired(broker, 4)
    async with await psycopg.AsyncConnection.connect(base_url) as other:
        await other.execute(f"SELECT 1 FROM {tag}.jobs WHERE id = %s FOR UPDATE", [held])
        async with asyncio.timeout(10):
            assert await broker.prune() == len(rest)
        await other.rollback()
    assert await broker.prune() == 1


async def test_a_take_from_a_clock_behind_the_buckets_does_not_refill_backwards(
    broker: PostgresBroker,
) -> None:
    # pigeon/bucket.py's rule: a worker whose clock is 10 s behind waits for one token (0.1 s at
    # 10/s), not for the 10 s its clock is behind; the bucket's clock stays where it was.
    async def take(now: float) -> tuple[bool, float]:
        ((granted, tokens),) = await broker._fetch(
            "take", {"key": "k", "rate": 10.0, "burst": 1.0, "now": now}
        )
        return granted, tokens

    assert await take(1000.0) == (True, 0.0)
    assert await take(990.0) == (False, 0.0)
    async with broker._connection() as conn:
        cur = await conn.execute(f"SELECT at FROM {broker.namespace}.buckets WHERE key = 'k'")
        assert await cur.fetchall() == [(1000.0,)]
