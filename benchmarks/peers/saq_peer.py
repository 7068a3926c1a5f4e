"""SAQ's driver, run with benchmarks/.envs/saq; ``$BENCH_URL`` is a Redis database of its own."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from benchcommon import Peer, Worker, hit, main
from saq import Queue

URL = os.environ.get("BENCH_URL", "redis://")
DRAIN_CONCURRENCY = int(os.environ.get("BENCH_SAQ_DRAIN", "100"))
queue = Queue.from_url(URL)


async def noop(ctx: dict[str, Any]) -> None:
    hit()


settings = {
    "queue": queue,
    "functions": [noop],
    "concurrency": int(os.environ.get("BENCH_SAQ_CONCURRENCY", "10")),
}


class SaqPeer(Peer):
    name = "saq"

    async def setup(self) -> None:
        await queue.connect()

    async def enqueue(self, n: int) -> None:
        # No batch enqueue: 100 concurrent enqueue calls at a time.
        for start in range(0, n, 100):
            await asyncio.gather(*(queue.enqueue("noop") for _ in range(min(100, n - start))))

    async def send(self) -> None:
        await queue.enqueue("noop")

    def worker(self, mode: str, n: int) -> Worker:
        saq = os.path.join(os.path.dirname(sys.executable), "saq")
        c = DRAIN_CONCURRENCY if mode == "drain" else 10
        return Worker(
            [saq, "saq_peer.settings"],
            env={"BENCH_SAQ_CONCURRENCY": str(c)},
            note=f"`saq` worker, concurrency={c}",
        )

    async def teardown(self) -> None:
        await queue.disconnect()


if __name__ == "__main__":
    main(SaqPeer())
