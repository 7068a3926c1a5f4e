"""Running the bridge: the transport for a broker URL, the result backend, the watcher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pigeon.app import App
from pigeon.contrib.celery.bridge.core import Bridge, MemoryPending, PendingStore, ResultBackend
from pigeon.errors import ConfigurationError

if TYPE_CHECKING:
    from pigeon.contrib.celery.bridge.amqp_io import AmqpSource
    from pigeon.contrib.celery.bridge.redis_io import RedisSource

log = logging.getLogger("pigeon.celery.bridge")

_REDIS = ("redis", "rediss")
_AMQP = ("amqp", "amqps", "pyamqp")


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower()


@dataclass
class _Parts:
    source: RedisSource | AmqpSource
    pending: PendingStore
    backend: ResultBackend | None


@contextlib.asynccontextmanager
async def _parts(broker_url: str, queues: list[str], backend_url: str | None) -> AsyncIterator[_Parts]:
    """The transport, the tracked-jobs store and the result backend for these URLs.

    Tracked jobs live on a Redis at hand (the broker's, else the result backend's), or in
    memory when there is none.
    """
    import redis.asyncio as aioredis

    from pigeon.contrib.celery.bridge.redis_io import RedisPending, RedisResults, RedisSource

    redis_url = broker_url if _scheme(broker_url) in _REDIS else None
    if redis_url is None and backend_url is not None and _scheme(backend_url) in _REDIS:
        redis_url = backend_url
    store: Any = aioredis.Redis.from_url(redis_url) if redis_url is not None else None
    backend: ResultBackend | None = None
    if backend_url is not None and _scheme(backend_url) in _REDIS:
        backend = RedisResults(aioredis.Redis.from_url(backend_url))
    elif backend_url is not None:
        from pigeon.contrib.celery.bridge.celery_backend import CeleryBackendResults

        backend = CeleryBackendResults(backend_url)
    pending: PendingStore
    if store is not None:
        pending = RedisPending(store, queues)
    else:
        log.warning("no Redis at hand: results and chains in flight are forgotten if the bridge restarts")
        pending = MemoryPending()
    source: RedisSource | AmqpSource
    if _scheme(broker_url) in _AMQP:
        from pigeon.contrib.celery.bridge.amqp_io import AmqpSource

        source = AmqpSource(broker_url.replace("pyamqp://", "amqp://", 1), queues)
    else:
        source = RedisSource(store, queues)
    try:
        yield _Parts(source, pending, backend)
    finally:
        if store is not None:
            await store.aclose()
        if backend is not None:
            await backend.aclose()


async def run_bridge(
    app: App,
    broker_url: str,
    queues: Sequence[str],
    backend_url: str | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Drain Celery's ``queues`` at ``broker_url`` into ``app``'s jobs until ``stop`` (or a signal).

    Raises:
        ConfigurationError: a broker scheme the bridge does not read.
    """
    if _scheme(broker_url) not in _REDIS + _AMQP:
        raise ConfigurationError(
            f"celery-bridge reads Celery brokers on redis:// or amqp://, not {_scheme(broker_url)}://"
        )
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (RuntimeError, ValueError):  # not the main thread: the caller owns stop
            break
    try:
        async with _parts(broker_url, list(queues), backend_url) as parts:
            bridge = Bridge(app, parts.pending, parts.backend)
            log.info("bridging Celery queues %s from %s into %r", ", ".join(queues), broker_url, app)
            async with asyncio.TaskGroup() as group:
                watcher = group.create_task(bridge.watch(), name="pigeon-bridge-watch")
                await parts.source.run(bridge, stop)
                watcher.cancel()
    except ExceptionGroup as failed:  # the transport's own error, not a group of one
        raise failed.exceptions[0] from None
    finally:
        await app.aclose()
