"""Redis-only behaviour: refusing an evicting server, surviving killed connections and restarts, tidy keys.

The shared server comes from ``PIGEON_TEST_REDIS_URL`` (``scripts/servers/redis.sh start``).
Tests that reconfigure or restart a server start their own ``redis-server`` on a free port,
so they never disturb tests running in parallel against the shared one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest
import redis.asyncio as aioredis

from pigeon.brokers.base import create_broker
from pigeon.brokers.inspection import JobFilter
from pigeon.brokers.redis import RedisBroker
from pigeon.errors import BrokerConnectionError, BrokerError, ConfigurationError
from pigeon.job import Job, JobState, Outcome, OutcomeKind, WorkerInfo
from tests.conftest import server_url, with_namespace
from tests.helpers import eventually, make_job

pytestmark = pytest.mark.server
Q = ("default",)


def redis_broker(url: str, shared: dict[str, object]) -> RedisBroker:
    broker = create_broker(url, shared)
    assert isinstance(broker, RedisBroker)
    return broker


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; under CI this is a failure")
    pytest.skip(reason)


class OwnServer:
    """A redis-server this test starts, stops and restarts on one port and one data directory."""

    def __init__(self, workdir: Path, *args: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._workdir = workdir
        self._args = args
        self._proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        address = ["--bind", "127.0.0.1", "--port", str(self.port)]
        with (self._workdir / "redis.log").open("ab") as log:
            # Popen only forks; it returns at once.
            self._proc = subprocess.Popen(  # noqa: ASYNC220
                ["redis-server", *address, "--dir", str(self._workdir), "--save", "", *self._args],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        admin = aioredis.Redis.from_url(self.url)
        try:
            await eventually(lambda: _answers(admin), what=f"redis-server on port {self.port} answers")
        finally:
            await admin.aclose()

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
            self._proc = None


async def _answers(client: aioredis.Redis) -> bool:
    try:
        return bool(await client.ping())
    except (OSError, aioredis.ConnectionError):
        return False


@pytest.fixture
async def shared_url() -> AsyncIterator[str]:
    namespace = f"t_{uuid.uuid4().hex[:12]}"
    yield with_namespace(server_url("redis"), namespace)
    client = aioredis.Redis.from_url(server_url("redis"))
    try:
        for key in await _keys(client, namespace):
            await client.delete(key)
    finally:
        await client.aclose()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    if shutil.which("redis-server") is None:
        _missing("redis-server is not installed (scripts/servers/redis.sh start installs it)")
    return tmp_path


@contextlib.contextmanager
def _stopped_at_end(server: OwnServer) -> Iterator[OwnServer]:
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def admin(shared_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(server_url("redis"))
    yield client
    await client.aclose()


async def _keys(client: aioredis.Redis, namespace: str) -> set[str]:
    return {k.decode() async for k in client.scan_iter(match=f"{namespace}:*")}


async def _names(client: aioredis.Redis, name: str) -> list[dict[str, str]]:
    return [c for c in await client.client_list() if c.get("name") == name]


async def _claim_or_none(broker: RedisBroker) -> list[str] | None:
    try:
        return [c.job.id for c in await broker.claim("w", Q, 10, 30)]
    except BrokerConnectionError:
        return None


async def _until_woken(waiter: asyncio.Task[None], producer: RedisBroker, queue: str = "default") -> None:
    """Enqueue until ``waiter`` returns: a wake-up published while it reconnects may be lost."""
    async with asyncio.timeout(15):
        while not waiter.done():
            with contextlib.suppress(BrokerConnectionError):
                await producer.enqueue([make_job(queue=queue)])
            await asyncio.wait({waiter}, timeout=0.05)
    with contextlib.suppress(BrokerConnectionError):
        await waiter


async def test_refuses_a_server_that_may_evict_jobs(workdir: Path) -> None:
    with _stopped_at_end(OwnServer(workdir)) as server:
        await server.start()
        admin = aioredis.Redis.from_url(server.url)
        try:
            await admin.config_set("maxmemory-policy", "allkeys-lru")
            broker = redis_broker(server.url + "?namespace=evict", {})
            with pytest.raises(ConfigurationError, match="noeviction"):
                await broker.__aenter__()
            with pytest.raises(ConfigurationError, match="noeviction"):  # a sync send() refuses it too
                await asyncio.to_thread(broker.enqueue_sync, [make_job()])
            await admin.config_set("maxmemory-policy", "noeviction")
            async with redis_broker(server.url + "?namespace=evict", {}) as ok:
                assert await ok.stats() == []
            assert await asyncio.to_thread(broker.enqueue_sync, [job := make_job()]) == [job.id]
            broker.close_sync()
        finally:
            await admin.aclose()


async def test_starts_with_a_warning_when_config_is_disabled(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with _stopped_at_end(OwnServer(workdir, "--rename-command", "CONFIG", "")) as server:
        await server.start()
        with caplog.at_level(logging.WARNING, logger="pigeon.broker.redis"):
            async with redis_broker(server.url, {}) as broker:
                assert await broker.enqueue([job := make_job()]) == [job.id]
        assert "maxmemory-policy" in caplog.text


async def test_survives_client_kill(shared_url: str, admin: aioredis.Redis) -> None:
    name = "pigeon:" + shared_url.rsplit("namespace=", 1)[1]
    async with redis_broker(shared_url, {}) as consumer, redis_broker(shared_url, {}) as producer:
        assert isinstance(consumer, RedisBroker) and isinstance(producer, RedisBroker)
        waiter = asyncio.create_task(consumer.wait(Q, 30))
        await eventually(lambda: _names(admin, name), lambda cs: any(c["sub"] != "0" for c in cs))
        for c in await _names(admin, name):
            await admin.client_kill_filter(_id=c["id"])
        await _until_woken(waiter, producer)
        assert await eventually(lambda: _claim_or_none(consumer), what="claim after CLIENT KILL")
        # And a fresh wait() is woken by an enqueue again.
        waiter = asyncio.create_task(consumer.wait(Q, 30))
        await _until_woken(waiter, producer)


async def test_survives_a_restart_and_keeps_jobs_with_appendonly(workdir: Path) -> None:
    durable = ("--appendonly", "yes", "--appendfsync", "always")
    with _stopped_at_end(OwnServer(workdir, *durable)) as server:
        await server.start()
        async with redis_broker(server.url, {}) as consumer, redis_broker(server.url, {}) as producer:
            assert isinstance(consumer, RedisBroker) and isinstance(producer, RedisBroker)
            kept = make_job()
            await producer.enqueue([kept])
            waiter = asyncio.create_task(consumer.wait(Q, 30))
            server.stop()
            await server.start()  # replays the append-only file; the script cache is empty
            await _until_woken(waiter, producer)
            claimed = await eventually(lambda: _claim_or_none(consumer), what="claim after restart")
            assert claimed is not None and kept.id in claimed


async def test_unreachable_server_is_a_connection_error(workdir: Path) -> None:
    server = OwnServer(workdir)  # never started: nothing listens on its port
    with pytest.raises(BrokerConnectionError):
        async with RedisBroker(server.url, retries=1):
            pass


async def test_server_errors_are_broker_errors(shared_url: str, admin: aioredis.Redis) -> None:
    namespace = shared_url.rsplit("namespace=", 1)[1]
    async with redis_broker(shared_url, {}) as broker:
        await admin.set(f"{namespace}:queues", "not a set")
        with pytest.raises(BrokerError) as caught:
            await broker.stats()
        assert not isinstance(caught.value, BrokerConnectionError)
        await admin.delete(f"{namespace}:queues")


async def test_a_synchronous_send_loads_the_script_again_after_script_flush(
    shared_url: str, admin: aioredis.Redis
) -> None:
    broker = redis_broker(shared_url, {})
    try:
        first, second = make_job(), make_job()
        assert await asyncio.to_thread(broker.enqueue_sync, [first]) == [first.id]
        await admin.script_flush()  # the server answers NOSCRIPT to the cached digest
        assert await asyncio.to_thread(broker.enqueue_sync, [second]) == [second.id]
        async with broker:
            stored = await broker.get(second.id)
        assert stored is not None and stored.state is JobState.QUEUED
    finally:
        broker.close_sync()


async def test_a_synchronous_send_survives_its_connection_killed(
    shared_url: str, admin: aioredis.Redis
) -> None:
    name = "pigeon:" + shared_url.rsplit("namespace=", 1)[1]
    broker = redis_broker(shared_url, {})
    try:
        assert await asyncio.to_thread(broker.enqueue_sync, [make_job()])
        killed = await _names(admin, name)
        assert killed
        for c in killed:
            await admin.client_kill_filter(_id=c["id"])
        job = make_job()
        assert await asyncio.to_thread(broker.enqueue_sync, [job]) == [job.id]
        async with broker:
            assert await broker.get(job.id) is not None
    finally:
        broker.close_sync()


async def test_synchronous_sends_from_more_threads_than_connections_share_them(shared_url: str) -> None:
    broker = redis_broker(shared_url, {})
    try:

        def send_some() -> list[str]:
            return [i for _ in range(20) for i in broker.enqueue_sync([make_job()])]

        async with asyncio.timeout(20):  # a connection kept but not handed on would stall a thread 30 s
            sent = await asyncio.gather(*(asyncio.to_thread(send_some) for _ in range(4)))
        assert len({i for ids in sent for i in ids}) == 80
    finally:
        broker.close_sync()


async def test_a_synchronous_send_refused_by_the_server_is_a_broker_error(
    shared_url: str, admin: aioredis.Redis
) -> None:
    namespace = shared_url.rsplit("namespace=", 1)[1]
    broker = redis_broker(shared_url, {})
    try:
        await admin.set(f"{namespace}:queues", "not a set")  # the script's SADD fails
        with pytest.raises(BrokerError) as caught:
            await asyncio.to_thread(broker.enqueue_sync, [make_job()])
        assert not isinstance(caught.value, BrokerConnectionError)
        await admin.delete(f"{namespace}:queues")
        job = make_job()  # the same connection, its reply read in full, serves the next send
        assert await asyncio.to_thread(broker.enqueue_sync, [job]) == [job.id]
    finally:
        broker.close_sync()


async def test_prune_and_purge_leave_no_keys_of_a_job(shared_url: str, admin: aioredis.Redis) -> None:
    namespace = shared_url.rsplit("namespace=", 1)[1]
    async with redis_broker(shared_url, {}) as broker:
        done, failed, cancelled = (make_job(unique_key=f"k{i}") for i in range(3))
        queued, running = make_job(unique_key="kq"), make_job(unique_key="kr", queue="other")
        scheduled = make_job(unique_key="ks", run_at=time.time() + 3600)
        await broker.enqueue([done, failed])
        c1, c2 = await broker.claim("w", Q, 2, 30)
        soon = time.time() + 0.05
        await broker.settle(
            [
                Outcome(job_id=c1.job.id, token=c1.token, kind=OutcomeKind.COMPLETE, expires_at=soon),
                Outcome(job_id=c2.job.id, token=c2.token, kind=OutcomeKind.FAIL, expires_at=soon),
            ]
        )
        await broker.heartbeat(_worker(), [], 30)
        await broker.enqueue([cancelled, queued, running, scheduled])
        await broker.cancel(cancelled.id, soon)
        await broker.claim("w", ("other",), 1, 30)
        assert await eventually(broker.prune, lambda n: n == 3, what="expired jobs pruned") == 3
        assert await broker.purge(states=list(JobState)) == 3
        await broker.unregister_worker("w")
        # The tallies by task go with their last job; what stays is the namespace's counters.
        assert await _keys(admin, namespace) <= {f"{namespace}:{k}" for k in ("queues", "seq", "tallied")}
        assert await broker.stats() == []


async def test_counts_by_task_read_the_jobs_when_some_predate_the_tallies(
    shared_url: str, admin: aioredis.Redis
) -> None:
    namespace = shared_url.rsplit("namespace=", 1)[1]
    async with redis_broker(shared_url, {}) as broker:
        await broker.enqueue([make_job("t.a"), make_job("t.a"), make_job("t.b")])
        where = JobFilter(task="t.a")
        assert await broker.count_jobs(where) == 2
        # As in a namespace whose first jobs were stored before tallies were kept.
        await admin.delete(f"{namespace}:tally:default")
        await admin.set(f"{namespace}:tallied", 2)
        assert await broker.count_jobs(where) == 2
        assert await admin.get(f"{namespace}:tally:default") is None
        await admin.set(f"{namespace}:tallied", 1)  # trusted again: the deleted tallies read 0
        assert await broker.count_jobs(where) == 0


def _worker() -> WorkerInfo:
    now = time.time()
    return WorkerInfo(id="w", hostname="h", pid=1, queues=Q, concurrency=1, started_at=now, last_seen=now)


async def test_namespaces_are_separate(shared_url: str) -> None:
    other = shared_url.rsplit("namespace=", 1)[0] + f"namespace=t_{uuid.uuid4().hex[:12]}"
    async with redis_broker(shared_url, {}) as a, redis_broker(other, {}) as b:
        await a.enqueue([make_job()])
        assert await b.claim("w", Q, 10, 30) == []
        assert len(await a.claim("w", Q, 10, 30)) == 1
        assert a.url == shared_url


async def test_concurrent_waiters_share_one_broker(shared_url: str) -> None:
    async with redis_broker(shared_url, {}) as consumer, redis_broker(shared_url, {}) as producer:
        assert isinstance(producer, RedisBroker)
        on_a = [asyncio.create_task(consumer.wait(("a",), 30)) for _ in range(3)]
        on_b = asyncio.create_task(consumer.wait(("b",), 30))
        doomed = asyncio.create_task(consumer.wait(("a", "b"), 30))
        await asyncio.sleep(0)  # not synchronisation: _until_woken re-sends until each waiter returns
        doomed.cancel()  # a waiter that goes away, perhaps mid-read, must not strand the others
        for waiter in on_a:
            await _until_woken(waiter, producer, queue="a")
        assert not on_b.done()
        await _until_woken(on_b, producer, queue="b")


def _limited(key: str, limit: int = 1, **kw: object) -> Job:
    return msgspec.structs.replace(make_job(**kw), limit_key=key, limit=limit)  # type: ignore[arg-type]


async def _drain(broker: RedisBroker, queues: tuple[str, ...] = Q) -> list[str]:
    """Claim and complete until nothing is left to claim; the ids in claim order."""
    ids: list[str] = []
    while claims := await broker.claim("w", queues, 10, 30):
        ids.extend(c.job.id for c in claims)
        await broker.settle(
            [Outcome(job_id=c.job.id, token=c.token, kind=OutcomeKind.COMPLETE) for c in claims]
        )
    return ids


@pytest.mark.parametrize("way", ["complete", "fail", "retry", "defer", "release", "recover", "purge"])
async def test_every_way_out_of_running_frees_a_limit_slot(
    shared_url: str, admin: aioredis.Redis, way: str
) -> None:
    namespace = shared_url.rsplit("namespace=", 1)[1]
    async with redis_broker(shared_url, {}) as broker:
        assert isinstance(broker, RedisBroker)
        first, second = _limited("k"), _limited("k")
        await broker.enqueue([first, second])
        (c,) = await broker.claim("w", Q, 10, 0.001 if way == "recover" else 30)
        assert c.job.id == first.id
        assert await broker.claim("w", Q, 10, 30) == []
        assert await admin.zcard(f"{namespace}:held:k") == 1  # parked, out of the ready set
        assert (await broker.get(second.id)).state is JobState.QUEUED  # type: ignore[union-attr]
        if way == "recover":
            await eventually(lambda: broker.recover(3600), lambda n: n == 1, what="lease expired")
        elif way == "purge":
            assert await broker.purge(states=[JobState.RUNNING]) == 1
        else:
            later = time.time() + 3600 if way in ("retry", "defer") else None
            outcome = Outcome(job_id=first.id, token=c.token, kind=OutcomeKind(way), run_at=later)
            assert await broker.settle([outcome]) == [True]
        (after,) = await broker.claim("w", Q, 10, 30)
        # Released and recovered jobs are ready again, and ahead of the parked one.
        assert after.job.id == (first.id if way in ("release", "recover") else second.id)
        assert await admin.hget(f"{namespace}:limits", "k") == b"1"
        await broker.settle([Outcome(job_id=after.job.id, token=after.token, kind=OutcomeKind.COMPLETE)])
        await _drain(broker)
        assert await admin.exists(f"{namespace}:limits", f"{namespace}:held:k") == 0
        await broker.purge(states=list(JobState))
        assert await _keys(admin, namespace) <= {f"{namespace}:{k}" for k in ("queues", "seq", "tallied")}


async def test_parked_jobs_can_be_cancelled_and_purged(shared_url: str, admin: aioredis.Redis) -> None:
    namespace = shared_url.rsplit("namespace=", 1)[1]
    both = ("default", "other")
    async with redis_broker(shared_url, {}) as broker:
        assert isinstance(broker, RedisBroker)
        running, cancelled, purged, last = (
            _limited("k"),
            _limited("k"),
            _limited("k", queue="other"),
            _limited("k"),
        )
        await broker.enqueue([running, cancelled, purged, last])
        (c,) = await broker.claim("w", both, 10, 30)
        assert c.job.id == running.id
        assert await admin.zcard(f"{namespace}:held:k") == 3
        assert await broker.cancel(cancelled.id, time.time() + 3600)
        assert await broker.purge(queue="other", states=[JobState.QUEUED]) == 1
        assert await admin.zrange(f"{namespace}:held:k", 0, -1) == [last.id.encode()]
        await broker.settle([Outcome(job_id=running.id, token=c.token, kind=OutcomeKind.COMPLETE)])
        assert await _drain(broker, both) == [last.id]
        assert (await broker.get(cancelled.id)).state is JobState.CANCELLED  # type: ignore[union-attr]


async def test_a_deep_backlog_at_its_limit_is_parked_in_bounded_steps(
    shared_url: str, admin: aioredis.Redis
) -> None:
    namespace = shared_url.rsplit("namespace=", 1)[1]
    async with redis_broker(shared_url, {}) as broker:
        assert isinstance(broker, RedisBroker)
        await broker.enqueue([_limited("k", priority=10) for _ in range(12_000)])
        free = [make_job() for _ in range(3)]
        await broker.enqueue(free)
        seen: list[str] = []
        calls = 0
        while free[0].id not in seen:  # each call parks a bounded number, then the next reads on
            calls += 1
            assert calls <= 4
            seen.extend(c.job.id for c in await broker.claim("w", Q, 1, 30))
        assert len(seen) == 2  # one of the key, then the first free job
        assert await admin.zcard(f"{namespace}:held:k") == 12_000 - 1
        # Parked once: later claims go straight to the free jobs.
        assert [c.job.id for c in await broker.claim("w", Q, 5, 30)] == [free[1].id, free[2].id]


async def test_a_rate_limit_bucket_expires_once_full(shared_url: str, admin: aioredis.Redis) -> None:
    namespace = shared_url.rsplit("namespace=", 1)[1]
    async with redis_broker(shared_url, {}) as broker:
        assert await broker.take("mail", 10.0, 2) == 0.0
        assert (
            0 < await admin.pttl(f"{namespace}:bucket:mail") <= 1100
        )  # full again 100 ms on, then 1 s grace
        assert await broker.take("never", 0.0, 1) == 0.0
        assert await broker.take("never", 0.0, 1) == float("inf")
        await eventually(
            lambda: admin.exists(f"{namespace}:bucket:mail"),
            lambda n: n == 0,
            timeout=5,
            what="bucket expired",
        )


async def test_a_bucket_holds_at_most_its_burst_even_on_a_clock_behind(shared_url: str) -> None:
    # pigeon/bucket.py's rule: a take with a lower burst caps the bucket at it, whatever the
    # caller's clock; the bucket's clock never moves back.
    async with redis_broker(shared_url, {}) as broker:
        assert float(await broker._script("take", "1000", "k", "10", "5")) == 0.0  # 4 tokens left
        assert float(await broker._script("take", "999", "k", "10", "1")) == 0.0  # capped to 1, taken
        assert float(await broker._script("take", "999", "k", "10", "1")) == pytest.approx(0.1)
        tokens, at = await broker._redis.hmget(f"{broker._prefix}bucket:k", "tokens", "at")
        assert (float(tokens), float(at)) == (0.0, 1000.0)
