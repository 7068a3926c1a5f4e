"""Running the bridge: the transport for a broker URL, the result backend, the watcher."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pigeon.app import App
from pigeon.contrib.celery.bridge.core import Bridge, MemoryPending, PendingStore, ResultBackend
from pigeon.errors import ConfigurationError

if TYPE_CHECKING:
    from pigeon.contrib.celery.bridge.amqp_io import AmqpSource
    from pigeon.contrib.celery.bridge.redis_io import RedisSource

log = logging.getLogger("pigeon.celery.bridge")


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower()


async def run_bridge(
    app: App,
    broker_url: str,
    queues: Sequence[str],
    backend_url: str | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Drain Celery's ``queues`` at ``broker_url`` into ``app``'s jobs until ``stop`` (or a signal).

    Raises:
        ConfigurationError: a broker or result backend scheme the bridge does not read.
    """
    if _scheme(broker_url) not in ("redis", "rediss", "amqp", "amqps", "pyamqp"):
        raise ConfigurationError(
            f"celery-bridge reads Celery brokers on redis:// or amqp://, not {_scheme(broker_url)}://"
        )
    if backend_url is not None and _scheme(backend_url) not in ("redis", "rediss"):
        raise ConfigurationError(
            f"celery-bridge writes results to Celery's Redis backend (redis://), not {_scheme(backend_url)}://"
        )
    import redis.asyncio as aioredis

    from pigeon.contrib.celery.bridge.redis_io import RedisPending, RedisResults, RedisSource

    stop = stop or asyncio.Event()
    amqp = _scheme(broker_url) in ("amqp", "amqps", "pyamqp")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (RuntimeError, ValueError):  # not the main thread: the caller owns stop
            break
    store = aioredis.Redis.from_url(backend_url or broker_url) if backend_url or not amqp else None
    backend: ResultBackend | None = None
    if backend_url is not None:
        backend = RedisResults(aioredis.Redis.from_url(backend_url))
    pending: PendingStore
    if store is not None:
        pending = RedisPending(store, list(queues))
    else:
        log.warning("no Redis at hand: chains in flight are forgotten if the bridge restarts")
        pending = MemoryPending()
    bridge = Bridge(app, pending, backend)
    source: RedisSource | AmqpSource
    if amqp:
        from pigeon.contrib.celery.bridge.amqp_io import AmqpSource

        source = AmqpSource(broker_url.replace("pyamqp://", "amqp://", 1), list(queues))
    else:
        assert store is not None
        source = RedisSource(store, list(queues))
    log.info("bridging Celery queues %s from %s into %r", ", ".join(queues), broker_url, app)
    try:
        async with asyncio.TaskGroup() as group:
            watcher = group.create_task(bridge.watch(), name="pigeon-bridge-watch")
            await source.run(bridge, stop)
            watcher.cancel()
    except ExceptionGroup as failed:  # the transport's own error, not a group of one
        raise failed.exceptions[0] from None
    finally:
        if store is not None:
            await store.aclose()
        if backend is not None:
            await backend.aclose()
        await app.aclose()
