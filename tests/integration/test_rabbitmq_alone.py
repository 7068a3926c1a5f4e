"""RabbitMQ alone (``amqp://`` without a store): what it promises, against the real server.

The unacknowledged delivery is the lease (a killed worker's jobs come back), delays and
back-off go through the TTL topology (never held unacknowledged, surviving a consumer
restart), failures land in the queue's dead-letter queue with their error.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest

from pigeon import App
from pigeon.brokers.base import create_broker
from pigeon.brokers.rabbitmq._alone import AloneBroker
from pigeon.brokers.rabbitmq._messages import due_of
from pigeon.brokers.rabbitmq._messages import message as job_message
from pigeon.errors import ConfigurationError
from pigeon.job import Claim, ErrorInfo, Outcome, OutcomeKind, WorkerInfo
from pigeon.retry import Fixed
from tests.conftest import delete_rabbitmq_queues, server_url, with_namespace
from tests.helpers import eventually, make_job

pytestmark = pytest.mark.server
Q = ("default",)


@pytest.fixture
async def url() -> AsyncIterator[str]:
    url = with_namespace(server_url("rabbitmq"), f"t_{uuid.uuid4().hex[:12]}")
    yield url
    await delete_rabbitmq_queues(url, queues=Q)  # the quorum queues a test declared stay otherwise


async def opened(url: str) -> AloneBroker:
    broker = create_broker(url, {})
    assert isinstance(broker, AloneBroker)
    await broker.open()
    return broker


@pytest.fixture
async def broker(url: str) -> AsyncIterator[AloneBroker]:
    b = await opened(url)
    yield b
    await b.delete_queues()
    await b.close()


@pytest.fixture
async def channel() -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(server_url("rabbitmq"))
    async with connection:
        yield await connection.channel()


async def depth(channel: aio_pika.abc.AbstractChannel, name: str) -> int:
    queue = await channel.declare_queue(name, passive=True)
    count = queue.declaration_result.message_count
    assert count is not None
    return count


async def dead_letters(channel: aio_pika.abc.AbstractChannel, name: str, count: int) -> list[Any]:
    queue = await channel.declare_queue(name, passive=True)
    got: list[Any] = []

    async def one() -> bool:
        message = await queue.get(fail=False, no_ack=True)
        if message is not None:
            got.append(message)
        return len(got) >= count

    await eventually(one, timeout=30, what=f"{count} dead letters")  # see the retry's deadline
    return got


async def test_a_job_runs_and_is_gone_once_acknowledged(broker: AloneBroker, channel: Any) -> None:
    jobs = [make_job() for _ in range(3)]
    assert await broker.enqueue(jobs) == [j.id for j in jobs]
    claims = await broker.claim("w", Q, 10, 30)
    assert [(c.job, c.attempt) for c in claims] == [(j, 1) for j in jobs]
    done = [Outcome(job_id=c.job.id, token=c.token, kind=OutcomeKind.COMPLETE) for c in claims]
    assert await broker.settle(done) == [True] * 3
    assert await broker.settle(done) == [False] * 3  # a token settles once
    assert await depth(channel, broker.queue_name("default")) == 0


_HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from pigeon.brokers.base import create_broker

    async def main():
        broker = create_broker(sys.argv[1], {})
        await broker.open()
        claims = []
        while len(claims) < int(sys.argv[2]):
            claims += await broker.claim("doomed", ("default",), 10, 30)
        print("claimed", len(claims), flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_a_claim_and_a_wait_starting_consumers_together_lose_no_delivery(broker: AloneBroker) -> None:
    # Both saw the queue without a consumer; the second used to drop what the first had
    # received, and those deliveries stayed unacknowledged with nobody to run them.
    queues = ("default", "other")
    jobs = [make_job(queue=q) for q in queues for _ in range(20)]
    await broker.enqueue(jobs)
    claimed: list[Claim] = []

    async def claim_soon(pause: float) -> None:
        await asyncio.sleep(pause)  # not a synchronisation: the calls try several interleavings
        claimed.extend(await broker.claim("w", queues, 1, 30))

    await asyncio.gather(broker.wait(queues, 0.2), *(claim_soon(i * 0.003) for i in range(20)))

    async def more() -> int:
        claimed.extend(await broker.claim("w", queues, 40, 30))
        return len(claimed)

    await eventually(more, lambda n: n == len(jobs), timeout=10, what="every job claimed")
    assert sorted(c.job.id for c in claimed) == sorted(j.id for j in jobs)


async def test_a_killed_workers_jobs_come_back(url: str, broker: AloneBroker) -> None:
    jobs = [make_job() for _ in range(5)]
    await broker.enqueue(jobs)
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _HOLDER, url, "5", stdout=asyncio.subprocess.PIPE
    )
    try:
        assert holder.stdout is not None
        line = await asyncio.wait_for(holder.stdout.readline(), 30)
        assert line.strip() == b"claimed 5"
        assert await broker.claim("w", Q, 10, 30) == []  # held by the other process
        holder.send_signal(signal.SIGKILL)
    finally:
        if holder.returncode is None:
            holder.kill()
        await holder.wait()
    claims: list[Any] = []

    async def back() -> int:
        claims.extend(await broker.claim("w", Q, 10, 30))
        return len(claims)

    await eventually(back, lambda n: n == 5, what="the killed worker's jobs back")
    assert sorted(c.job.id for c in claims) == sorted(j.id for j in jobs)
    assert {c.attempt for c in claims} == {2}  # the lost attempt counts


async def test_a_delay_survives_a_consumer_restart(url: str, channel: Any) -> None:
    first = await opened(url)
    job = make_job(run_at=time.time() + 1.5)
    await first.enqueue([job])
    assert await first.claim("w", Q, 10, 30) == []
    await first.close()  # the only consumer goes away while the job waits
    assert await depth(channel, f"{url.rsplit('=', 1)[1]}.default") == 0  # in the delay topology, not held
    second = await opened(url)
    try:
        (claim,) = await eventually(lambda: second.claim("w", Q, 10, 30), what="the delayed job")
        assert claim.job.id == job.id and claim.attempt == 1
        assert time.time() >= job.run_at  # type: ignore[operator]
    finally:
        await second.close()


async def test_a_retry_backs_off_through_rabbitmq(broker: AloneBroker) -> None:
    job = make_job(max_attempts=3)
    await broker.enqueue([job])
    (c1,) = await broker.claim("w", Q, 1, 30)
    due = time.time() + 0.5
    err = ErrorInfo("builtins.ValueError", "boom")
    retry = Outcome(job_id=job.id, token=c1.token, kind=OutcomeKind.RETRY, error=err, run_at=due)
    assert await broker.settle([retry]) == [True]
    (c2,) = await eventually(lambda: broker.claim("w", Q, 1, 30), timeout=10, what="the retry")
    # Neither early nor late: due headers once rounded to 128 s and sent retries round for up to a minute.
    assert due <= time.time() < due + 5 and c2.attempt == 2 and c2.token != c1.token
    defer = Outcome(job_id=job.id, token=c2.token, kind=OutcomeKind.DEFER, run_at=time.time() + 0.1)
    assert await broker.settle([defer]) == [True]
    (c3,) = await eventually(lambda: broker.claim("w", Q, 1, 30), what="the deferred attempt")
    assert c3.attempt == 2  # a deferral gives its attempt back


async def test_a_due_time_survives_the_headers_to_the_millisecond(broker: AloneBroker, channel: Any) -> None:
    # AMQP table floats are 32 bits as pamqp writes them: a due time in seconds came back rounded
    # to 128 s, and a retry due at once waited up to a minute (the "late delays" seen under load).
    due = 1796171481.326
    await broker._declare(Q)
    await broker._publish([("", broker.queue_name("default"), job_message(make_job(), 1, due, None))])
    queue = await channel.declare_queue(broker.queue_name("default"), passive=True)
    got = await eventually(lambda: queue.get(fail=False, no_ack=True), what="the message")
    assert due_of(got.headers, None) == pytest.approx(due, abs=0.001)


async def test_a_failure_is_dead_lettered_with_its_error(broker: AloneBroker, channel: Any) -> None:
    job = make_job()
    await broker.enqueue([job])
    (c,) = await broker.claim("w", Q, 1, 30)
    err = ErrorInfo("app.Boom", "it broke", "Traceback ...")
    assert await broker.settle([Outcome(job_id=job.id, token=c.token, kind=OutcomeKind.FAIL, error=err)])
    (dead,) = await dead_letters(channel, broker.dead_name("default"), 1)
    assert dead.message_id == job.id and json.loads(dead.body)["id"] == job.id
    assert json.loads(dead.headers["x-pigeon-error"])["type"] == "app.Boom"
    assert dead.headers["x-pigeon-attempts"] == 1


async def test_a_lost_job_past_its_attempts_is_dead_lettered(url: str, channel: Any) -> None:
    first = await opened(url)
    job = make_job(max_attempts=1)
    await first.enqueue([job])
    assert len(await first.claim("w", Q, 1, 30)) == 1
    await first.close()  # lost with its only attempt
    second = await opened(url)
    try:
        await eventually(lambda: second.claim("w", Q, 1, 30), lambda c: c == [], what="a claim")
        (dead,) = await dead_letters(channel, second.dead_name("default"), 1)
        assert json.loads(dead.headers["x-pigeon-error"])["type"] == "pigeon.WorkerLost"
        assert await second.claim("w", Q, 1, 30) == []
    finally:
        await second.close()


async def test_classic_queues_claim_by_priority(url: str) -> None:
    broker = await opened(url + "&queue_type=classic")
    try:
        low, mid, high = make_job(priority=-5), make_job(), make_job(priority=5)
        await broker.enqueue([low, mid, high])  # in the queue before anything consumes it
        claims = await eventually(lambda: broker.claim("w", Q, 3, 30), lambda c: len(c) == 3, what="claims")
        assert [c.job.id for c in claims] == [high.id, mid.id, low.id]
    finally:
        await broker.close()


async def test_a_message_that_is_not_ours_fails_alone(broker: AloneBroker, channel: Any) -> None:
    good = make_job()
    await broker.enqueue([good])
    await channel.default_exchange.publish(
        aio_pika.Message(b"this is not json {", message_id="x" * 32), routing_key=broker.queue_name("default")
    )
    claims = await eventually(lambda: broker.claim("w", Q, 10, 30), lambda c: len(c) == 2, what="both")
    (bad,) = [c for c in claims if c.malformed is not None]
    assert bad.job.id == "x" * 32 and "does not decode" in bad.malformed  # type: ignore[operator]
    assert [c.job for c in claims if c.malformed is None] == [good]


async def test_declarations_are_idempotent_and_a_clash_is_clear(url: str) -> None:
    for _ in range(2):
        broker = await opened(url)
        await broker.enqueue([make_job()])
        await broker.close()
    classic = await opened(url + "&queue_type=classic")
    try:
        with pytest.raises(ConfigurationError, match="exists with other arguments"):
            await classic.enqueue([make_job()])
    finally:
        await classic.close()


async def test_a_worker_times_out_a_job_and_dead_letters_it(url: str, channel: Any) -> None:
    app = App(url)

    @app.task(timeout=0.2, max_attempts=2, backoff=Fixed(0.1))
    async def slow() -> None:
        await asyncio.sleep(30)

    try:
        async with app.worker(poll=0.05):
            await slow.asend()
            (dead,) = await dead_letters(channel, f"{url.rsplit('=', 1)[1]}.default.dead", 1)
        assert dead.headers["x-pigeon-attempts"] == 2
        assert "Timeout" in json.loads(dead.headers["x-pigeon-error"])["type"]
    finally:
        await app.aclose()


async def test_events_reach_every_handler_and_an_unheard_one_is_no_error(url: str) -> None:
    app = App(url)
    got: dict[str, list[Any]] = {"exact": [], "pattern": [], "other": []}
    every = asyncio.Event()

    def seen(name: str, event: Any) -> None:
        got[name].append(event)
        if got["exact"] and got["pattern"]:
            every.set()

    @app.on("order.paid")
    async def exact(event: dict[str, int]) -> None:
        seen("exact", event)

    @app.on("order.*")
    async def pattern(event: dict[str, int]) -> None:
        seen("pattern", event)

    @app.on("stock.*")
    async def other(event: Any) -> None:
        seen("other", event)

    try:
        assert len(await app.apublish("order.paid", {"id": 7})) == 2
        assert await app.apublish("nobody.listens", {"id": 8}) == []  # logged; nothing to record it in
        async with app.worker(poll=0.05):
            await asyncio.wait_for(every.wait(), 10)
        assert got == {"exact": [{"id": 7}], "pattern": [{"id": 7}], "other": []}
    finally:
        await app.aclose()


async def test_delete_queues_removes_the_namespaces_queues_and_keeps_the_delay_levels(
    url: str, channel: Any
) -> None:
    broker = await opened(url)
    try:
        await broker.enqueue([make_job(), make_job(queue="other", run_at=time.time() + 3600)])
        namespace = url.rsplit("=", 1)[1]
        assert await depth(channel, f"{namespace}.default") == 1
        deleted = await broker.delete_queues()
    finally:
        await broker.close()
    expected = [f"{namespace}.{q}{d}" for q in ("default", "other") for d in ("", ".dead")]
    assert sorted(deleted) == sorted(expected)
    assert await depth(channel, "pigeon.delay.0") >= 0  # shared by every namespace: still there
    with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
        await channel.declare_queue(f"{namespace}.default", passive=True)


async def test_a_worker_holds_its_concurrency_beyond_the_prefetch(url: str) -> None:
    # A running job's delivery stays unacknowledged, so a consumer held to the prefetch alone
    # ran at most `prefetch` jobs, whatever the worker's concurrency (64 of 200 in the bench).
    b = await opened(url + "&prefetch=2")
    try:
        worker = WorkerInfo(
            id="w", hostname="h", pid=1, queues=Q, concurrency=10, started_at=0.0, last_seen=0.0
        )
        await b.heartbeat(worker, [], 30)  # the worker registers before it claims
        await b.enqueue([make_job() for _ in range(15)])
        claims: list[Claim] = []

        async def held() -> int:
            claims.extend(await b.claim("w", Q, 15, 30))
            return len(claims)

        assert await eventually(held, lambda n: n >= 12, what="10 + 2 deliveries held") == 12
        assert b.deliveries == 12  # none beyond: the prefetch still bounds the rest
    finally:
        await b.delete_queues()
        await b.close()
