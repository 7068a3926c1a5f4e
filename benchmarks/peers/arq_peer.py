"""arq's driver, run with benchmarks/.envs/arq; ``$BENCH_URL`` is a Redis database of its own."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any, ClassVar

from arq import create_pool
from arq.connections import RedisSettings
from benchcommon import Peer, Worker, hit, main

URL = os.environ.get("BENCH_URL", "redis://")
DRAIN_JOBS = int(os.environ.get("BENCH_ARQ_MAX_JOBS", "100"))


async def noop(ctx: dict[str, Any]) -> None:
    hit()


class WorkerSettings:
    functions: ClassVar = [noop]
    redis_settings = RedisSettings.from_dsn(URL)
    keep_result = 0  # no result kept
    max_jobs = int(os.environ.get("BENCH_ARQ_JOBS", "10"))


class ArqPeer(Peer):
    name = "arq"

    async def setup(self) -> None:
        self.pool = await create_pool(RedisSettings.from_dsn(URL))

    async def enqueue(self, n: int) -> None:
        # arq has no batch enqueue: 100 concurrent enqueue_job calls at a time.
        for start in range(0, n, 100):
            await asyncio.gather(*(self.pool.enqueue_job("noop") for _ in range(min(100, n - start))))

    async def send(self) -> None:
        await self.pool.enqueue_job("noop")

    def worker(self, mode: str, n: int) -> Worker:
        arq = os.path.join(os.path.dirname(sys.executable), "arq")
        jobs = DRAIN_JOBS if mode == "drain" else 10
        note = f"`arq` worker, max_jobs={jobs}, keep_result=0; it polls every 0.5 s (poll_delay, its default)"
        return Worker([arq, "arq_peer.WorkerSettings"], env={"BENCH_ARQ_JOBS": str(jobs)}, note=note)

    async def teardown(self) -> None:
        await self.pool.aclose()


if __name__ == "__main__":
    main(ArqPeer())
