"""Dramatiq's driver, run with benchmarks/.envs/dramatiq; ``$BENCH_URL`` is a Redis database of its own."""

from __future__ import annotations

import os
import sys

import dramatiq
from benchcommon import Peer, Worker, hit, main
from dramatiq.brokers.redis import RedisBroker

URL = os.environ.get("BENCH_URL", "redis://")
broker = RedisBroker(url=URL)
dramatiq.set_broker(broker)
THREADS = 8  # dramatiq's default per process


@dramatiq.actor(queue_name="bench", max_retries=0)
def noop() -> None:
    hit()


class DramatiqPeer(Peer):
    name = "dramatiq"

    def enqueue(self, n: int) -> None:
        # No batch enqueue in Dramatiq's Redis broker: one send per job.
        for _ in range(n):
            noop.send()

    def send(self) -> None:
        noop.send()

    def worker(self, mode: str, n: int) -> Worker:
        argv = [
            sys.executable,
            "-m",
            "dramatiq",
            "dramatiq_peer",
            "--processes",
            "1",
            "--threads",
            str(THREADS),
        ]
        return Worker(
            [*argv, "--queues", "bench"],
            note=f"1 process × {THREADS} threads (its default threads); no result backend",
        )


if __name__ == "__main__":
    main(DramatiqPeer())
