"""A tour of pigeon on the embedded default: one SQLite file, the worker in this process.

Run it with ``pigeon demo --tour``. Every feature shown is the real thing: the
jobs go through the SQLite file, a worker thread claims and runs them.
"""

from __future__ import annotations

import asyncio
import hashlib
import time

from rich.console import Console
from rich.table import Table

from pigeon import App, JobContext, JobFailed, Retry

console = Console()
app = App("sqlite:///pigeon-demo.db")


@app.task
async def fetch(url: str) -> int:
    """I/O-bound: runs on the worker's event loop, hundreds at once."""
    await asyncio.sleep(0.05)
    return len(url)


@app.task
def resize(path: str, width: int) -> str:
    """Blocking code: runs in the worker's thread pool."""
    time.sleep(0.01)
    return f"{path}@{width}px"


@app.task(executor="process")
def crunch(n: int) -> str:
    """CPU-bound: runs in a process pool, past the GIL."""
    digest = b""
    for _ in range(n):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()[:16]


@app.task(max_attempts=3)
async def flaky(ctx: JobContext) -> str:
    """Asks to be retried until its third attempt."""
    if ctx.attempt < 3:
        raise Retry(delay=0.05, reason="the upstream said 503")
    return f"succeeded on attempt {ctx.attempt}"


@app.task(max_attempts=2)
def broken(order_id: int) -> None:
    raise ValueError(f"order {order_id} has no lines")


def main() -> None:
    console.rule("[bold]pigeon — a tour on one SQLite file (pigeon-demo.db), no server")
    started = time.perf_counter()
    with app.run_worker_in_thread(concurrency=200, poll=0.05):
        rows = _run_tour()
    app.close()
    table = Table(title=f"what happened ({time.perf_counter() - started:.2f} s)")
    table.add_column("feature")
    table.add_column("result")
    for feature, result in rows:
        table.add_row(feature, result)
    console.print(table)
    console.print("look inside: [bold]pigeon status sqlite:///pigeon-demo.db[/]")


def _run_tour() -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    t0 = time.perf_counter()
    handles = fetch.send_many([(f"https://example.com/{i}",) for i in range(200)])
    total = sum(h.result(timeout=30) for h in handles)
    rows.append(("200 async fetches (50 ms each)", f"{total} bytes in {time.perf_counter() - t0:.2f} s"))
    rows.append(("sync task in a thread", resize.send("cat.png", 300).result(timeout=10)))
    rows.append(("CPU task in a process", crunch.send(200_000).result(timeout=60)))
    rows.append(("Retry(delay=…)", flaky.send().result(timeout=10)))
    try:
        broken.send(42).result(timeout=10)
    except JobFailed as exc:
        rows.append(("a failing task → JobFailed", f"{exc.error_type}: {exc.error_message}"))
    first = resize.options(unique_key="img-42").send("a.png", 100)
    second = resize.options(unique_key="img-42").send("a.png", 100)
    rows.append(("unique keys", "second send returned the first job" if first == second else "two jobs!"))
    t0 = time.perf_counter()
    resize.options(delay=0.3).send("later.png", 10).result(timeout=10)
    rows.append(("delay=0.3", f"ran after {time.perf_counter() - t0:.2f} s"))
    rows.append(("look a job up by id", f"app.job({first.id[:8]}…).status → {app.job(first.id).status}"))
    return rows


if __name__ == "__main__":
    main()
