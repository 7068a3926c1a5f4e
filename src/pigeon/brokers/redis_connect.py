"""How the Redis broker connects: one server, a Redis Cluster, or a master found by Sentinel.

A ``redis+cluster://h1:p1,h2:p2/`` URL names any reachable masters of a cluster;
the client learns the rest. A ``redis+sentinel://s1:p1,s2:p2/service/db`` URL names
sentinels and the service they watch; every new connection asks them for the master,
and a connection to a master that was demoted is dropped (redis-py's Sentinel pool), so
a failover costs the retries of the commands in flight. Every kind of client answers the
same commands.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple
from urllib.parse import SplitResult, unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ResponseError

from pigeon.brokers.redis_data import text
from pigeon.errors import ConfigurationError

log = logging.getLogger("pigeon.broker.redis")


class SentinelService(NamedTuple):
    """What a ``redis+sentinel://`` URL names: the sentinels, the service, the database."""

    sentinels: list[tuple[str, int]]
    service: str
    db: int

    @classmethod
    def from_url(cls, url: str) -> SentinelService:
        """The sentinels, service name and database of ``redis+sentinel://s1:p1,s2:p2/service/db``.

        Raises:
            ConfigurationError: the URL names no service, or a database that is not a number.
        """
        nodes = _nodes(url, "sentinels")
        service, _, db = urlsplit(url).path.strip("/").partition("/")
        if not service:
            raise ConfigurationError(f"{url!r}: name the service the sentinels watch: /service_name[/db]")
        if db and not db.isdigit():
            raise ConfigurationError(f"{url!r}: the database after the service name must be a number")
        return cls(nodes, unquote(service), int(db or 0))


def describe(server: str, cluster: list[tuple[str, int]], sentinel: SentinelService | None, ns: str) -> str:
    """Where a broker's data lives, for messages."""
    parts = urlsplit(server)
    if cluster:
        return f"cluster {parts.netloc}, namespace {ns!r}"
    if sentinel is not None:
        return f"sentinel service {sentinel.service}/{sentinel.db} via {parts.netloc}, namespace {ns!r}"
    return f"{parts.hostname}:{parts.port or 6379}{parts.path}, namespace {ns!r}"


def _nodes(url: str, what: str) -> list[tuple[str, int]]:
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    nodes: list[tuple[str, int]] = []
    for item in netloc.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ConfigurationError(f"{url!r}: name the {what} as host:port,host:port")
        nodes.append((host.strip("[]"), int(port)))
    return nodes


def cluster_nodes(url: str) -> list[tuple[str, int]]:
    """The ``host:port`` pairs of a ``redis+cluster://h1:p1,h2:p2/`` URL."""
    nodes = _nodes(url, "cluster's nodes")
    if urlsplit(url).path not in ("", "/", "/0"):
        raise ConfigurationError(f"{url!r}: Redis Cluster has database 0 only")
    return nodes


class _SentinelMaster(aioredis.Redis):
    """A client of the master a Sentinel names, which closes its Sentinel connections with it."""

    sentinel: Any = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinel is not None:
            await self.sentinel.aclose()


def new_client(
    server: str,
    cluster: list[tuple[str, int]],
    retries: int,
    name: str,
    sentinel: SentinelService | None = None,
) -> Any:
    """A client with ``retries`` retries: a RedisCluster when ``cluster`` names nodes, the
    master of a Sentinel service when ``sentinel`` is given, else one server.

    Raises:
        ValueError: redis-py cannot read ``server``.
    """
    options = client_options(Retry(ExponentialBackoff(cap=1.0, base=0.02), retries), name)
    parts = urlsplit(server)
    if sentinel is not None:
        return _sentinel_master(sentinel, parts, options)
    if not cluster:
        return aioredis.Redis.from_url(server, **options)
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in cluster],
        username=parts.username,
        password=parts.password,
        ssl=parts.scheme.startswith("rediss"),
        **options,
    )


def _sentinel_master(sentinel: SentinelService, parts: SplitResult, options: dict[str, Any]) -> Any:
    from redis.asyncio.sentinel import Sentinel, SentinelManagedConnection, SentinelManagedSSLConnection

    plain = parts.scheme.startswith("redis+")
    base = SentinelManagedConnection if plain else SentinelManagedSSLConnection

    class Connection(base):  # type: ignore[misc, valid-type]
        # redis-py retries a sentinel connection's connect on top of the command's own
        # retries (8 × 8 attempts: 38 s before an error with no sentinel up); once is enough.
        async def connect(self) -> None:
            await self._connect_retry()

    # The sentinels answer quickly or not at all: a short timeout moves on to the next.
    quick = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}
    manager = Sentinel(sentinel.sentinels, sentinel_kwargs=quick)  # type: ignore[no-untyped-call]
    master = manager.master_for(
        sentinel.service,
        redis_class=_SentinelMaster,
        connection_class=Connection,
        db=sentinel.db,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        **options,
    )
    master.sentinel = manager
    return master


def client_options(retry: Any, name: str) -> dict[str, Any]:
    """What every client of the broker is made with, but its retry policy (async or blocking)."""
    return {
        "retry": retry,
        "socket_connect_timeout": 5.0,
        "socket_timeout": 30.0,
        "socket_keepalive": True,
        "client_name": name,  # CLIENT LIST tells whose connections these are
    }


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
    refuse_eviction(found, where)


def refuse_eviction(found: Any, where: str) -> None:
    """Raise ConfigurationError unless ``CONFIG GET maxmemory-policy``'s reply is ``noeviction``."""
    # redis-py has decoded this reply to str in some versions and not in others
    decoded = {text(k): text(v) for k, v in dict[Any, Any](found).items()}
    policy = decoded.get("maxmemory-policy", "noeviction")
    if policy != "noeviction":
        raise ConfigurationError(
            f"Redis ({where}) has maxmemory-policy {policy!r}: it may evict jobs under memory "
            "pressure. Set `maxmemory-policy noeviction` (with CONFIG SET, and in redis.conf)."
        )
