"""``redis://host:6379/0`` — Redis as the broker.

Every state change that touches more than one key is a Lua script (in
``pigeon/brokers/lua``), so each is atomic; the key layout is described in
``lib.lua``. A batch of enqueues or settles is one script call per thousand
jobs, pipelined. Idle workers block on a Pub/Sub subscription to the queues'
wake channels, which the scripts publish to whenever a job becomes ready:
unlike markers in a list, a message reaches every idle worker, and a busy
worker reading its own copy takes nothing from the others.

Concurrency limits keep a running count per limit key, changed by the same
scripts that move jobs into and out of RUNNING. A claim that finds a key at
its limit parks the job (still QUEUED) in a per-key set out of the ready
queue, so a backlog of held jobs is read once, not on every claim; each job of
the key that leaves RUNNING puts the first parked one back.

A command cut off by a dropped connection is retried with back-off. If the
server had already run it, a retried claim leaves the first claim's jobs
leased to nobody until the lease expires: delivery stays at-least-once.

The query parameter ``namespace`` (default ``pigeon``) prefixes every key, so
several apps can share one database: ``redis://host:6379/0?namespace=shop``.

Redis Cluster: ``redis+cluster://host1:7000,host2:7001/?namespace=shop`` (any
reachable masters; ``rediss+cluster`` for TLS). The scripts build key names
themselves from the prefix, so on a cluster the prefix is a hash tag,
``{shop}:``: every key of a namespace lives in one hash slot, and every script
runs on the master that owns it. One namespace is therefore served by one
master; several namespaces spread over the cluster. Redis Sentinel:
``redis+sentinel://s1:26379,s2:26379/mymaster/0?namespace=shop`` (see redis_connect.py).

Durability: the at-least-once promise holds only for what Redis keeps. Run
the server with ``appendonly yes`` and ``appendfsync everysec`` (a crash can
lose the last second of enqueues, claims and settles: a lost settle runs a
job again; a lost enqueue is gone) or ``appendfsync always`` (nothing
acknowledged is lost, at the cost of an fsync per write). With RDB snapshots
alone, a crash loses everything since the last snapshot; with no persistence
a restart loses every job. An eviction policy other than ``noeviction`` lets
Redis silently drop jobs under memory pressure, so :meth:`RedisBroker.open`
refuses to start on one.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import os
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any, Self
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pigeon.brokers.base import BrokerBase, Capabilities
from pigeon.brokers.inspection import purged
from pigeon.brokers.redis_connect import SentinelService, check_eviction, cluster_nodes, describe, new_client
from pigeon.brokers.redis_data import (
    FIELDS,
    enqueue_args,
    record,
    script_source,
    settle_args,
    text,
    worker_decoder,
)
from pigeon.brokers.redis_inspect import RedisInspection
from pigeon.brokers.redis_sync import RedisProducer
from pigeon.errors import BrokerConnectionError, BrokerError, ConfigurationError
from pigeon.job import (
    Claim,
    Job,
    JobRecord,
    JobState,
    Outcome,
    QueueStats,
    WorkerInfo,
    stored_claim,
)
from pigeon.transitions import LOST_ERROR, settled

_SCRIPTS = (
    "enqueue",
    "claim",
    "settle",
    "heartbeat",
    "recover",
    "prune",
    "cancel",
    "requeue",
    "purge",
    "delete",
    "find",
    "progress",
    "take",
)
_CHUNK = 1000
"""Jobs per script call: long scripts block every other client of the server."""


class RedisBroker(RedisInspection, BrokerBase):
    """A broker on one Redis server.

    Args:
        url: the server, as redis-py's ``from_url`` reads it (without ``namespace``).
        namespace: the prefix of every key.
        retries: reconnection attempts per command, with exponential back-off.
    """

    capabilities = Capabilities()
    sync_connections = 1

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "pigeon",
        retries: int = 8,
        cluster: Sequence[tuple[str, int]] = (),
        sentinel: SentinelService | None = None,
    ) -> None:
        self.url = url
        self._server = url
        self._cluster = list(cluster)
        self._sentinel = sentinel
        # On a cluster the prefix is a hash tag: all of a namespace's keys share one slot.
        self._prefix = f"{{{namespace}}}:" if cluster else f"{namespace}:"
        self._slot_key = f"{self._prefix}seq"  # names the slot a script runs on
        self._retries = retries
        self._client: aioredis.Redis | None = None
        self._leasing: Any = None  # aioredis.Redis, or RedisCluster
        self._scripts: dict[str, Any] = {}
        self._pubsub: PubSub | None = None
        self._subscribed: set[bytes] = set()
        self._seen: defaultdict[bytes, int] = defaultdict(int)
        self._reading = asyncio.Lock()
        self._turn = asyncio.Event()
        self._producer = RedisProducer(
            url, self._cluster, self._prefix, self._slot_key, self._where, self.sync_connections, sentinel
        )

    @classmethod
    def from_url(cls, url: str, shared: dict[str, Any]) -> Self:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        namespace = next((v for k, v in query if k == "namespace"), "pigeon")
        if not namespace or any(c in namespace for c in " *?[]{}"):
            raise ConfigurationError(f"{url!r}: namespace must be a non-empty plain word")
        rest = urlencode([(k, v) for k, v in query if k != "namespace"])
        if parts.scheme.endswith("+cluster"):
            broker = cls(url, namespace=namespace, cluster=cluster_nodes(url))
        elif parts.scheme.endswith("+sentinel"):
            broker = cls(url, namespace=namespace, sentinel=SentinelService.from_url(url))
        else:
            broker = cls(urlunsplit(parts._replace(query=rest)), namespace=namespace)
        broker.url = url
        return broker

    # -- plumbing ------------------------------------------------------------

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise BrokerConnectionError(f"Redis ({self._where}): {exc}") from exc
        except (RedisError, RedisClusterException) as exc:
            raise BrokerError(f"Redis ({self._where}): {exc}") from exc
        except (TimeoutError, OSError) as exc:  # our own deadlines, and sockets redis-py did not wrap
            raise BrokerConnectionError(f"Redis ({self._where}): {type(exc).__name__}: {exc}") from exc

    @property
    def _where(self) -> str:
        return describe(self._server, self._cluster, self._sentinel, self._prefix[:-1])

    @property
    def _redis(self) -> Any:  # aioredis.Redis, or RedisCluster: the same commands
        if self._client is None:
            raise BrokerConnectionError("the Redis broker is not open (use `async with broker:`)")
        return self._client

    async def _script(self, name: str, *args: Any, client: Any = None) -> Any:
        return await self._scripts[name](keys=[self._slot_key], args=[self._prefix, *args], client=client)

    async def open(self) -> None:
        """Connect, and check the server will not evict jobs.

        Raises:
            ConfigurationError: the server's ``maxmemory-policy`` is not ``noeviction``.
            BrokerConnectionError: the server cannot be reached.
        """
        client = self._new_client(self._retries)
        try:
            with self._translated():
                if self._cluster:
                    await client.initialize()
                await check_eviction(client, self._where)
        except BaseException:
            await client.aclose()
            raise
        self._client = client
        # A lease is reckoned before the call: a driver's reconnect-and-retry could land it
        # already over, and the job be recovered from a live worker. Calls that set leases go
        # through connections without retries; the worker calls again, with fresh times.
        self._leasing = self._new_client(0)
        self._scripts = {name: client.register_script(script_source(name)) for name in _SCRIPTS}

    def _new_client(self, retries: int) -> Any:
        try:
            name = f"pigeon:{self._prefix[:-1]}"
            return new_client(self._server, self._cluster, retries, name, self._sentinel)
        except ValueError as exc:
            raise ConfigurationError(f"bad Redis URL {self.url!r}: {exc}") from exc

    async def close(self) -> None:
        await self._drop_subscription()
        for client in (self._client, self._leasing):
            if client is not None:
                with contextlib.suppress(RedisError, OSError):
                    await client.aclose()
        self._client = self._leasing = None

    # -- producing -----------------------------------------------------------

    async def enqueue(self, jobs: Sequence[Job]) -> list[str]:
        now = time.time()
        return [i.decode() for i in await self._batched("enqueue", repr(now), enqueue_args(jobs, now))]

    def enqueue_sync(self, jobs: Sequence[Job]) -> list[str]:
        """:meth:`enqueue` from any thread, on blocking connections (``redis_sync.py``).

        Raises:
            ConfigurationError: the server may evict jobs (as :meth:`open`).
            BrokerConnectionError: the server cannot be reached.
        """
        with self._translated():
            return self._producer.enqueue(jobs)

    def close_sync(self) -> None:
        """Close the connections :meth:`enqueue_sync` opened."""
        self._producer.close()

    async def _batched(self, name: str, now: str, rows: Sequence[list[Any]]) -> list[Any]:
        """Run a script over rows in chunks: one call, or one pipeline of calls when there are many."""
        chunks = [[now, *itertools.chain.from_iterable(c)] for c in itertools.batched(rows, _CHUNK)]
        if not chunks:
            return []
        with self._translated():
            return [x for reply in await self._script_each(name, chunks) for x in reply]

    async def _script_each(self, name: str, calls: Sequence[Sequence[Any]]) -> list[Any]:
        """One reply per call of a script: pipelined when there are several."""
        if len(calls) == 1 or self._cluster:
            # A pipeline with scripts costs an extra SCRIPT EXISTS round trip, and a
            # cluster client refuses scripts in a pipeline: one call after another.
            return [await self._script(name, *args) for args in calls]
        pipe = self._redis.pipeline(transaction=False)
        for args in calls:
            await self._script(name, *args, client=pipe)
        return list(await pipe.execute())

    # -- consuming -----------------------------------------------------------

    async def claim(self, worker_id: str, queues: Sequence[str], limit: int, lease: float) -> list[Claim]:
        if limit <= 0 or not queues:
            return []
        token = os.urandom(8).hex()
        now = time.time()
        with self._translated():
            reply = await self._script(
                "claim", repr(now), token, worker_id, repr(now + lease), limit, *queues, client=self._leasing
            )
        triples = zip(reply[::3], reply[1::3], reply[2::3], strict=True)
        return [stored_claim(jid.decode(), env, token, int(n)) for jid, env, n in triples]

    async def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
        now = time.time()
        rows = [settle_args(settled(o, now)) for o in outcomes]
        return [bool(n) for n in await self._batched("settle", repr(now), rows)]

    async def progress(self, job_id: str, token: str, data: bytes) -> bool:
        with self._translated():
            return bool(await self._script("progress", job_id, token, data))

    async def take(self, key: str, rate: float, burst: float) -> float:
        with self._translated():
            wait = await self._script("take", repr(time.time()), key, repr(float(rate)), repr(float(burst)))
        return float(wait)

    async def heartbeat(
        self, worker: WorkerInfo, leases: Sequence[tuple[str, str]], lease: float
    ) -> list[str]:
        now = time.time()
        info = msgspec.json.encode(worker)
        flat = [x for pair in leases for x in pair]
        with self._translated():
            lost = await self._script(
                "heartbeat", repr(now), worker.id, info, repr(now + lease), *flat, client=self._leasing
            )
        return [i.decode() for i in lost]

    async def wait(self, queues: Sequence[str], timeout: float) -> None:
        """Block until a wake channel of ``queues`` fires, a scheduled job falls due, or ``timeout``.

        One subscription serves every concurrent waiter of this broker: whoever
        holds ``_reading`` reads it and counts messages per channel; the others
        watch the counts. A message missed while reconnecting costs at most
        ``timeout``, since the worker claims again after each wait.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        channels = [f"{self._prefix}wake:{q}".encode() for q in queues]
        with self._translated():
            pipe = self._redis.pipeline(transaction=False)
            for q in queues:
                pipe.zrange(f"{self._prefix}sched:{q}", 0, 0, withscores=True)
            heads = await pipe.execute()
            await self._subscription(channels)
        now = time.time()
        due = [score for head in heads for _, score in head if score > now]
        if due:
            deadline = min(deadline, loop.time() + min(due) - now)
        start = [self._seen[c] for c in channels]
        while [self._seen[c] for c in channels] == start:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            if self._reading.locked():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await self._turn.wait()
                continue
            async with self._reading:
                try:
                    await self._read(channels, remaining)
                finally:
                    self._turn.set()
                    self._turn = asyncio.Event()

    async def _read(self, channels: list[bytes], seconds: float) -> None:
        try:
            with self._translated():
                pubsub = await self._subscription(channels)  # another waiter may have dropped it
                async with asyncio.timeout(seconds + 5.0):  # a read that hangs on a dead socket
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=seconds)
                    # Drain what else arrived, so a burst of enqueues does not wake us once per job.
                    for _ in range(64):
                        if msg is not None and msg["type"] == "message":
                            self._seen[msg["channel"]] += 1
                        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0)
                        if msg is None:
                            break
        except BaseException:
            # The connection may be mid-reply; start over with a fresh subscription.
            await self._drop_subscription()
            raise

    async def _subscription(self, channels: list[bytes]) -> PubSub:
        if self._pubsub is None:
            self._pubsub = self._redis.pubsub()
            self._subscribed = set()
        new = [c for c in channels if c not in self._subscribed]
        if new:
            await self._pubsub.subscribe(*new)
            self._subscribed.update(new)
        return self._pubsub

    async def _drop_subscription(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        self._subscribed = set()
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def recover(self, dead_after: float, expires_at: float | None = None) -> int:
        now = time.time()
        expires = "" if expires_at is None else repr(expires_at)
        with self._translated():
            return int(await self._script("recover", repr(now), repr(now - dead_after), LOST_ERROR, expires))

    async def prune(self) -> int:
        total = 0
        with self._translated():
            while True:
                deleted, seen = await self._script("prune", repr(time.time()), _CHUNK)
                total += int(deleted)
                if int(seen) < _CHUNK:
                    return total

    # -- inspecting ----------------------------------------------------------

    async def _records(self, ids: Sequence[bytes | str]) -> list[JobRecord | None]:
        pipe = self._redis.pipeline(transaction=False)
        for job_id in ids:
            key = self._prefix.encode() + b"job:" + (job_id if isinstance(job_id, bytes) else job_id.encode())
            pipe.hmget(key, FIELDS)
        return [record(text(jid), values) for jid, values in zip(ids, await pipe.execute(), strict=True)]

    async def get(self, job_id: str) -> JobRecord | None:
        with self._translated():
            return (await self._records([job_id]))[0]

    async def _queues(self) -> list[str]:
        members = await self._redis.smembers(f"{self._prefix}queues")
        return sorted(q.decode() if isinstance(q, bytes) else q for q in members)

    async def list_jobs(
        self,
        *,
        queue: str | None = None,
        state: JobState | None = None,
        task: str | None = None,
        limit: int = 100,
    ) -> list[JobRecord]:
        if limit <= 0:
            return []
        states = list(JobState) if state is None else [state]
        with self._translated():
            queues = [queue] if queue is not None else await self._queues()
            keys = [f"{self._prefix}idx:{q}:{s.value}" for q in queues for s in states]
            window = limit
            while True:
                # Each index is newest first; merge them, and widen the window while a
                # task filter leaves too few.
                pipe = self._redis.pipeline(transaction=False)
                for key in keys:
                    pipe.zrevrange(key, 0, window - 1, withscores=True)
                heads = await pipe.execute()
                merged = heapq.merge(*heads, key=lambda pair: -pair[1])
                ids = list(dict.fromkeys(job_id for job_id, _ in merged))
                found = [
                    r
                    for r in await self._records(ids)
                    if r is not None
                    and (state is None or r.state is state)
                    and (task is None or r.job.task == task)
                ]
                if len(found) >= limit or all(len(h) < window for h in heads):
                    return found[:limit]
                window *= 4

    async def stats(self) -> list[QueueStats]:
        with self._translated():
            queues = await self._queues()
            pipe = self._redis.pipeline(transaction=False)
            for q in queues:
                for s in JobState:
                    pipe.zcard(f"{self._prefix}idx:{q}:{s.value}")
            counts = await pipe.execute()
        out = []
        for i, q in enumerate(queues):
            per = {s.value: n for s, n in zip(JobState, counts[i * 6 : i * 6 + 6], strict=True) if n}
            if per:
                out.append(QueueStats(q, per))
        return out

    async def cancel(self, job_id: str, expires_at: float) -> bool:
        with self._translated():
            return bool(await self._script("cancel", repr(time.time()), repr(expires_at), job_id))

    async def requeue(self, job_id: str) -> bool:
        with self._translated():
            return bool(await self._script("requeue", repr(time.time()), job_id))

    async def purge(self, *, queue: str | None = None, states: Sequence[JobState] = ()) -> int:
        wanted = [s.value for s in purged(states)]
        total = 0
        with self._translated():
            while True:
                n = int(await self._script("purge", queue or "", _CHUNK, *wanted))
                total += n
                if n < _CHUNK:
                    return total

    async def unregister_worker(self, worker_id: str) -> None:
        with self._translated():
            pipe = self._redis.pipeline(transaction=True)
            pipe.hdel(f"{self._prefix}workers", worker_id)
            pipe.zrem(f"{self._prefix}seen", worker_id)
            await pipe.execute()

    async def workers(self) -> list[WorkerInfo]:
        with self._translated():
            pipe = self._redis.pipeline(transaction=True)
            pipe.hgetall(f"{self._prefix}workers")
            pipe.zrange(f"{self._prefix}seen", 0, -1, withscores=True)
            infos, seen = await pipe.execute()
        last = {wid: score for wid, score in seen}
        return [
            msgspec.structs.replace(worker_decoder.decode(info), last_seen=last.get(wid, 0.0))
            for wid, info in sorted(infos.items())
        ]
