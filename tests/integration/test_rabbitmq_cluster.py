"""A three-node RabbitMQ cluster: the node leading a job queue stops in the middle of a drain.

The cluster comes from ``scripts/servers/rabbitmq-cluster.sh``, which ``scripts/with-servers``
starts under CI (``make test`` there), or locally when ``PIGEON_SERVERS`` names
``rabbitmq-cluster``. Without it the test skips, saying how to start it; under CI that is a
failure.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage

from pigeon import App
from pigeon.brokers.rabbitmq import RabbitBroker
from pigeon.brokers.rabbitmq._connection import Failover
from tests.conftest import delete_rabbitmq_queues, server_url, with_namespace
from tests.helpers import eventually
from tests.integration.test_rabbitmq_faults import FAST, drained, send_when_reconnected

pytestmark = pytest.mark.server
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "servers" / "rabbitmq-cluster.sh"
N = 300


def cluster(*args: str) -> str:
    done = subprocess.run([str(SCRIPT), *args], check=True, capture_output=True, text=True, timeout=150)
    return done.stdout.strip()


@pytest.fixture
def urls() -> list[str]:
    """The three nodes' AMQP URLs (their order is the script's node numbers, 1 to 3)."""
    try:
        server_url("rabbitmq_cluster")
    except pytest.skip.Exception:
        pytest.skip(
            "no three-node RabbitMQ cluster (it starts under CI; locally: "
            "PIGEON_SERVERS=rabbitmq-cluster scripts/with-servers .venv/bin/python -m pytest "
            "tests/integration/test_rabbitmq_cluster.py)"
        )
    return os.environ["PIGEON_TEST_RABBITMQ_CLUSTER_URLS"].split()


async def declare_on(url: str, name: str) -> None:
    """Declare a job queue as pigeon does, from ``url``: its node leads it (client-local placement)."""
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})


async def depth(url: str, name: str) -> int:
    """The deliveries ready in a queue (not those delivered and unacknowledged)."""
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        count = (await channel.declare_queue(name, passive=True)).declaration_result.message_count
    assert count is not None
    return count


def record_deliveries(app_broker: RabbitBroker, into: set[str]) -> None:
    """Note the job id of every delivery the broker receives, as its consumers are made."""
    held = app_broker._held
    make = held.receiver

    def receiver(queue: str) -> Any:
        arrived = make(queue)

        async def spy(message: AbstractIncomingMessage) -> None:
            into.add(message.body.decode())
            await arrived(message)

        return spy

    held.receiver = receiver  # type: ignore[method-assign]


@pytest.mark.timeout(240)
async def test_the_queue_leader_stopping_mid_drain_loses_no_job(urls: list[str], tmp_path: Path) -> None:
    namespace = f"t_{uuid.uuid4().hex[:12]}"
    await declare_on(urls[0], f"{namespace}.default")
    leader = int(await asyncio.to_thread(cluster, "leader", f"{namespace}.default"))
    follower = next(i for i in (1, 2, 3) if i != leader)  # where the app connects: it stays up
    app = App(with_namespace(urls[follower - 1], namespace), store=f"sqlite:///{tmp_path}/jobs.db")
    ran: set[int] = set()
    stopped = asyncio.Event()

    @app.task(name="tests.cluster.work")
    async def work(n: int) -> None:
        if n >= N // 10:  # the rest wait for the stop: it happens mid-drain, whatever the speed
            await stopped.wait()
        ran.add(n)

    delivered: set[str] = set()
    try:
        broker = (await app.connection()).inner
        assert isinstance(broker, RabbitBroker)
        record_deliveries(broker, delivered)
        ids = [h.id for h in await work.asend_many([(n,) for n in range(N)])]
        async with app.worker(**FAST):
            await eventually(lambda: asyncio.sleep(0, len(ran)), lambda n: n >= N // 10, what="draining")
            waiting = await depth(urls[leader - 1], f"{namespace}.default")
            assert waiting >= N // 3, f"only {waiting} deliveries waiting in the queue: not mid-drain"
            await asyncio.to_thread(cluster, "stop-node", str(leader))
            stopped.set()
            await eventually(
                lambda: asyncio.to_thread(cluster, "leader", f"{namespace}.default"),
                lambda n: n not in ("", str(leader)),
                timeout=60,
                what="another node leading the queue",
            )
            ids += await send_when_reconnected(work, range(N, N + 50))
            await drained(app, ids)
        assert ran == set(range(N + 50))
        # Not only run (the store has every job, and claims find them): RabbitMQ, a node down,
        # delivered every publish it confirmed.
        await eventually(
            lambda: asyncio.sleep(0, set(ids) - delivered), lambda m: not m, timeout=30, what="every delivery"
        )
    finally:
        await app.aclose()
        await asyncio.to_thread(cluster, "start-node", str(leader))
        await delete_rabbitmq_queues(app.url, queues=["default"])


def all_nodes(urls: list[str], first: int) -> str:
    """One URL listing the three nodes, node ``first`` (1-3) in front, then the others in turn."""
    parts = [urlsplit(u) for u in urls]
    order = [parts[(first - 1 + i) % len(parts)] for i in range(len(parts))]
    user = parts[0].netloc.rpartition("@")[0]
    hosts = ",".join(p.netloc.rpartition("@")[2] for p in order)
    return urlunsplit(parts[0]._replace(netloc=f"{user}@{hosts}"))


@pytest.mark.timeout(240)
async def test_the_node_the_app_is_connected_to_stopping_moves_it_to_another(
    urls: list[str], tmp_path: Path
) -> None:
    namespace = f"t_{uuid.uuid4().hex[:12]}"
    await declare_on(urls[1], f"{namespace}.default")  # led by node 2: node 1 stops, the queue stays
    app = App(with_namespace(all_nodes(urls, 1), namespace), store=f"sqlite:///{tmp_path}/jobs.db")
    ran: set[int] = set()

    @app.task(name="tests.cluster.move")
    async def work(n: int) -> None:
        ran.add(n)

    try:
        broker = (await app.connection()).inner
        assert isinstance(broker, RabbitBroker)
        connection = broker._connection
        assert isinstance(connection, Failover)
        assert connection.url.port == urlsplit(urls[0]).port  # the first node listed
        ids = [h.id for h in await work.asend_many([(n,) for n in range(50)])]
        async with app.worker(**FAST):
            await drained(app, ids)
            await asyncio.to_thread(cluster, "stop-node", "1")

            async def moved() -> int | None:
                return connection.url.port if connection.connected.is_set() else None

            others = {urlsplit(u).port for u in urls[1:]}
            await eventually(moved, lambda p: p in others, timeout=60, what="connected to another node")
            ids += await send_when_reconnected(work, range(50, 100))
            await drained(app, ids)
        assert ran == set(range(100))
    finally:
        await app.aclose()
        await asyncio.to_thread(cluster, "start-node", "1")
        await delete_rabbitmq_queues(with_namespace(urls[1], namespace), queues=["default"])
