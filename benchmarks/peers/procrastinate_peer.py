"""Procrastinate's driver, run with benchmarks/.envs/procrastinate; ``$BENCH_URL`` is its own database."""

from __future__ import annotations

import os
import sys

import procrastinate
from benchcommon import Peer, Worker, hit, main

URL = os.environ.get("BENCH_URL", "")
app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=URL))

# Procrastinate's worker runs one job at a time by default. Here 10 concurrent
# jobs drained no-ops no faster (about 490/s against 520/s), so the drain keeps 1.
DRAIN_CONCURRENCY = int(os.environ.get("BENCH_PROCRASTINATE_CONCURRENCY", "1"))


@app.task(name="noop")
async def noop() -> None:
    hit()


class ProcrastinatePeer(Peer):
    name = "procrastinate"

    async def setup(self) -> None:
        await app.open_async()
        await app.schema_manager.apply_schema_async()

    async def enqueue(self, n: int) -> None:
        await noop.batch_defer_async(*([{}] * n))

    async def send(self) -> None:
        await noop.defer_async()

    def worker(self, mode: str, n: int) -> Worker:
        c = DRAIN_CONCURRENCY if mode == "drain" else 1
        # `procrastinate worker`; the app is imported as procrastinate_peer, not __main__.
        note = f"worker concurrency={c}; LISTEN/NOTIFY on; jobs kept (delete_jobs=never, its default)"
        argv = [
            sys.executable,
            "-m",
            "procrastinate",
            "--app=procrastinate_peer.app",
            "--log-level=warning",
            "worker",
        ]
        return Worker([*argv, f"--concurrency={c}"], note=note)

    async def pending(self) -> int:
        async with app.connector.pool.connection() as conn:  # type: ignore[attr-defined]
            cur = await conn.execute("SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo'")
            row = await cur.fetchone()
            return int(row[0])

    async def teardown(self) -> None:
        await app.close_async()


if __name__ == "__main__":
    main(ProcrastinatePeer())
