"""Dramatiq's driver on RabbitMQ, run with benchmarks/.envs/dramatiq.

``$BENCH_URL`` is the RabbitMQ server (``amqp://…``) and ``$BENCH_QUEUE`` a queue of the run's
own; ``$BENCH_NAP`` (seconds, default 0) makes every job sleep after it starts: the I/O drain;
``$BENCH_CONCURRENCY`` is the worker's thread count (default 8, Dramatiq's own).
"""

from __future__ import annotations

import os
import sys
import time

import dramatiq
from benchcommon import Peer, Worker, hit, main
from dramatiq.brokers.rabbitmq import RabbitmqBroker

URL = os.environ.get("BENCH_URL", "amqp://")
QUEUE = os.environ.get("BENCH_QUEUE", "bench_dramatiq")
NAP = float(os.environ.get("BENCH_NAP") or 0)
THREADS = int(os.environ.get("BENCH_CONCURRENCY") or 8)
broker = RabbitmqBroker(url=URL)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def noop() -> None:
    hit()
    if NAP:
        time.sleep(NAP)


class DramatiqAmqpPeer(Peer):
    name = "dramatiq"

    def enqueue(self, n: int) -> None:
        # No batch enqueue: one send per job.
        for _ in range(n):
            noop.send()

    def send(self) -> None:
        noop.send()

    def worker(self, mode: str, n: int) -> Worker:
        argv = [sys.executable, "-m", "dramatiq", "dramatiq_amqp_peer", "--processes", "1"]
        argv += ["--threads", str(THREADS), "--queues", QUEUE]
        return Worker(argv, note=f"1 process × {THREADS} threads; no result backend")

    def teardown(self) -> None:
        broker.close()


if __name__ == "__main__":
    main(DramatiqAmqpPeer())
