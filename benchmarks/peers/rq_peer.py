"""RQ's driver, run with benchmarks/.envs/rq; ``$BENCH_URL`` is a Redis database of its own."""

from __future__ import annotations

import os
import sys

from benchcommon import Peer, Worker, hit, main
from redis import Redis
from rq import Queue

URL = os.environ.get("BENCH_URL", "redis://")
QUEUE = "bench"
NOOP = "rq_peer.noop"  # by name: the driver runs as __main__, which RQ refuses


def noop() -> None:
    hit()


class RqPeer(Peer):
    name = "rq"

    def setup(self) -> None:
        self.queue = Queue(QUEUE, connection=Redis.from_url(URL))

    def enqueue(self, n: int) -> None:
        # result_ttl=0: RQ keeps no result; enqueue_many sends one pipeline per 1,000.
        for start in range(0, n, 1000):
            with self.queue.connection.pipeline() as pipe:
                jobs = [Queue.prepare_data(NOOP, result_ttl=0) for _ in range(min(1000, n - start))]
                self.queue.enqueue_many(jobs, pipeline=pipe)
                pipe.execute()

    def send(self) -> None:
        self.queue.enqueue(NOOP, result_ttl=0)

    def send_sync(self) -> None:
        self.send()

    def worker(self, mode: str, n: int) -> Worker:
        rq = os.path.join(os.path.dirname(sys.executable), "rq")
        argv = [rq, "worker", "-u", URL, "-w", "rq.worker.SimpleWorker", "--logging_level", "WARNING", QUEUE]
        return Worker(
            argv,
            note="SimpleWorker (jobs in the worker process; RQ's default forks one per job); result_ttl=0",
        )

    def pending(self) -> int:
        return len(self.queue)


if __name__ == "__main__":
    main(RqPeer())
