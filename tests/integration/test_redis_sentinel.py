"""The Redis broker through Redis Sentinel: the URL spelling, and the master it finds.

The conformance suite runs on a Sentinel group too (the ``redis_sentinel`` broker parameter,
``scripts/servers/redis-sentinel.sh``); the failover is tests/faults/test_sentinel_failover.py.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from pigeon.brokers.base import create_broker
from pigeon.brokers.redis import RedisBroker
from pigeon.brokers.redis_connect import SentinelService
from pigeon.brokers.redis_data import text
from pigeon.errors import BrokerConnectionError, ConfigurationError
from tests.conftest import server_url, with_namespace
from tests.helpers import make_job


def test_a_sentinel_url_names_sentinels_service_and_database() -> None:
    found = SentinelService.from_url(
        "redis+sentinel://u:p%40ss@a:26379,[::1]:26380/my%20master/3?namespace=x"
    )
    assert found == SentinelService([("a", 26379), ("::1", 26380)], "my master", 3)
    assert SentinelService.from_url("rediss+sentinel://a:1/svc").db == 0


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+sentinel://127.0.0.1:26379/", "name the service the sentinels watch"),
        ("redis+sentinel://127.0.0.1:26379/svc/zero", "must be a number"),
        ("redis+sentinel://127.0.0.1,127.0.0.2:26379/svc", "host:port"),
    ],
)
def test_a_bad_sentinel_url_is_a_configuration_error(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        create_broker(url, {})


async def test_no_sentinel_answering_is_a_connection_error_naming_the_service() -> None:
    broker = create_broker("redis+sentinel://127.0.0.1:1/nothing/0", {})
    with pytest.raises(BrokerConnectionError, match="sentinel service nothing/0"):
        async with broker:
            pass


@pytest.mark.server
async def test_the_broker_writes_to_the_master_the_sentinels_name() -> None:
    import redis.asyncio as aioredis

    url = server_url("redis_sentinel")
    namespace = f"t_{uuid.uuid4().hex[:12]}"
    broker = create_broker(with_namespace(url, namespace), {})
    assert isinstance(broker, RedisBroker)
    async with broker:
        [job_id] = await broker.enqueue([make_job()])
    service = SentinelService.from_url(url)
    host, port = service.sentinels[0]
    sentinel = aioredis.Redis(host=host, port=port)
    try:
        found: Any = await sentinel.sentinel_get_master_addr_by_name(service.service)
    finally:
        await sentinel.aclose()
    master = aioredis.Redis(host=text(found[0]), port=int(found[1]))
    try:
        assert await master.exists(f"{namespace}:job:{job_id}") == 1
        assert (await master.info("replication"))["role"] == "master"
    finally:
        await master.aclose()
