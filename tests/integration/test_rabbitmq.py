"""RabbitMQ-only behaviour: confirmed publishes, idempotent topology, nothing delayed or held in RabbitMQ.

The shared node comes from ``PIGEON_TEST_RABBITMQ_URL`` (``scripts/servers/rabbitmq.sh start``);
each test works in its own namespace (its own queues) with an SQLite store.
"""

from __future__ import annotations

import asyncio
import functools
import operator
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import aio_pika
import aiormq
import pytest

from pigeon.brokers.base import create_broker, with_store
from pigeon.brokers.rabbitmq import RabbitBroker
from pigeon.errors import BrokerConnectionError, BrokerError, ConfigurationError
from pigeon.job import JobState
from tests.conftest import delete_rabbitmq_queues, server_url, with_namespace
from tests.helpers import eventually, make_job

pytestmark = pytest.mark.server
Q = ("default",)


@pytest.fixture
def namespace() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def url(namespace: str, tmp_path: Path) -> AsyncIterator[str]:
    url = with_store(with_namespace(server_url("rabbitmq"), namespace), f"sqlite:///{tmp_path}/jobs.db")
    yield url
    await delete_rabbitmq_queues(url, queues=["default", "other"])


async def opened(url: str) -> RabbitBroker:
    broker = create_broker(url, {})
    assert isinstance(broker, RabbitBroker)
    await broker.migrate()
    await broker.open()
    return broker


@pytest.fixture
async def broker(url: str) -> AsyncIterator[RabbitBroker]:
    b = await opened(url)
    yield b
    await b.close()


@pytest.fixture
async def channel() -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(server_url("rabbitmq"))
    async with connection:
        yield await connection.channel()


async def depth(channel: aio_pika.abc.AbstractChannel, name: str) -> int:
    declared = await channel.declare_queue(name, passive=True)
    count = declared.declaration_result.message_count
    assert count is not None
    return count


async def test_the_server_version_is_read_at_open(broker: RabbitBroker) -> None:
    assert broker.server_version >= (3, 8)


async def test_a_deleted_queue_is_declared_again_on_send(
    broker: RabbitBroker, channel: aio_pika.abc.AbstractChannel, namespace: str
) -> None:
    await broker.enqueue([make_job()])  # declares the queue
    await channel.queue_delete(f"{namespace}.default")  # the next delivery comes back unroutable
    job = make_job()
    await broker.enqueue([job])
    assert await depth(channel, f"{namespace}.default") == 1


async def test_a_nacked_delivery_is_an_error_in_send_and_the_job_is_kept(
    broker: RabbitBroker, channel: aio_pika.abc.AbstractChannel, namespace: str
) -> None:
    await broker.enqueue([make_job()])
    await channel.queue_delete(f"{namespace}.default")
    # Declared again by someone else as a queue that refuses every delivery: RabbitMQ nacks.
    refusing: dict[str, Any] = {"x-max-length": 0, "x-overflow": "reject-publish"}
    await channel.declare_queue(f"{namespace}.default", exclusive=True, arguments=refusing)
    job = make_job()
    with pytest.raises(BrokerError, match=r"did not confirm 1 of 1 deliveries.*stored and will run"):
        await broker.enqueue([job])
    record = await broker.get(job.id)
    assert record is not None and record.state is JobState.QUEUED
    await broker.enqueue([make_job(queue="other")])  # the publishing channel is still fine


async def test_a_send_right_after_its_channel_closed_lands_when_the_channel_reopens(
    broker: RabbitBroker, channel: aio_pika.abc.AbstractChannel, namespace: str
) -> None:
    """A chain step publishing its next job must not fail because the channel was reopening."""
    await broker.enqueue([make_job()])  # declares the queue
    publisher = broker._publisher
    assert publisher is not None
    # The server closes a channel that asks for an exchange it does not have; robust, it reopens.
    with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
        await publisher.get_exchange(f"{namespace}.no-such-exchange", ensure=True)
    job = make_job()
    await broker.enqueue([job])  # the old code raised "did not confirm … closed" here
    assert await depth(channel, f"{namespace}.default") == 2


async def test_a_second_start_declares_the_same_queues_without_complaint(url: str) -> None:
    for _ in range(2):
        b = await opened(url)
        await b.enqueue([make_job()])
        await b.close()


async def test_a_queue_of_another_type_fails_fast_with_a_clear_message(url: str) -> None:
    quorum = await opened(url)
    await quorum.enqueue([make_job()])
    await quorum.close()
    classic = await opened(f"{url}&queue_type=classic")
    try:
        with pytest.raises(ConfigurationError, match=r"exists with other arguments.*\?queue_type="):
            await classic.enqueue([make_job()])
    finally:
        await classic.close()


async def test_delayed_jobs_wait_in_the_store_not_in_rabbitmq(
    broker: RabbitBroker, channel: aio_pika.abc.AbstractChannel, namespace: str
) -> None:
    now = make_job()
    later = make_job(run_at=time.time() + 3600)
    await broker.enqueue([now, later])
    assert await depth(channel, f"{namespace}.default") == 1
    assert (await broker.get(later.id)).state is JobState.SCHEDULED  # type: ignore[union-attr]


async def test_a_claim_acknowledges_its_deliveries(
    broker: RabbitBroker, channel: aio_pika.abc.AbstractChannel, namespace: str
) -> None:
    jobs = [make_job() for _ in range(5)]
    await broker.enqueue(jobs)
    await eventually(lambda: broker.wait(Q, 0.2), lambda _: broker.deliveries == 5, what="all delivered")
    claims = await broker.claim("w", Q, 10, 30)
    assert {c.job.id for c in claims} == {j.id for j in jobs}
    await broker.close()  # unacknowledged deliveries would go back to the queue here
    assert await depth(channel, f"{namespace}.default") == 0


async def test_a_delivery_arriving_after_its_claim_is_acknowledged(
    broker: RabbitBroker, channel: aio_pika.abc.AbstractChannel, namespace: str
) -> None:
    await broker.claim("w", Q, 1, 30)  # consuming, nothing there yet
    job = make_job()
    await broker._store.enqueue([job])  # the store first, as enqueue() does ...
    assert [c.job.id for c in await broker.claim("w", Q, 1, 30)] == [job.id]  # ... claimed by a poll
    await broker._publish([job])  # ... and only then its delivery
    await eventually(lambda: broker.wait(Q, 0.1), lambda _: broker.deliveries == 1, what="delivered")
    assert broker._held.ready.get("default", []) == []
    await broker.close()
    assert await depth(channel, f"{namespace}.default") == 0


async def test_a_cancelled_jobs_delivery_is_dropped(broker: RabbitBroker) -> None:
    job = make_job()
    await broker.enqueue([job])
    assert await broker.cancel(job.id, time.time() + 60)
    await broker.wait(Q, 5)
    assert await broker.claim("w", Q, 10, 30) == []
    assert broker._held.ready.get("default") == []


async def test_a_server_that_never_answers_is_an_error_not_a_hang(tmp_path: Path) -> None:
    # A wedged node (seen on this machine) accepts TCP connections and never speaks AMQP.
    accepted: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    broker = create_broker(with_store(f"amqp://127.0.0.1:{port}/", f"sqlite:///{tmp_path}/jobs.db"), {})
    assert isinstance(broker, RabbitBroker)
    await broker.migrate()
    started = time.monotonic()
    with pytest.raises(BrokerConnectionError, match="did not answer within"):
        await broker.__aenter__()
    assert time.monotonic() - started < 30
    server.close()
    for w in accepted:
        w.close()


async def test_concurrent_claims_acknowledge_each_delivery_once(broker: RabbitBroker) -> None:
    # Workers of one app share its broker, so their claims overlap. A delivery acknowledged
    # twice is an "unknown delivery tag" to RabbitMQ, which closes the consuming channel.
    async def delivered() -> int:
        await broker.wait(Q, 0.2)
        return broker.deliveries

    for _ in range(5):
        jobs = [make_job() for _ in range(40)]
        expected = broker.deliveries + len(jobs)
        await broker.enqueue(jobs)
        await eventually(delivered, functools.partial(operator.eq, expected), what="all delivered")
        consuming = cast(aiormq.Channel, await broker._channel(broker._consumer).get_underlay_channel())
        claims = await asyncio.gather(*(broker.claim("w", Q, 40, 30) for _ in range(4)))
        assert sorted(c.job.id for batch in claims for c in batch) == sorted(j.id for j in jobs)
        # A round trip after the acknowledgements: RabbitMQ answers it only if it took them all.
        await consuming.basic_qos(prefetch_count=64)
        assert not consuming.is_closed
        assert broker._held.ready.get("default") == []


async def test_delete_queues_removes_the_namespaces_queues_and_keeps_the_jobs(
    broker: RabbitBroker, url: str, namespace: str
) -> None:
    jobs = [make_job(), make_job(queue="other")]
    await broker.enqueue(jobs)
    assert await broker.claim("w", ("mail",), 1, 30) == []  # "mail": declared to consume, never sent to
    connection = await aio_pika.connect(server_url("rabbitmq"))

    async def exists(queue: str) -> bool:
        try:
            async with await connection.channel() as channel:  # a failed passive declare closes it
                await channel.declare_queue(f"{namespace}.{queue}", passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return False
        return True

    async with connection:
        # A broker that declared nothing finds the store's queues; this one knows its own.
        fresh = await opened(url)
        assert await fresh.delete_queues() == [f"{namespace}.default", f"{namespace}.other"]
        await fresh.close()
        assert await exists("mail")
        assert sorted(await broker.delete_queues()) == [
            f"{namespace}.{q}" for q in ("default", "mail", "other")
        ]
        assert [await exists(q) for q in ("default", "mail", "other")] == [False, False, False]
        # The jobs were in the store all along: claimed, and the queue consumed again.
        claims = await broker.claim("w", ("default", "other"), 10, 30)
        assert sorted(c.job.id for c in claims) == sorted(j.id for j in jobs)
        assert await exists("default")
