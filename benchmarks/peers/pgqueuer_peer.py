"""pgqueuer's driver, run with benchmarks/.envs/pgqueuer; ``$BENCH_URL`` is its own database."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator

import asyncpg
from benchcommon import Peer, Worker, hit, main
from pgqueuer import AsyncpgDriver, PgQueuer, Queries
from pgqueuer.models import Job

URL = os.environ.get("BENCH_URL", "")
# Jobs taken per dequeue in the drain; pgqueuer's default is 10.
DRAIN_BATCH = int(os.environ.get("BENCH_PGQUEUER_BATCH", "100"))


@contextlib.asynccontextmanager
async def create_pgqueuer() -> AsyncIterator[PgQueuer]:
    """The factory `pgq run` calls in the worker process."""
    conn = await asyncpg.connect(URL)
    pgq = PgQueuer(AsyncpgDriver(conn))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        hit()

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

    def worker(self, mode: str, n: int) -> Worker:
        # `pgq run` is what its docs start; with this venv's typer its --log-level
        # parsing raises before the worker starts, so the same supervisor runs here.
        batch = DRAIN_BATCH if mode == "drain" else 10
        note = f"pgqueuer.run(batch_size={batch}), as `pgq run` does" + (
            "" if mode == "drain" else " (its default)"
        )
        return Worker([sys.executable, __file__, "worker", str(batch)], note=note)

    async def pending(self) -> int:
        return int(await self.conn.fetchval("SELECT count(*) FROM pgqueuer WHERE status = 'queued'"))

    async def teardown(self) -> None:
        await self.conn.close()


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    import asyncio
    import logging

    import pgqueuer

    logging.basicConfig(level=logging.WARNING)
    asyncio.run(pgqueuer.run(create_pgqueuer, batch_size=int(sys.argv[2])))
elif __name__ == "__main__":
    main(PgqueuerPeer())
