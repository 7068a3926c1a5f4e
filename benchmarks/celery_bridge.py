"""The Celery bridge's drain rate: N messages sent by the real Celery, stored as pigeon jobs.

    scripts/with-servers .venv/bin/python -m benchmarks.celery_bridge [N]

Needs the celery-tests extra and the Redis of scripts/with-servers; no pigeon worker runs,
so this is the bridge alone (parse, store, acknowledge) into a SQLite app.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import uuid

import celery
import redis

from pigeon.contrib.celery.bridge.run import run_bridge


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    url = os.environ["PIGEON_TEST_REDIS_URL"]
    queue = f"bench_{uuid.uuid4().hex[:8]}"
    producer = celery.Celery("bench", broker=url)
    producer.conf.update(task_default_queue=queue, task_serializer="json")
    with producer.connection_for_write() as conn:
        for i in range(n):
            producer.send_task("proj.add", (i, i), connection=conn)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PIGEON_URL"] = f"sqlite:///{tmp}/jobs.db"
        from tests.integration.celery_bridge_app import app

        app.migrate()
        client = redis.Redis.from_url(url)

        async def drain() -> float:
            stop = asyncio.Event()
            started = time.perf_counter()
            async with asyncio.TaskGroup() as group:
                group.create_task(run_bridge(app, url, [queue], None, stop))
                while True:  # the queue and the bridge's processing list both empty: all stored
                    if not (client.llen(queue) or client.llen(f"pigeon.bridge.processing.{queue}")):
                        break
                    await asyncio.sleep(0.01)
                took = time.perf_counter() - started
                stop.set()
            return took

        took = asyncio.run(drain())
        client.close()
        app.close()
    print(f"celery-bridge, Redis → SQLite: {n} messages in {took:.2f} s, {n / took:,.0f} messages/s")


if __name__ == "__main__":
    main()
