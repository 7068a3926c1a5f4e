"""Running the bridge: the transport for a broker URL, the result backend, the watcher."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence

from pigeon.app import App
from pigeon.contrib.celery.bridge.core import Bridge, PendingStore, ResultBackend
from pigeon.errors import ConfigurationError

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
    if _scheme(broker_url) not in ("redis", "rediss"):
        raise ConfigurationError(
            f"celery-bridge reads Celery brokers on redis://, not {broker_url.split(':')[0]}://"
        )
    if backend_url is not None and _scheme(backend_url) not in ("redis", "rediss"):
        raise ConfigurationError(
            f"celery-bridge writes results to Celery's Redis backend (redis://), not {_scheme(backend_url)}://"
        )
    import redis.asyncio as aioredis

    from pigeon.contrib.celery.bridge.redis_io import RedisPending, RedisResults, RedisSource

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (RuntimeError, ValueError):  # not the main thread: the caller owns stop
            break
    broker = aioredis.Redis.from_url(broker_url)
    backend: ResultBackend | None = None
    if backend_url is not None:
        backend = RedisResults(aioredis.Redis.from_url(backend_url))
    pending: PendingStore = RedisPending(broker, list(queues))
    bridge = Bridge(app, pending, backend)
    source = RedisSource(broker, list(queues))
    log.info("bridging Celery queues %s from %s into %r", ", ".join(queues), broker_url, app)
    try:
        async with asyncio.TaskGroup() as group:
            watcher = group.create_task(bridge.watch(), name="pigeon-bridge-watch")
            await source.run(bridge, stop)
            watcher.cancel()
    finally:
        await broker.aclose()
        if backend is not None:
            await backend.aclose()
        await app.aclose()
