"""Shared fixtures: broker URLs for every broker, real servers from `make test`."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from pigeon.brokers.base import create_broker, with_store
from pigeon.seam import InstrumentedBroker
from pigeon.seam import InstrumentedBroker as Broker

# "pgbouncer" is the PostgreSQL broker through PgBouncer in transaction pooling mode;
# "redis_cluster" the Redis broker on a Redis Cluster of three masters; "redis_sentinel" on
# the master three sentinels name; "amqp+X" RabbitMQ carrying the jobs with broker X as its
# companion store; "amqp" RabbitMQ alone (no record of a job).
SERVER_BROKERS = (
    "postgres",
    "pgbouncer",
    "redis",
    "redis_cluster",
    "redis_sentinel",
    "amqp+sqlite",
    "amqp+postgres",
    "amqp",
)
BROKERS = ("memory", "sqlite", *SERVER_BROKERS)


def with_namespace(url: str, namespace: str) -> str:
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query), ("namespace", namespace)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def server_url(kind: str) -> str:
    """The URL of a real server started by scripts/servers, or a skip (a failure under CI)."""
    var = f"PIGEON_TEST_{kind.upper()}_URL"
    url = os.environ.get(var)
    if not url:
        reason = f"no {kind} server: {var} is not set (`make test` starts one)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; under CI a missing server is a failure")
        pytest.skip(reason)
    return url


def url_for(kind: str, tmp_path: Path) -> str:
    if kind.startswith("amqp+"):  # RabbitMQ carrying the jobs, another broker keeping the record
        store = url_for(kind.removeprefix("amqp+"), tmp_path)
        return with_store(with_namespace(server_url("rabbitmq"), f"t_{uuid.uuid4().hex[:12]}"), store)
    if kind == "amqp":
        return with_namespace(server_url("rabbitmq"), f"t_{uuid.uuid4().hex[:12]}")
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/jobs.db"
    return with_namespace(server_url(kind), f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=BROKERS)
def broker_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return url_for(request.param, tmp_path)


async def delete_rabbitmq_queues(
    url: str, brokers: Iterable[object] = (), queues: Iterable[str] = ()
) -> None:
    """Delete a test's RabbitMQ queues: ``queues``, those ``brokers`` declared, and the store's.

    Every test has a namespace of its own, and RabbitMQ keeps a queue until it
    is deleted: left behind, some 300 quorum queues took the test node's file
    handles and it stopped accepting connections. A no-op for other brokers.
    """
    if not urlsplit(url).scheme.startswith("amqp"):
        return
    from pigeon.brokers.rabbitmq import RabbitBroker
    from pigeon.brokers.rabbitmq._alone import AloneBroker

    names = set(queues)
    for b in brokers:
        inner = b.inner if isinstance(b, InstrumentedBroker) else b
        if isinstance(inner, RabbitBroker | AloneBroker):
            names |= inner._used
    fresh = create_broker(url, {})
    if not isinstance(fresh, RabbitBroker | AloneBroker):
        return
    async with fresh:
        await fresh.delete_queues(sorted(names))


async def open_broker(url: str, shared: dict[str, object]) -> Broker:
    # The suite meets every broker behind the seam, as every caller does: an optional
    # protocol the broker lacks is then a clear UnsupportedFeature, checked where it is used.
    broker = InstrumentedBroker(create_broker(url, shared))
    await broker.migrate()
    await broker.__aenter__()
    return broker


@pytest.fixture
async def broker_factory(broker_url: str) -> AsyncIterator[object]:
    """Opens as many brokers on the same store as a test asks for (as separate processes would)."""
    shared: dict[str, object] = {}
    opened: list[Broker] = []

    async def make() -> Broker:
        b = await open_broker(broker_url, shared)
        opened.append(b)
        return b

    yield make
    for b in opened:
        await b.__aexit__(None, None, None)
    await delete_rabbitmq_queues(broker_url, opened)


@pytest.fixture
async def broker(broker_factory: object) -> Broker:
    return await broker_factory()  # type: ignore[operator, no-any-return]
