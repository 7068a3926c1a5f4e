"""PostgreSQL through PgBouncer in transaction pooling mode: LISTEN is cut off, the rest works.

Needs ``scripts/servers/pgbouncer.sh start`` (``PIGEON_TEST_PGBOUNCER_URL``), in front of
the server of ``scripts/servers/postgres.sh`` (``PIGEON_TEST_POSTGRES_URL``). The
conformance suite runs through it too (the ``pgbouncer`` broker parameter).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import quote

import pytest

from pigeon.brokers.base import create_broker
from pigeon.brokers.postgres import PostgresBroker
from pigeon.errors import ConfigurationError
from pigeon.job import Claim, Outcome, OutcomeKind
from tests.conftest import server_url, with_namespace
from tests.helpers import make_job

pytestmark = pytest.mark.server

Q = ("default",)
LISTEN_WARNING = "receives no notifications"


def pooled_url(listen_url: str | None = None) -> str:
    url = with_namespace(server_url("pgbouncer"), f"t_{uuid.uuid4().hex[:12]}")
    if listen_url is not None:
        url += f"&listen_url={quote(listen_url, safe='')}"
    return url


Opener = Callable[[str], Awaitable[PostgresBroker]]


@pytest.fixture
async def open_broker() -> AsyncIterator[Opener]:
    opened: list[PostgresBroker] = []

    async def make(url: str) -> PostgresBroker:
        broker = create_broker(url, {})
        assert isinstance(broker, PostgresBroker)
        await broker.migrate()
        await broker.__aenter__()
        opened.append(broker)
        return broker

    yield make
    for b in opened:
        await b.__aexit__(None, None, None)


async def wait_for_job(broker: PostgresBroker, enqueue: PostgresBroker, timeout: float) -> float:
    """Seconds from an enqueue by another broker to the waiter's return."""
    waiting = asyncio.create_task(broker.wait(Q, timeout))
    await asyncio.sleep(0.05)  # the waiter is registered before the job commits
    start = time.monotonic()
    await enqueue.enqueue([make_job()])
    await waiting
    return time.monotonic() - start


async def test_listen_through_pgbouncer_falls_back_to_polling_and_says_so_once(
    open_broker: Opener, caplog: pytest.LogCaptureFixture
) -> None:
    url = pooled_url()
    worker = await open_broker(url)
    producer = await open_broker(url)
    with caplog.at_level(logging.WARNING, logger="pigeon.broker.postgres"):
        async with asyncio.timeout(10):  # the listener's check takes 2 s, then waits are polls
            await worker.wait(Q, 30)
        for _ in range(3):
            start = time.monotonic()
            await worker.wait(Q, 30)
            assert time.monotonic() - start < 5.0, "an idle wait must stay short without LISTEN"
        await producer.enqueue([make_job()])
        (claim,) = await worker.claim("w", Q, 10, 30)
        assert await worker.settle([_complete(claim)]) == [True]
    warnings = [r.getMessage() for r in caplog.records if LISTEN_WARNING in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "listen_url" in warnings[0]


async def test_listen_url_gives_instant_wake_ups_through_pgbouncer(
    open_broker: Opener, caplog: pytest.LogCaptureFixture
) -> None:
    url = pooled_url(listen_url=server_url("postgres"))
    worker = await open_broker(url)
    producer = await open_broker(url)
    with caplog.at_level(logging.WARNING, logger="pigeon.broker.postgres"):
        await worker.wait(Q, 0.5)  # starts the listener
        elapsed = await wait_for_job(worker, producer, 10.0)
    assert elapsed < 5.0, "the waiter slept to its timeout: the notice did not reach it"
    assert not [r for r in caplog.records if LISTEN_WARNING in r.getMessage()]


@pytest.mark.parametrize("listen", [False, True], ids=["polling", "listen_url"])
async def test_a_worker_through_pgbouncer_prepares_no_statement(open_broker: Opener, listen: bool) -> None:
    """Statements are prepared only on a session of one's own: through a pooler in transaction
    mode the next run of a prepared statement would land on a server connection without it."""
    worker = await open_broker(pooled_url(listen_url=server_url("postgres") if listen else None))
    await worker.enqueue([make_job() for _ in range(200)])
    async with asyncio.timeout(20):
        while worker._listener.works is None:  # the first claim starts the listener's check
            (claim,) = await worker.claim("w", Q, 1, 30)
            assert await worker.settle([_complete(claim)]) == [True]
            await asyncio.sleep(0.1)
    assert worker._prepare_after() is None
    for _ in range(2 * 5 + 1):  # past psycopg's threshold, were it on
        (claim,) = await worker.claim("w", Q, 1, 30)
        assert await worker.settle([_complete(claim)]) == [True]


def test_listen_url_must_be_a_postgresql_url() -> None:
    with pytest.raises(ConfigurationError, match="listen_url"):
        create_broker(pooled_url(listen_url="redis://127.0.0.1/0"), {})


def _complete(claim: Claim) -> Outcome:
    return Outcome(
        job_id=claim.job.id, token=claim.token, kind=OutcomeKind.COMPLETE, expires_at=time.time() + 60
    )
