"""Celery's driver, run with benchmarks/.envs/celery; ``$BENCH_URL`` is a Redis database of its own."""

from __future__ import annotations

import os
import sys

from benchcommon import Peer, Worker, hit, main
from celery import Celery

URL = os.environ.get("BENCH_URL", "redis://")
POOL = os.environ.get("BENCH_CELERY_POOL", "threads")
CONCURRENCY = 8
app = Celery("celery_peer", broker=URL)
app.conf.task_ignore_result = True
app.conf.worker_prefetch_multiplier = 16
app.conf.broker_connection_retry_on_startup = True


@app.task(name="noop")
def noop() -> None:
    hit()


class CeleryPeer(Peer):
    name = "celery"

    def enqueue(self, n: int) -> None:
        # Celery has no batch enqueue; one apply_async per job on one producer.
        with app.producer_or_acquire() as producer:
            for _ in range(n):
                noop.apply_async(producer=producer)

    def send(self) -> None:
        noop.apply_async()

    def worker(self, mode: str, n: int) -> Worker:
        argv = [sys.executable, "-m", "celery", "-A", "celery_peer", "worker", "-l", "warning", "-P", POOL]
        argv += ["-c", str(CONCURRENCY), "--without-gossip", "--without-mingle", "--without-heartbeat"]
        note = f"-P {POOL} -c {CONCURRENCY}, prefetch ×16, results ignored, no gossip/mingle/heartbeat"
        return Worker(argv, note=note)


if __name__ == "__main__":
    main(CeleryPeer())
