"""The Redis broker's synchronous enqueue: redis-py's blocking client, the same ``enqueue.lua``.

A synchronous ``send()`` runs the script on the caller's thread over a bounded,
blocking connection pool shared by every thread, instead of hopping to an event
loop. Its client is made like the asynchronous one (same retries, timeouts and
client name), and it refuses an evicting server the same way.

On one server (or a Sentinel's master) the ``EVALSHA`` is written to the wire by
this module: the constant head (the script's digest, the slot key, the prefix) is
encoded once, each argument is framed with one format, and the command goes out on
a pooled connection under the connection's own retry policy, as redis-py's
``execute_command`` would send it. redis-py's generic packing (an encoder call and
type checks per argument) and its per-command bookkeeping cost about three times
the server's time for the script itself. The producer keeps its pool connections
between sends rather than giving them back (at most ``size`` exist, since the
combiner runs that many enqueues at once). A server that lost the script (a restart
without persistence of the script cache, ``SCRIPT FLUSH``) answers ``NOSCRIPT``;
the script is loaded on the same connection and the command sent once more. A
cluster keeps redis-py's own path, which routes by key.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import NoScriptError, ResponseError
from redis.retry import Retry

from pigeon.brokers.redis_connect import SentinelService, client_options, log, refuse_eviction
from pigeon.brokers.redis_data import enqueue_args, script_source
from pigeon.job import Job

CHUNK = 1000
"""Jobs per script call, as the asynchronous enqueue: long scripts block every other client."""


class RedisProducer:
    """Runs ``enqueue.lua`` from any thread; connects on first use, at most ``size`` connections.

    Args:
        server: the server's URL (without ``namespace``), or a cluster's or sentinels'.
        cluster: a cluster's nodes (empty for one server).
        sentinel: the Sentinel service whose master it writes to, if any.
        prefix: the namespace's key prefix; ``slot_key`` names its slot.
        size: the most connections open at once.
    """

    def __init__(
        self,
        server: str,
        cluster: list[tuple[str, int]],
        prefix: str,
        slot_key: str,
        where: str,
        size: int,
        sentinel: SentinelService | None = None,
    ) -> None:
        self._server = server
        self._cluster = cluster
        self._sentinel = sentinel
        self._prefix = prefix
        self._slot_key = slot_key
        self._where = where
        self._size = size
        self._lock = threading.Lock()
        self._client: Any = None  # redis.Redis, or redis.cluster.RedisCluster
        self._source = script_source("enqueue")
        self._sha = hashlib.sha1(self._source.encode()).hexdigest()
        self._head = b"".join(_bulk(v) for v in ("EVALSHA", self._sha, 1, slot_key, prefix))
        self._load = b"*3\r\n" + b"".join(_bulk(v) for v in ("SCRIPT", "LOAD", self._source))
        # Pool connections kept between sends: taking one from the pool and giving it back
        # (its checks, a poll of the socket, its bookkeeping) cost as much as packing the command.
        self._kept: list[Any] = []
        self._taken = 0  # connections taken from the pool and not given back (kept or in use)
        self._returned = threading.Condition()  # waited on only when all ``size`` are in use
        self._pid = os.getpid()

    def _connected(self) -> Any:
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._client is None:
                client = self._new_client()
                try:
                    _check_eviction(client, self._where)
                except BaseException:
                    client.close()
                    raise
                self._client = client
            return self._client

    def _new_client(self) -> Any:
        options = client_options(
            Retry(ExponentialBackoff(cap=1.0, base=0.02), 8), f"pigeon:{self._prefix[:-1]}"
        )
        if self._sentinel is not None:
            return _sentinel_master(self._sentinel, urlsplit(self._server), options)
        if not self._cluster:
            pool = redis.BlockingConnectionPool.from_url(
                self._server, max_connections=self._size, timeout=30.0, **options
            )
            return redis.Redis(connection_pool=pool)
        from redis.cluster import ClusterNode, RedisCluster

        parts = urlsplit(self._server)
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in self._cluster],  # type: ignore[no-untyped-call]
            username=parts.username,
            password=parts.password,
            ssl=parts.scheme.startswith("rediss"),
            max_connections=self._size,
            **options,
        )

    def enqueue(self, jobs: Sequence[Job]) -> list[str]:
        """Store jobs; the ids standing for them. Raises what redis-py raises."""
        client = self._connected()
        now = time.time()
        ids: list[str] = []
        for chunk in itertools.batched(enqueue_args(jobs, now), CHUNK):
            if isinstance(client, redis.Redis):
                reply = self._evalsha(client, self._command(repr(now), chunk))
            else:  # a cluster: redis-py routes the command to the slot's master
                args = [self._prefix, repr(now), *itertools.chain.from_iterable(chunk)]
                reply = self._cluster_evalsha(client, args)
            ids.extend(i.decode() for i in reply)
        return ids

    def _command(self, now: str, rows: Sequence[list[Any]]) -> bytes:
        """``EVALSHA`` with these rows' arguments, in the protocol's framing."""
        count = 6 + sum(len(row) for row in rows)
        parts = [b"*%d\r\n" % count, self._head, _bulk(now)]
        parts.extend(_bulk(v) for row in rows for v in row)
        return b"".join(parts)

    def _evalsha(self, client: redis.Redis, command: bytes) -> Any:
        conn = self._take(client)
        try:
            try:
                reply = _round_trip(conn, command)
            except NoScriptError:
                _round_trip(conn, self._load)
                reply = _round_trip(conn, command)
        except BaseException:
            self._give_back(client, conn)  # the pool checks it before its next use
            raise
        with self._returned:
            if self._client is client:
                self._kept.append(conn)
                self._returned.notify()
                return reply
        self._give_back(client, conn)  # closed meanwhile
        return reply

    def _take(self, client: redis.Redis) -> Any:
        with self._returned:
            if self._pid != os.getpid():  # a forked child: the kept sockets are its parent's
                self._kept, self._taken, self._pid = [], 0, os.getpid()
            while not self._kept and self._taken >= self._size:
                self._returned.wait()
            if self._kept:
                return self._kept.pop()
            self._taken += 1
        try:
            return client.connection_pool.get_connection()
        except BaseException:
            self._give_back(client, None)
            raise

    def _give_back(self, client: redis.Redis, conn: Any) -> None:
        if conn is not None:
            client.connection_pool.release(conn)
        with self._returned:
            self._taken -= 1
            self._returned.notify()

    def _cluster_evalsha(self, client: Any, args: list[Any]) -> Any:
        try:
            return client.evalsha(self._sha, 1, self._slot_key, *args)
        except NoScriptError:
            client.script_load(self._source)
            return client.evalsha(self._sha, 1, self._slot_key, *args)

    def close(self) -> None:
        """Close the connections (the next enqueue opens new ones)."""
        with self._lock, self._returned:
            client, self._client = self._client, None
            self._taken -= len(self._kept)
            self._kept = []
            self._returned.notify_all()
        if client is not None:
            client.close()
            for sentinel in getattr(client, "sentinels", ()):
                sentinel.close()


def _bulk(value: object) -> bytes:
    """One argument as a bulk string (text in UTF-8, integers in decimal, bytes as they are)."""
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str):
        data = value.encode()
    elif isinstance(value, int):
        data = b"%d" % value
    else:
        raise TypeError(f"cannot send {type(value).__name__} as a script argument")
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _round_trip(conn: Any, command: bytes) -> Any:
    """Send a packed command and read its reply, retried as redis-py's own commands are.

    As ``Redis.execute_command``: a connection error or a timeout disconnects and tries
    again under the connection's retry policy (an idle connection the server closed
    fails here, once; the enqueue is safe to repeat: ids are stored once); an error
    reply is raised as redis-py's exception, the reply read in full.
    """

    def send() -> Any:
        conn.send_packed_command([command])
        return conn.read_response()

    return conn.retry.call_with_retry(send, lambda _error: conn.disconnect())


def _sentinel_master(sentinel: SentinelService, parts: SplitResult, options: dict[str, Any]) -> Any:
    """The blocking twin of ``redis_connect._sentinel_master``: each new connection asks for the master."""
    from redis.sentinel import Sentinel, SentinelManagedConnection, SentinelManagedSSLConnection

    plain = parts.scheme.startswith("redis+")
    base = SentinelManagedConnection if plain else SentinelManagedSSLConnection

    class Connection(base):  # type: ignore[misc, valid-type]
        # As the async one: the command's retries are enough, not 8 more per connect.
        def connect(self) -> None:
            self._connect_retry()

    quick = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}
    manager = Sentinel(sentinel.sentinels, sentinel_kwargs=quick)  # type: ignore[no-untyped-call]
    # The combiner runs at most ``size`` enqueues at once, so the pool needs no bound of its own.
    master = manager.master_for(  # type: ignore[no-untyped-call]
        sentinel.service,
        connection_class=Connection,
        db=sentinel.db,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        **options,
    )
    master.sentinels = manager.sentinels  # closed with it
    return master


def _check_eviction(client: Any, where: str) -> None:
    try:
        found = client.config_get("maxmemory-policy")
    except ResponseError as exc:  # CONFIG renamed or disabled, as on some hosted services
        log.warning("cannot read maxmemory-policy (%s); make sure it is noeviction", exc)
        return
    refuse_eviction(found, where)
