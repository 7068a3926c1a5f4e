"""A host list in the URL: the first host that answers, and another one when it is lost.

Both modes, against the real server: the first host is a closed port or a TCP relay the test
shuts, the second the server itself. The three-node version is in ``test_rabbitmq_cluster.py``.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from pigeon.brokers.base import Broker, create_broker, with_store
from pigeon.brokers.rabbitmq import RabbitBroker
from pigeon.brokers.rabbitmq._alone import AloneBroker
from pigeon.brokers.rabbitmq._connection import Failover
from pigeon.errors import BrokerConnectionError
from pigeon.job import Outcome, OutcomeKind
from tests.conftest import delete_rabbitmq_queues, server_url, with_namespace
from tests.helpers import eventually, make_job
from tests.integration.test_rabbitmq_faults import Proxy

pytestmark = pytest.mark.server


def closed_port() -> int:
    """A loopback port nothing listens on (connections to it are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def listing(url: str, *ports: int, keep: bool = True) -> str:
    """``url`` with loopback hosts at ``ports`` in front of its own host (or instead of it)."""
    parts = urlsplit(url)
    user, _, host = parts.netloc.rpartition("@")
    hosts = ",".join([*(f"127.0.0.1:{p}" for p in ports), *([host] if keep else [])])
    return urlunsplit(parts._replace(netloc=f"{user}@{hosts}"))


@pytest.fixture(params=["alone", "store"])
async def url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    url = with_namespace(server_url("rabbitmq"), f"t_{uuid.uuid4().hex[:12]}")
    if request.param == "store":
        url = with_store(url, "memory://")
    yield url
    await delete_rabbitmq_queues(url, queues=["default"])


def connected_port(broker: Broker) -> int | None:
    assert isinstance(broker, RabbitBroker | AloneBroker)
    connection = broker._connection
    if not isinstance(connection, Failover) or not connection.connected.is_set():
        return None
    return connection.url.port


async def round_trip(broker: Broker) -> None:
    """Send three jobs, claim them and settle them: the connection carries work."""
    jobs = [make_job() for _ in range(3)]
    await broker.enqueue(jobs)
    claims = await eventually(
        lambda: broker.claim("w", ("default",), 10, 30), lambda c: len(c) == 3, what="three claims"
    )
    assert sorted(c.job.id for c in claims) == sorted(j.id for j in jobs)
    done = [Outcome(job_id=c.job.id, token=c.token, kind=OutcomeKind.COMPLETE) for c in claims]
    assert await broker.settle(done) == [True] * 3


async def test_the_first_host_that_answers_is_used(url: str) -> None:
    real = urlsplit(server_url("rabbitmq")).port
    async with create_broker(listing(url, closed_port()), {}) as broker:
        assert connected_port(broker) == real
        await round_trip(broker)


async def test_no_host_answering_names_every_host(url: str) -> None:
    ports = [closed_port() for _ in range(3)]
    with pytest.raises(BrokerConnectionError, match="no host answered") as caught:
        async with create_broker(listing(url, *ports, keep=False), {}):
            pass
    for port in ports:
        assert f"127.0.0.1:{port}: " in str(caught.value)


async def test_a_lost_connection_moves_to_the_next_host(url: str) -> None:
    real = urlsplit(server_url("rabbitmq")).port
    assert real is not None
    async with Proxy(real) as relay:
        broker = create_broker(listing(url, relay.port), {})
        assert isinstance(broker, RabbitBroker | AloneBroker)

        async def port() -> int | None:
            return connected_port(broker)

        await broker.open()
        assert await port() == relay.port
    try:
        # The relay's listener is closed and its connections cut: the connection comes back
        # only by moving on to the next host, the server itself.
        await eventually(port, lambda p: p == real, timeout=30, what="reconnected to the next host")
        await round_trip(broker)
    finally:
        await broker.close()
