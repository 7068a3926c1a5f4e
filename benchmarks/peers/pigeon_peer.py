"""pigeon's driver: the PostgreSQL or Redis broker named by ``$BENCH_URL``; run with pigeon's own venv."""

from __future__ import annotations

import os
import sys
from typing import Any

from benchcommon import Peer, Worker, hit, main
from loadcommon import stamped as stamp_start

from pigeon import App

URL = os.environ.get("BENCH_URL", "memory://")
SYNC_SENDS = os.environ.get("BENCH_SEND") == "sync"
app = App(URL)


@app.task
async def noop() -> None:
    hit()


@app.task
async def stamped(sent: float) -> None:
    stamp_start(sent)


# Jobs in flight for the drain (claimed up to 200 a round trip, pigeon's default batch);
# BENCH_PIGEON_CONCURRENCY=default runs the drain at `pigeon worker`'s own default.
DRAIN_CONCURRENCY = os.environ.get("BENCH_PIGEON_CONCURRENCY", "200")


class PigeonPeer(Peer):
    name = "pigeon"

    def setup(self) -> None:
        if URL.startswith("postgres"):
            from pigeon.brokers.base import create_broker

            async def migrate() -> None:
                broker = create_broker(URL, {})
                await broker.migrate()  # type: ignore[attr-defined]

            app.portal_call(migrate())

    def enqueue(self, n: int) -> None:
        noop.send_many([()] * n)

    def send(self) -> Any:
        if SYNC_SENDS:
            # Idle latency as a synchronous caller (a web request) sees it: send() on the
            # driver's thread, with no event loop running there.
            noop.send()
            return None
        return noop.asend()  # awaited on the driver's loop

    def send_sync(self) -> None:
        noop.send()

    async def send_stamped(self, k: int, sent: float) -> None:
        await stamped.asend_many([(sent,)] * k)

    def worker(self, mode: str, n: int) -> Worker:
        argv = [sys.executable, "-m", "pigeon", "worker", "pigeon_peer:app", "-l", "warning"]
        if mode == "drain" and DRAIN_CONCURRENCY != "default":
            return Worker(
                [*argv, "-c", str(DRAIN_CONCURRENCY)], note=f"`pigeon worker -c {DRAIN_CONCURRENCY}`"
            )
        return Worker(argv, note="`pigeon worker` at its defaults (c=32)")

    async def teardown(self) -> None:
        await app.aclose()  # the driver loop's connection, which asend() opened
        app.close()


if __name__ == "__main__":
    main(PigeonPeer())
