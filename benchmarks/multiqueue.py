"""Claims over one and two queues on a deep SQLite store, and a two-queue worker's drain.

    .venv/bin/python benchmarks/multiqueue.py [--jobs 1000000] [--store PATH]
        [--backlog 100000] [--tail 20000]

First, a store of ``jobs`` jobs (``benchmarks/dashboard.py``'s seed: two queues, a tenth
claimed and settled; kept at ``--store`` when given, and reused if it exists) is claimed
from 10 at a time, six times over one queue and six over both; the median of the last five
is printed. Then one in-process burst worker of two queues (``-c 200``) drains a fresh store
of ``backlog`` jobs, half in each queue, and its rate over the first ``tail`` jobs is printed.
A claim over two queues should cost about two claims of one. Prints figures; never asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from benchmarks.backlog import burst  # noqa: E402
from benchmarks.dashboard import seed  # noqa: E402
from pigeon import App  # noqa: E402
from pigeon.brokers.base import create_broker  # noqa: E402


async def claims(url: str) -> None:
    broker = create_broker(url, {})
    async with broker:
        for queues in (("default",), ("default", "mail")):
            times = []
            for _ in range(6):
                began = time.perf_counter()
                await broker.claim("bench", queues, 10, 600)
                times.append((time.perf_counter() - began) * 1000)
            each = " ".join(f"{t:.2f}" for t in times)
            median = statistics.median(times[1:])
            print(f"claim of 10 over {len(queues)} queue(s): median {median:,.2f} ms ({each})")


def drain(backlog: int, tail: int, limit: float = 120) -> None:
    with tempfile.TemporaryDirectory(prefix="pigeon-multiqueue-") as tmp:
        app = App(f"sqlite:///{tmp}/drain.db")
        done = [0]

        @app.task(name="bench.noop")
        async def noop() -> None:
            done[0] += 1
            if done[0] == tail:
                worker.stop()

        for queue in ("default", "other"):
            for _ in range(0, backlog // 2, 5000):
                noop.options(queue=queue).send_many([()] * 5000)
        worker = app.make_worker(burst=True, concurrency=200, batch=200, queues=("default", "other"))

        began = time.perf_counter()
        asyncio.run(burst(app, worker, limit))
        took = time.perf_counter() - began
        app.close()
        rate = done[0] / took
        print(f"two-queue worker, {backlog:,} queued: {done[0]:,} in {took:.1f} s, {rate:,.0f} jobs/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--store", type=Path, help="the deep store's file, kept (and reused if it exists)")
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--tail", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pigeon-multiqueue-") as tmp:
        path = args.store or Path(tmp) / "deep.db"
        url = f"sqlite:///{path}"
        if not path.exists():
            took = asyncio.run(seed(url, args.jobs, min(args.jobs // 10, 100_000)))
            print(f"seeded {args.jobs:,} jobs in {took:.0f} s")
        print(f"load {os.getloadavg()[0]:.1f}")
        asyncio.run(claims(url))
    drain(args.backlog, args.tail)


if __name__ == "__main__":
    main()
