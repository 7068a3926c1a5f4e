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

import pytest
import redis.asyncio as aioredis

from pigeon.brokers.base import create_broker
from pigeon.brokers.redis import RedisBroker
from pigeon.errors import BrokerConnectionError, BrokerError, ConfigurationError
from pigeon.job import JobState, Outcome, OutcomeKind, WorkerInfo
from tests.conftest import server_url, with_namespace
from tests.helpers import eventually, make_job

pytestmark = pytest.mark.server
Q = ("default",)


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
            broker = create_broker(server.url + "?namespace=evict", {})
            with pytest.raises(ConfigurationError, match="noeviction"):
                await broker.__aenter__()
            await admin.config_set("maxmemory-policy", "noeviction")
            async with create_broker(server.url + "?namespace=evict", {}) as ok:
                assert await ok.stats() == []
        finally:
            await admin.aclose()


async def test_starts_with_a_warning_when_config_is_disabled(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with _stopped_at_end(OwnServer(workdir, "--rename-command", "CONFIG", "")) as server:
        await server.start()
        with caplog.at_level(logging.WARNING, logger="pigeon.broker.redis"):
            async with create_broker(server.url, {}) as broker:
                assert await broker.enqueue([job := make_job()]) == [job.id]
        assert "maxmemory-policy" in caplog.text


async def test_survives_client_kill(shared_url: str, admin: aioredis.Redis) -> None:
    name = "pigeon:" + shared_url.rsplit("namespace=", 1)[1]
    async with create_broker(shared_url, {}) as consumer, create_broker(shared_url, {}) as producer:
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
        async with create_broker(server.url, {}) as consumer, create_broker(server.url, {}) as producer:
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
    async with create_broker(shared_url, {}) as broker:
        await admin.set(f"{namespace}:queues", "not a set")
        with pytest.raises(BrokerError) as caught:
            await broker.stats()
        assert not isinstance(caught.value, BrokerConnectionError)
        await admin.delete(f"{namespace}:queues")


async def test_prune_and_purge_leave_no_keys_of_a_job(shared_url: str, admin: aioredis.Redis) -> None:
    namespace = shared_url.rsplit("namespace=", 1)[1]
    async with create_broker(shared_url, {}) as broker:
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
        await broker.register_worker(_worker())
        await broker.enqueue([cancelled, queued, running, scheduled])
        await broker.cancel(cancelled.id, soon)
        await broker.claim("w", ("other",), 1, 30)
        assert await eventually(broker.prune, lambda n: n == 3, what="expired jobs pruned") == 3
        assert await broker.purge(states=list(JobState)) == 3
        await broker.unregister_worker("w")
        assert await _keys(admin, namespace) <= {f"{namespace}:queues", f"{namespace}:seq"}
        assert await broker.stats() == []


def _worker() -> WorkerInfo:
    now = time.time()
    return WorkerInfo(id="w", hostname="h", pid=1, queues=Q, concurrency=1, started_at=now, last_seen=now)


async def test_namespaces_are_separate(shared_url: str) -> None:
    other = shared_url.rsplit("namespace=", 1)[0] + f"namespace=t_{uuid.uuid4().hex[:12]}"
    async with create_broker(shared_url, {}) as a, create_broker(other, {}) as b:
        await a.enqueue([make_job()])
        assert await b.claim("w", Q, 10, 30) == []
        assert len(await a.claim("w", Q, 10, 30)) == 1
        assert a.url == shared_url


async def test_concurrent_waiters_share_one_broker(shared_url: str) -> None:
    async with create_broker(shared_url, {}) as consumer, create_broker(shared_url, {}) as producer:
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
