"""The Redis broker on a Redis Cluster: one hash slot per namespace, and the URL spelling.

Needs ``scripts/servers/redis-cluster.sh start`` (``PIGEON_TEST_REDIS_CLUSTER_URL``); the
conformance suite runs on it too (the ``redis_cluster`` broker parameter).
"""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from pigeon.brokers.base import create_broker
from pigeon.brokers.redis import RedisBroker
from pigeon.errors import ConfigurationError
from pigeon.job import Outcome, OutcomeKind
from tests.conftest import server_url, with_namespace
from tests.helpers import make_job


@pytest.mark.server
async def test_every_key_of_a_namespace_shares_one_hash_slot() -> None:
    namespace = f"t_{uuid.uuid4().hex[:12]}"
    broker = create_broker(with_namespace(server_url("redis_cluster"), namespace), {})
    assert isinstance(broker, RedisBroker)
    async with broker:
        jobs = [make_job(queue=q, unique_key=f"u{i}") for i, q in enumerate(["a", "b", "c", "d"])]
        jobs.append(make_job(queue="a", run_at=time.time() + 60))
        await broker.enqueue(jobs)
        claims = await broker.claim("w", ["a", "b", "c", "d"], 10, 30)
        assert len(claims) == 4
        outcome = Outcome(job_id=claims[0].job.id, token=claims[0].token, kind=OutcomeKind.COMPLETE)
        assert await broker.settle([outcome]) == [True]
    nodes = server_url("redis_cluster").split("//", 1)[1].split("/")[0].split(",")
    keys: list[bytes] = []
    slots: set[int] = set()
    for node in nodes:
        host, port = node.rsplit(":", 1)
        with redis.Redis(host=host, port=int(port)) as client:
            found = list(client.scan_iter(match=f"*{namespace}*", count=1000))
            keys += found
            slots |= {int(client.cluster("KEYSLOT", k.decode())) for k in found}
    assert len(keys) > 10  # jobs, queues, indexes, unique keys, the schedule, running
    assert all(k.startswith(f"{{{namespace}}}:".encode()) for k in keys), keys
    assert len(slots) == 1


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://127.0.0.1:7000/1", "database 0 only"),
        ("redis+cluster://127.0.0.1,127.0.0.2:7000/", "host:port"),
    ],
)
def test_a_cluster_url_names_nodes_and_database_0(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        create_broker(url, {})
