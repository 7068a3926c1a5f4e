"""pgqueuer's driver, run with benchmarks/.envs/pgqueuer; ``$BENCH_URL`` is its own database."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator

import asyncpg
from benchcommon import Peer, Worker, hit, main
from loadcommon import stamped as stamp_start
from pgqueuer import AsyncpgDriver, PgQueuer, Queries
from pgqueuer.models import Job

URL = os.environ.get("BENCH_URL", "")
# Jobs taken per dequeue in the drain; pgqueuer's default is 10.
DRAIN_BATCH = int(os.environ.get("BENCH_PGQUEUER_BATCH", "100"))
# Its max_concurrent_tasks in the drain (at least twice the batch); 0 is its default, no cap.
DRAIN_CONCURRENCY = int(os.environ.get("BENCH_PGQUEUER_CONCURRENCY", "0"))


@contextlib.asynccontextmanager
async def create_pgqueuer() -> AsyncIterator[PgQueuer]:
    """The factory `pgq run` calls in the worker process."""
    conn = await asyncpg.connect(URL)
    pgq = PgQueuer(AsyncpgDriver(conn))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        hit()

    @pgq.entrypoint("stamped")
    async def stamped(job: Job) -> None:
        stamp_start(float(job.payload or b"0"))

    try:
        yield pgq
    finally:
        await conn.close()


class PgqueuerPeer(Peer):
    name = "pgqueuer"

    async def setup(self) -> None:
        self.conn = await asyncpg.connect(URL)
        self.q = Queries(AsyncpgDriver(self.conn))
        if not await self.q.schema_is_installed():
            await self.q.install()

    async def enqueue(self, n: int) -> None:
        await self.q.enqueue(["noop"] * n, [None] * n, [0] * n)

    async def send(self) -> None:
        await self.q.enqueue("noop", None)

    async def send_stamped(self, k: int, sent: float) -> None:
        await self.q.enqueue(["stamped"] * k, [repr(sent).encode()] * k, [0] * k)

    def worker(self, mode: str, n: int) -> Worker:
        # `pgq run` is what its docs start; with this venv's typer its --log-level
        # parsing raises before the worker starts, so the same supervisor runs here.
        batch = DRAIN_BATCH if mode == "drain" else 10
        cap = DRAIN_CONCURRENCY if mode == "drain" else 0
        capped = f", max_concurrent_tasks={cap}" if cap else ""
        note = f"pgqueuer.run(batch_size={batch}{capped}), as `pgq run` does" + (
            "" if mode == "drain" else " (its default)"
        )
        return Worker([sys.executable, __file__, "worker", str(batch), str(cap)], note=note)

    async def pending(self) -> int:
        return int(await self.conn.fetchval("SELECT count(*) FROM pgqueuer WHERE status = 'queued'"))

    async def teardown(self) -> None:
        await self.conn.close()


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    import asyncio
    import logging

    import pgqueuer

    logging.basicConfig(level=logging.WARNING)
    asyncio.run(
        pgqueuer.run(create_pgqueuer, batch_size=int(sys.argv[2]), max_concurrent_tasks=int(sys.argv[3]))
    )
elif __name__ == "__main__":
    main(PgqueuerPeer())
