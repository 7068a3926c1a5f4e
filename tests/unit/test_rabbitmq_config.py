"""RabbitMQ's companion store: how it is spelled, and the clear errors for what cannot work."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from pigeon import App, ConfigurationError, UnsupportedFeature
from pigeon.brokers import base
from pigeon.brokers.base import Inspecting, Limiting, Reporting, create_broker, with_store
from pigeon.brokers.rabbitmq import RabbitBroker
from pigeon.brokers.rabbitmq._alone import AloneBroker
from pigeon.brokers.rabbitmq._connection import hosts_of, where
from pigeon.job import Job
from pigeon.seam import InstrumentedBroker


def test_the_store_rides_in_the_broker_url() -> None:
    app = App("amqp://guest:guest@127.0.0.1:5672/", store="postgresql://db/jobs")
    assert parse_qs(urlsplit(app.url).query)["store"] == ["postgresql://db/jobs"]


def test_pigeon_store_sits_beside_pigeon_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIGEON_URL", "amqp://127.0.0.1/")
    monkeypatch.setenv("PIGEON_STORE", "sqlite:///jobs.db")
    assert parse_qs(urlsplit(App().url).query)["store"] == ["sqlite:///jobs.db"]


def test_pigeon_store_leaves_other_brokers_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIGEON_STORE", "sqlite:///jobs.db")
    assert App("memory://").url == "memory://"


def test_a_store_is_refused_where_the_broker_keeps_its_own_record() -> None:
    with pytest.raises(ConfigurationError, match=r"store=.* is for the RabbitMQ broker"):
        App("redis://127.0.0.1/0", store="sqlite:///jobs.db")
    with pytest.raises(ConfigurationError, match="the store must be a broker that keeps a record"):
        App("amqp://127.0.0.1/", store="amqp://127.0.0.1/")
    with pytest.raises(ConfigurationError, match="has no scheme"):
        App("amqp://127.0.0.1/", store="jobs.db")


def test_rabbitmq_without_a_store_is_rabbitmq_alone() -> None:
    broker = create_broker("amqp://127.0.0.1/?queue_type=classic&delivery_limit=5", {})
    assert isinstance(broker, AloneBroker)
    caps = InstrumentedBroker(broker).capabilities
    assert caps.priority and not caps.get_result  # classic queues have priorities; no record, no results
    assert not (caps.inspect or caps.limits or caps.progress or caps.transactional_enqueue)
    assert not InstrumentedBroker(create_broker("amqp://127.0.0.1/", {})).capabilities.priority  # quorum


async def test_what_rabbitmq_alone_cannot_do_names_the_store() -> None:
    broker = InstrumentedBroker(create_broker("amqp://127.0.0.1/", {}))
    needs_store = r"without a store cannot .*: RabbitMQ alone keeps no record.*PIGEON_STORE"
    with pytest.raises(UnsupportedFeature, match=needs_store):
        await broker.get("0" * 32)
    with pytest.raises(UnsupportedFeature, match=needs_store):
        await broker.cancel("0" * 32, 0)
    with pytest.raises(
        UnsupportedFeature, match=r"cannot keep a unique key .*RabbitMQ alone keeps no record"
    ):
        await broker.enqueue([Job(id="1" * 32, task="t", unique_key="k")])  # refused before connecting
    with pytest.raises(UnsupportedFeature, match="limit concurrency"):
        await broker.enqueue([Job(id="1" * 32, task="t", limit_key="k", limit=1)])
    with pytest.raises(UnsupportedFeature, match="the amqp broker cannot list"):
        await broker.stats()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("queue_type=stream", "queue_type must be one of quorum, classic"),
        ("prefetch=0", "prefetch must be a whole number"),
        ("prefetch=lots", "prefetch must be a whole number"),
        ("namespace=a%20b", "namespace must be a plain word"),
        ("delivery_limit=0", "delivery_limit must be a whole number"),
    ],
)
def test_bad_rabbitmq_parameters_fail_before_connecting(query: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        create_broker(f"amqp://127.0.0.1/?{query}", {})  # RabbitMQ alone
    if not query.startswith("delivery_limit"):  # a quorum queue's guard, for RabbitMQ alone only
        with pytest.raises(ConfigurationError, match=message):
            create_broker(f"amqp://127.0.0.1/?store=memory%3A%2F%2F&{query}", {})
    else:
        with pytest.raises(ConfigurationError, match=message):
            create_broker(f"amqp://127.0.0.1/?{query}", {})


def test_the_optional_protocols_are_those_of_the_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(base._BUILTIN, "coreonly", "tests.unit.test_contract:CoreOnly")
    full = InstrumentedBroker(create_broker(with_store("amqp://127.0.0.1/", "memory://"), {}))
    assert full.capabilities.inspect and full.capabilities.limits and full.capabilities.progress
    assert not full.capabilities.transactional_enqueue  # a job in the caller's transaction has no delivery
    core = create_broker(with_store("amqp://127.0.0.1/", "coreonly://"), {})
    assert isinstance(core, RabbitBroker)
    for protocol in (Inspecting, Limiting, Reporting):
        assert not isinstance(core, protocol)
    caps = InstrumentedBroker(core).capabilities
    assert not (caps.inspect or caps.limits or caps.progress or caps.transactional_enqueue)


async def test_what_the_store_lacks_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(base._BUILTIN, "coreonly", "tests.unit.test_contract:CoreOnly")
    broker = InstrumentedBroker(create_broker(with_store("amqp://127.0.0.1/", "coreonly://"), {}))
    with pytest.raises(UnsupportedFeature, match="the amqp broker cannot list"):
        await broker.stats()
    with pytest.raises(UnsupportedFeature, match="cannot limit a task's rate"):
        await broker.take("k", 1.0, 1.0)
    with pytest.raises(UnsupportedFeature, match="cannot keep progress reports"):
        await broker.progress("j", "t", b"{}")


def test_a_due_time_crosses_the_wire_to_the_millisecond() -> None:
    # AMQP tables carry a Python float as 32 bits: a due time sent as one came back up to 64 s off.
    from pamqp import decode, encode

    from pigeon.brokers.rabbitmq._messages import due_of, message
    from tests.helpers import make_job

    job = make_job()
    due = 1_796_170_949.1236
    headers = message(job, 1, due, None).headers
    _, wire = decode.field_table(encode.field_table(dict(headers)))
    got = due_of(wire, None)
    assert got is not None and abs(got - due) <= 0.001
    assert due_of({}, 5.0) == 5.0


def test_a_host_list_is_one_url_per_host_in_the_order_given() -> None:
    assert hosts_of("amqp://u:p%2C@h1:5672,h2,[::1]:5674/vh?heartbeat=5") == [
        "amqp://u:p%2C@h1:5672/vh?heartbeat=5",
        "amqp://u:p%2C@h2/vh?heartbeat=5",
        "amqp://u:p%2C@[::1]:5674/vh?heartbeat=5",
    ]
    assert hosts_of("amqps://rabbit/") == ["amqps://rabbit/"]
    assert where("amqp://u:p@h1,h2:5673/vh", "ns") == "h1:5672,h2:5673/vh, namespace 'ns'"


@pytest.mark.parametrize(
    "hosts", ["h1:5672,,h3", "h1:5672,h2:port", "h1,:5673", "h1:70000,h2", "h1:5672,", "rabbit:abc"]
)
def test_a_bad_host_list_fails_before_connecting(hosts: str) -> None:
    for url in (f"amqp://u:p@{hosts}/", f"amqp://u:p@{hosts}/?store=memory%3A%2F%2F"):
        with pytest.raises(ConfigurationError, match=r"bad host .* write host\[:port\] for each"):
            create_broker(url, {})
