"""RabbitMQ faults with the real server: a restart, a basic.cancel, a killed connection, mid-drain.

Each drains jobs through a worker while the fault happens, sends more after it, and checks
that every job ran and none failed. The restart test runs a node of its own
(``scripts/servers/rabbitmq.sh`` with its own state directory), so it never disturbs
tests running against the shared node.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import pytest

from pigeon import App, JobState, Task
from pigeon.brokers.rabbitmq import RabbitBroker
from pigeon.errors import BrokerError
from tests.conftest import delete_rabbitmq_queues, server_url, with_namespace
from tests.helpers import eventually

pytestmark = pytest.mark.server
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "servers" / "rabbitmq.sh"
FAST: dict[str, Any] = {"poll": 0.05, "heartbeat": 0.2, "concurrency": 8}
N = 300


@dataclass
class Node:
    state: Path
    url: str

    def run(self, command: str) -> None:
        env = {**os.environ, "PIGEON_RABBITMQ_STATE": str(self.state)}
        subprocess.run([str(SCRIPT), command], env=env, check=True, capture_output=True, timeout=150)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    if not Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists() or not shutil.which("python3"):
        reason = "rabbitmq-server is not installed (scripts/servers/rabbitmq.sh start installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; under CI this is a failure")
        pytest.skip(reason)
    state = tmp_path / "rabbitmq"
    started = Node(state, "")
    try:
        started.run("start")
        started.url = (state.parent / "rabbitmq.env").read_text().strip().split("=", 1)[1]
        yield started
    finally:
        started.run("stop")


class Proxy:
    """A TCP relay between the app and RabbitMQ whose connections a test can cut."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()

    def cut(self) -> None:
        for w in self._writers:
            w.transport.abort()
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._port)
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def drained(app: App, ids: list[str]) -> None:
    async def states() -> list[JobState | None]:
        broker = await app.connection()
        records = [await broker.get(i) for i in ids]
        return [r.state if r else None for r in records]

    final = await eventually(
        states, lambda s: all(x is JobState.SUCCEEDED for x in s), timeout=60, what="every job succeeded"
    )
    assert len(final) == len(ids)


Work = Task[[int], None]


def faulty_app(url: str, tmp_path: Path, ran: set[int]) -> tuple[App, Work]:
    app = App(url, store=f"sqlite:///{tmp_path}/jobs.db")

    @app.task(name="tests.faults.work")
    async def work(n: int) -> None:
        await asyncio.sleep(0.005)
        ran.add(n)

    return app, work


async def send(work: Work, numbers: range) -> list[str]:
    return [h.id for h in await work.asend_many([(n,) for n in numbers])]


async def send_when_reconnected(work: Work, numbers: range) -> list[str]:
    """Send once sends succeed again: a send during the outage is a clear error, not a hang."""
    sent: list[str] = []

    async def attempt() -> bool:
        try:
            sent.extend(await send(work, numbers))
        except BrokerError:
            return False
        return True

    await eventually(attempt, timeout=60, what="a send after the fault")
    return sent


@pytest.mark.timeout(240)  # a node of its own, started and restarted
async def test_a_broker_restart_mid_drain_loses_nothing(node: Node, tmp_path: Path) -> None:
    ran: set[int] = set()
    app, work = faulty_app(node.url, tmp_path, ran)
    try:
        ids = await send(work, range(N))
        async with app.worker(**FAST):
            await eventually(lambda: asyncio.sleep(0, len(ran)), lambda n: n >= N // 10, what="draining")
            await asyncio.to_thread(node.run, "restart")
            ids += await send_when_reconnected(work, range(N, N + 50))
            await drained(app, ids)
        assert ran == set(range(N + 50))
    finally:
        await app.aclose()


async def test_a_basic_cancel_mid_drain_loses_nothing(tmp_path: Path) -> None:
    namespace = f"t_{uuid.uuid4().hex[:12]}"
    ran: set[int] = set()
    app, work = faulty_app(with_namespace(server_url("rabbitmq"), namespace), tmp_path, ran)
    try:
        ids = await send(work, range(N))
        async with app.worker(**FAST):
            await eventually(lambda: asyncio.sleep(0, len(ran)), lambda n: n >= N // 10, what="draining")
            broker = (await app.connection()).inner
            assert isinstance(broker, RabbitBroker)
            tag = broker._consumers["default"]
            connection = await aio_pika.connect(server_url("rabbitmq"))
            async with connection:
                channel = await connection.channel()
                await channel.queue_delete(f"{namespace}.default")  # RabbitMQ cancels our consumer
            await eventually(
                lambda: asyncio.sleep(0, broker._consumers["default"]),
                lambda t: t != tag,
                what="consuming again",
            )
            before = broker.deliveries
            ids += await send(work, range(N, N + 50))
            await drained(app, ids)
            # The consumer came back: the jobs sent after the cancel were delivered, not only polled.
            await eventually(
                lambda: asyncio.sleep(0, broker.deliveries), lambda n: n > before, what="deliveries again"
            )
        assert ran == set(range(N + 50))
    finally:
        await app.aclose()
        await delete_rabbitmq_queues(app.url, queues=["default"])


async def test_a_killed_connection_mid_drain_loses_nothing(tmp_path: Path) -> None:
    server = urlsplit(server_url("rabbitmq"))
    ran: set[int] = set()
    async with Proxy(server.port or 5672) as proxy:
        url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/?namespace=t_{uuid.uuid4().hex[:12]}"
        app, work = faulty_app(url, tmp_path, ran)
        try:
            ids = await send(work, range(N))
            async with app.worker(**FAST):
                await eventually(lambda: asyncio.sleep(0, len(ran)), lambda n: n >= N // 10, what="draining")
                proxy.cut()
                ids += await send_when_reconnected(work, range(N, N + 50))
                await drained(app, ids)
            assert ran == set(range(N + 50))
        finally:
            await app.aclose()
            await delete_rabbitmq_queues(app.url, queues=["default"])
