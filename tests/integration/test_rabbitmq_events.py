"""RabbitMQ alone's events: a topic exchange per namespace, a durable queue per handler.

A publish is one message to ``<namespace>.events``; any AMQP client can bind a queue of its own
to it, handlers in other processes each receive it, a handler's queue keeps what is published
while no worker runs, and a failing handler retries and dead-letters as a job does.
"""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest

from pigeon import App
from pigeon.brokers.rabbitmq._events_topic import Topics
from pigeon.retry import Fixed
from tests.conftest import delete_rabbitmq_queues, server_url, with_namespace
from tests.helpers import eventually

pytestmark = pytest.mark.server


@pytest.fixture
def namespace() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def url(namespace: str) -> AsyncIterator[str]:
    url = with_namespace(server_url("rabbitmq"), namespace)
    yield url
    await delete_rabbitmq_queues(url, queues=[Topics(namespace).key(n) for n in _HANDLERS])


_HANDLERS = ("listener.billing", "listener.shipping", "keeper", "flaky")
"""The handler names these tests use: their queues are deleted after each test."""


@pytest.fixture
async def channel() -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(server_url("rabbitmq"))
    async with connection:
        yield await connection.channel()


def handler_queue(namespace: str, handler: str, dead: bool = False) -> str:
    return f"{namespace}.{Topics(namespace).key(handler)}" + (".dead" if dead else "")


async def taken(queue: aio_pika.abc.AbstractQueue, count: int, what: str) -> list[Any]:
    got: list[Any] = []

    async def one() -> int:
        message = await queue.get(fail=False, no_ack=True)
        if message is not None:
            got.append(message)
        return len(got)

    await eventually(one, lambda n: n >= count, timeout=30, what=what)
    return got


async def test_any_amqp_client_binds_a_queue_and_reads_the_json_envelope(
    url: str, namespace: str, channel: Any
) -> None:
    exchange = await channel.declare_exchange(
        f"{namespace}.events", aio_pika.ExchangeType.TOPIC, durable=True
    )  # the same arguments pigeon declares it with
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange, "order.*")
    app = App(url)
    try:
        assert await app.apublish("order.paid", {"id": 7, "total": "9.90"}) == []  # no handler here
        assert await app.apublish("stock.low", {"sku": "x"}) == []  # nobody bound: no error
        (message,) = await taken(queue, 1, "the event in the raw queue")
    finally:
        await app.aclose()
    assert message.routing_key == "order.paid"
    assert message.content_type == "application/json"
    assert message.type == "pigeon.event"
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    envelope = json.loads(message.body)
    assert set(envelope) == {"id", "topic", "event", "published_at"}
    assert envelope["id"] == message.message_id and len(envelope["id"]) == 32
    assert envelope["topic"] == "order.paid"
    assert envelope["event"] == {"id": 7, "total": "9.90"}
    assert abs(envelope["published_at"] - message.timestamp.timestamp()) < 1
    assert await queue.get(fail=False) is None  # stock.low did not match order.*


def keeper_app(url: str) -> tuple[App, list[Any]]:
    """An app whose handler ``keeper`` keeps every ``order.*`` event it receives."""
    app = App(url)
    got: list[Any] = []

    @app.on("order.*", name="keeper")
    async def keeper(event: dict[str, int]) -> None:
        got.append(event)

    return app, got


async def test_an_event_published_by_any_amqp_client_reaches_the_handler(
    url: str, namespace: str, channel: Any
) -> None:
    app, got = keeper_app(url)
    try:
        async with app.worker(poll=0.05):
            exchange = await channel.get_exchange(f"{namespace}.events")
            body = json.dumps({"topic": "order.paid", "event": {"id": 9}}).encode()
            await exchange.publish(aio_pika.Message(body, content_type="application/json"), "order.paid")
            await eventually(lambda: _value(got), timeout=10, what="the handler ran")
    finally:
        await app.aclose()
    assert got == [{"id": 9}]


async def _value(items: list[Any]) -> list[Any]:
    return items


_LISTENER = textwrap.dedent(
    """
    import asyncio, sys
    from pigeon import App

    app = App(sys.argv[1])
    role = sys.argv[2]

    @app.on("order.*", name=f"listener.{role}")
    async def listen(event: dict) -> None:
        print(role, event["id"], flush=True)

    async def main():
        async with app.worker(poll=0.05):
            print("ready", flush=True)
            await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_handlers_in_two_processes_each_receive_one_publish(url: str) -> None:
    listeners = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", _LISTENER, url, role, stdout=asyncio.subprocess.PIPE
        )
        for role in ("billing", "shipping")
    ]
    app = App(url)  # publishes without a handler of its own
    try:
        for p in listeners:
            assert p.stdout is not None
            assert await asyncio.wait_for(p.stdout.readline(), 30) == b"ready\n"
        assert await app.apublish("order.paid", {"id": 11}) == []
        heard = []
        for p in listeners:
            assert p.stdout is not None
            heard.append((await asyncio.wait_for(p.stdout.readline(), 30)).decode().split())
        assert sorted(heard) == [["billing", "11"], ["shipping", "11"]]
    finally:
        await app.aclose()
        for p in listeners:
            if p.returncode is None:
                p.kill()
            await p.wait()


async def test_a_handlers_queue_keeps_what_is_published_while_no_worker_runs(
    url: str, namespace: str, channel: Any
) -> None:
    def with_keeper(got: list[Any]) -> App:
        app = App(url)

        @app.on("order.*", name="keeper")
        async def keeper(event: dict[str, int]) -> None:
            got.append(event)

        return app

    early = with_keeper([])
    try:  # a process with the handler publishes once: that declares and binds the handler's queue
        assert await early.apublish("order.created", {"id": 1}) != []
    finally:
        await early.aclose()
    publisher = App(url)  # no handler here, and no worker runs anywhere
    try:
        assert await publisher.apublish("order.paid", {"id": 2}) == []
    finally:
        await publisher.aclose()
    queue = await channel.declare_queue(handler_queue(namespace, "keeper"), passive=True)
    assert queue.declaration_result.message_count == 2
    got: list[Any] = []
    later = with_keeper(got)
    try:
        async with later.worker(poll=0.05):
            await eventually(lambda: _value(got), lambda g: len(g) == 2, timeout=10, what="both events")
    finally:
        await later.aclose()
    assert sorted(e["id"] for e in got) == [1, 2]


async def test_a_failing_handler_retries_then_is_dead_lettered(
    url: str, namespace: str, channel: Any
) -> None:
    app = App(url)
    calls: list[int] = []

    @app.on("order.*", name="flaky", max_attempts=3, backoff=Fixed(0.05))  # through the delay levels
    async def flaky(event: dict[str, int]) -> None:
        calls.append(event["id"])
        raise RuntimeError(f"cannot handle order {event['id']}")

    try:
        async with app.worker(poll=0.05):
            await app.apublish("order.paid", {"id": 5})
            dead = await channel.declare_queue(handler_queue(namespace, "flaky", dead=True), passive=True)
            (letter,) = await taken(dead, 1, "the dead letter")
    finally:
        await app.aclose()
    assert calls == [5, 5, 5]
    assert letter.headers["x-pigeon-attempts"] == 3
    error = json.loads(letter.headers["x-pigeon-error"])
    assert error["type"].endswith("RuntimeError") and "order 5" in error["message"]
    assert json.loads(letter.body)["task"] == "flaky"


async def test_a_handlers_queue_deleted_under_a_worker_is_declared_and_bound_again(
    url: str, namespace: str, channel: Any
) -> None:
    app, got = keeper_app(url)
    publisher = App(url)  # no handler: it binds nothing itself

    async def published_and_heard() -> list[Any]:
        await publisher.apublish("order.paid", {"id": 3})
        return got

    try:
        async with app.worker(poll=0.05):
            await channel.queue_delete(handler_queue(namespace, "keeper"))  # its consumer is cancelled
            await eventually(published_and_heard, timeout=20, what="an event heard after the deletion")
    finally:
        await publisher.aclose()
        await app.aclose()


async def test_a_trace_crosses_the_topic_exchange_into_the_handler(url: str, namespace: str) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from pigeon.otel import instrument

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = App(url)
    instrument(app, tracer_provider=provider)
    handled = asyncio.Event()

    @app.task
    async def checkout(order_id: int) -> None:
        await app.apublish("orders.paid", {"order_id": order_id})

    @app.on("orders.paid", name="keeper")
    async def keeper(event: dict[str, int]) -> None:
        handled.set()

    try:
        async with app.worker(poll=0.05):
            with provider.get_tracer("web").start_as_current_span("POST /checkout") as request:
                await checkout.asend(42)
            await asyncio.wait_for(handled.wait(), 30)
            spans = await eventually(
                lambda: asyncio.sleep(0, [s for s in exporter.get_finished_spans()]),
                lambda got: any(s.name == "run keeper" for s in got),
                what="the handler's span",
            )
    finally:
        await app.aclose()
    by_name = {s.name: s for s in spans}
    publish = by_name["send keeper"]  # the enqueue hooks saw the routed publish
    run = by_name[f"run {checkout.name}"]
    handler = by_name["run keeper"]
    trace_id = request.get_span_context().trace_id
    assert {publish.context.trace_id, run.context.trace_id, handler.context.trace_id} == {trace_id}
    assert publish.parent is not None and publish.parent.span_id == run.context.span_id
    assert handler.parent is not None and handler.parent.span_id == publish.context.span_id
