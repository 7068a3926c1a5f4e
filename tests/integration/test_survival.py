"""A worker keeps going, and loses nothing, when its server connections are cut mid-run.

Jobs flow through a real worker while every connection of this test's namespace is
killed several times (pg_terminate_backend / CLIENT KILL), as a server restart or a
network cut would do. Every job must finish, each ran at least once and succeeded
exactly once, and the worker must still be serving afterwards.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis

from pigeon import App, JobHandle, JobState, Task
from tests.conftest import server_url, with_namespace
from tests.helpers import eventually
from tests.integration.test_postgres import terminate

pytestmark = pytest.mark.server


def postgres_app() -> tuple[App, Callable[[], Awaitable[int]]]:
    base, tag = server_url("postgres"), f"pigeon_s_{uuid.uuid4().hex[:10]}"
    separator = "&" if urlsplit(base).query else "?"
    app = App(with_namespace(f"{base}{separator}application_name={tag}", tag))
    return app, lambda: terminate(base, tag)


def redis_app() -> tuple[App, Callable[[], Awaitable[int]]]:
    namespace = f"t_{uuid.uuid4().hex[:12]}"
    app = App(with_namespace(server_url("redis"), namespace))

    async def kill() -> int:
        admin = aioredis.Redis.from_url(server_url("redis"))
        try:
            victims = [c for c in await admin.client_list() if c.get("name") == f"pigeon:{namespace}"]
            for c in victims:
                await admin.client_kill_filter(_id=c["id"])
            return len(victims)
        finally:
            await admin.aclose()

    return app, kill


@pytest.mark.parametrize("make", [postgres_app, redis_app], ids=["postgres", "redis"])
async def test_worker_survives_cut_connections(
    make: Callable[[], tuple[App, Callable[[], Awaitable[int]]]],
) -> None:
    app, cut = make()
    await app.amigrate()
    runs: Counter[int] = Counter()

    @app.task(max_attempts=10)
    async def work(i: int) -> int:
        runs[i] += 1
        await asyncio.sleep(0.005)
        return i

    config: dict[str, Any] = {
        "poll": 0.05,
        "heartbeat": 0.2,
        "lease": 3.0,
        "recover_every": 0.3,
        "dead_after": 2.0,
    }
    try:
        async with app.worker(concurrency=20, **config):
            handles = []
            for batch in range(5):
                handles += await _send_with_retries(app, work, range(batch * 40, batch * 40 + 40))
                assert await cut() >= 1
            results = [await h.aresult(timeout=60) for h in handles]
            assert results == list(range(200))
            # Still serving after the last cut.
            late = await _send_with_retries(app, work, [999])
            assert await late[0].aresult(timeout=30) == 999
        assert set(runs) == set(range(200)) | {999}
        records = [await h.arecord() for h in handles]
        assert all(r.state is JobState.SUCCEEDED for r in records)
    finally:
        await app.aclose()


async def _send_with_retries(
    app: App, task: Task[[int], int], numbers: range | list[int]
) -> list[JobHandle[int]]:
    """A producer whose connection was just cut retries, as a caller of any queue would."""
    from pigeon import BrokerError

    async def attempt() -> list[JobHandle[int]] | None:
        try:
            return await task.asend_many([(n,) for n in numbers])
        except BrokerError:
            return None

    sent = await eventually(attempt, lambda r: r is not None, what="an enqueue after the cut")
    assert sent is not None
    return sent
