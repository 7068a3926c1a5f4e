"""taskiq's driver (taskiq-redis), run with benchmarks/.envs/taskiq; ``$BENCH_URL``: its own Redis db."""

from __future__ import annotations

import asyncio
import os
import sys

from benchcommon import Peer, Worker, hit, main
from loadcommon import stamped as stamp_start
from taskiq_redis import ListQueueBroker

URL = os.environ.get("BENCH_URL", "redis://")
DRAIN_TASKS = int(os.environ.get("BENCH_TASKIQ_DRAIN", "100"))
broker = ListQueueBroker(URL)  # no result backend: taskiq's default discards results


@broker.task(task_name="noop")
async def noop() -> None:
    hit()


@broker.task(task_name="stamped")
async def stamped(sent: float) -> None:
    stamp_start(sent)


class TaskiqPeer(Peer):
    name = "taskiq"

    async def setup(self) -> None:
        await broker.startup()

    async def enqueue(self, n: int) -> None:
        # No batch enqueue: 100 concurrent kiq() calls at a time.
        for start in range(0, n, 100):
            await asyncio.gather(*(noop.kiq() for _ in range(min(100, n - start))))

    async def send(self) -> None:
        await noop.kiq()

    async def send_stamped(self, k: int, sent: float) -> None:
        # No batch enqueue; at most 10 concurrent kiq() calls, as more exhausted its
        # connection pool ("Cannot send task to the queue") under load.
        for start in range(0, k, 10):
            await asyncio.gather(*(stamped.kiq(sent) for _ in range(min(10, k - start))))

    def worker(self, mode: str, n: int) -> Worker:
        taskiq = os.path.join(os.path.dirname(sys.executable), "taskiq")
        c = DRAIN_TASKS if mode == "drain" else 100
        argv = [taskiq, "worker", "taskiq_peer:broker", "--workers", "1", "--log-level", "WARNING"]
        return Worker(
            [*argv, "--max-async-tasks", str(c)],
            note=f"ListQueueBroker, 1 worker process, max-async-tasks={c}",
        )

    async def teardown(self) -> None:
        await broker.shutdown()


if __name__ == "__main__":
    main(TaskiqPeer())
