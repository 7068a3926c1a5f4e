"""Celery's driver on RabbitMQ, run with benchmarks/.envs/celery.

``$BENCH_URL`` is the RabbitMQ server (``amqp://…``) and ``$BENCH_QUEUE`` a queue of the run's
own; ``$BENCH_NAP`` (seconds, default 0) makes every job sleep after it starts: the I/O drain;
``$BENCH_CONCURRENCY`` is the worker's thread count (default 8).
"""

from __future__ import annotations

import os
import sys
import time

from benchcommon import Peer, Worker, hit, main
from celery import Celery

URL = os.environ.get("BENCH_URL", "amqp://")
QUEUE = os.environ.get("BENCH_QUEUE", "bench_celery")
NAP = float(os.environ.get("BENCH_NAP") or 0)
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY") or 8)
app = Celery("celery_amqp_peer", broker=URL)
app.conf.task_ignore_result = True
app.conf.task_default_queue = QUEUE
app.conf.worker_prefetch_multiplier = 16
app.conf.broker_connection_retry_on_startup = True


@app.task(name="noop")
def noop() -> None:
    hit()
    if NAP:
        time.sleep(NAP)


class CeleryAmqpPeer(Peer):
    name = "celery"

    def enqueue(self, n: int) -> None:
        # Celery has no batch enqueue; one apply_async per job on one producer.
        with app.producer_or_acquire() as producer:
            for _ in range(n):
                noop.apply_async(producer=producer)

    def send(self) -> None:
        noop.apply_async()

    def worker(self, mode: str, n: int) -> Worker:
        argv = [sys.executable, "-m", "celery", "-A", "celery_amqp_peer", "worker", "-l", "warning"]
        argv += ["-P", "threads", "-c", str(CONCURRENCY), "-Q", QUEUE]
        argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        note = f"-P threads -c {CONCURRENCY}, prefetch ×16, results ignored, no gossip/mingle/heartbeat"
        return Worker(argv, note=note)


if __name__ == "__main__":
    main(CeleryAmqpPeer())
