"""pigeon's driver on RabbitMQ, run with pigeon's own venv.

``$BENCH_URL`` is ``amqp://…?namespace=…&store=…`` (RabbitMQ carries the jobs, the store keeps
their record); ``$BENCH_NAP`` (seconds, default 0) makes every job sleep after it starts: the
I/O drain.
"""

from __future__ import annotations

import asyncio
import os
import sys

from benchcommon import Peer, Worker, hit, main

from pigeon import App

URL = os.environ.get("BENCH_URL", "memory://")
NAP = float(os.environ.get("BENCH_NAP") or 0)
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY") or 200)
app = App(URL)


@app.task
async def noop() -> None:
    hit()
    if NAP:
        await asyncio.sleep(NAP)


class PigeonAmqpPeer(Peer):
    name = "pigeon"

    async def setup(self) -> None:
        await (await app.connection()).migrate()  # the store's schema

    async def enqueue(self, n: int) -> None:
        await noop.asend_many([()] * n)

    async def send(self) -> None:
        await noop.asend()

    def worker(self, mode: str, n: int) -> Worker:
        argv = [sys.executable, "-m", "pigeon", "worker", "pigeon_amqp_peer:app", "-l", "warning"]
        if mode == "drain":
            return Worker([*argv, "-c", str(CONCURRENCY)], note=f"`pigeon worker -c {CONCURRENCY}`")
        return Worker(argv, note="`pigeon worker` at its defaults (c=32)")

    async def teardown(self) -> None:
        await app.aclose()


if __name__ == "__main__":
    main(PigeonAmqpPeer())
