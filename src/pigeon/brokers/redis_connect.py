"""How the Redis broker connects: one server, or a Redis Cluster.

A ``redis+cluster://h1:p1,h2:p2/`` URL names any reachable masters of a cluster;
the client learns the rest. Both kinds of client answer the same commands.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ResponseError

from pigeon.brokers.redis_data import text
from pigeon.errors import ConfigurationError

log = logging.getLogger("pigeon.broker.redis")


def cluster_nodes(url: str) -> list[tuple[str, int]]:
    """The ``host:port`` pairs of a ``redis+cluster://h1:p1,h2:p2/`` URL."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    nodes: list[tuple[str, int]] = []
    for item in netloc.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ConfigurationError(f"{url!r}: name the cluster's nodes as host:port,host:port")
        nodes.append((host.strip("[]"), int(port)))
    if parts.path not in ("", "/", "/0"):
        raise ConfigurationError(f"{url!r}: Redis Cluster has database 0 only")
    return nodes


def new_client(server: str, cluster: list[tuple[str, int]], retries: int, name: str) -> Any:
    """A client with ``retries`` retries: a RedisCluster when ``cluster`` names nodes.

    Raises:
        ValueError: redis-py cannot read ``server``.
    """
    options: dict[str, Any] = {
        "retry": Retry(ExponentialBackoff(cap=1.0, base=0.02), retries),
        "socket_connect_timeout": 5.0,
        "socket_timeout": 30.0,
        "socket_keepalive": True,
        "client_name": name,  # CLIENT LIST tells whose connections these are
    }
    if not cluster:
        return aioredis.Redis.from_url(server, **options)
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    parts = urlsplit(server)
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in cluster],
        username=parts.username,
        password=parts.password,
        ssl=parts.scheme.startswith("rediss"),
        **options,
    )


async def check_eviction(client: Any, where: str) -> None:
    """Refuse a server whose ``maxmemory-policy`` may evict jobs.

    Raises:
        ConfigurationError: the policy is not ``noeviction``.
    """
    try:
        found = await client.config_get("maxmemory-policy")
    except ResponseError as exc:  # CONFIG renamed or disabled, as on some hosted services
        log.warning("cannot read maxmemory-policy (%s); make sure it is noeviction", exc)
        return
    # redis-py has decoded this reply to str in some versions and not in others
    decoded = {text(k): text(v) for k, v in dict[Any, Any](found).items()}
    policy = decoded.get("maxmemory-policy", "noeviction")
    if policy != "noeviction":
        raise ConfigurationError(
            f"Redis ({where}) has maxmemory-policy {policy!r}: it may evict jobs under memory "
            "pressure. Set `maxmemory-policy noeviction` (with CONFIG SET, and in redis.conf)."
        )
