"""Drain rate with a backlog: the last jobs of a large backlog against a small backlog.

    .venv/bin/python benchmarks/backlog.py [--backlog N] [--tail N] [--only sqlite|postgres|redis]

For each broker, in one run: a fresh store gets ``tail`` no-op jobs, drained by one
in-process burst worker (``-c 200``); then another fresh store gets ``backlog`` jobs,
drained the same way, and the rate over its last ``tail`` jobs is taken. Results are
retained as by default (a day) and the pruner runs (every 5 s here, so it does run).
A queue that stays flat as its table grows gives a ratio near 1.

The rates are timed inside the worker: each job stamps the time it starts, and a
rate runs from the start of job ``k`` to the start of job ``k + tail``.
The sizes default to ``PIGEON_BENCH_BACKLOG`` (1,000,000) and ``PIGEON_BENCH_TAIL`` (100,000).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pigeon import App  # noqa: E402
from pigeon.worker.loop import Worker  # noqa: E402

CONCURRENCY = 200
FILL_BATCH = 10_000
PRUNE_EVERY = 5.0


@dataclass
class Stamps:
    """When chosen jobs started, counted in the order they start."""

    marks: dict[int, float]
    count: int = 0

    def hit(self) -> None:
        self.count += 1
        if self.count in self.marks:
            self.marks[self.count] = time.perf_counter()


@dataclass
class Drain:
    jobs: int
    tail_rate: float  # jobs/s over the last ``tail`` jobs
    fill_rate: float  # jobs/s to enqueue them
    seconds: float
    rss_growth: float  # MB the process grew by over the drain (the worker's share of it)
    stats: str = ""  # broker-side state after the drain, where there is any to tell


def drain(url: str, n: int, tail: int, limit: float, after: Callable[[App], str] | None = None) -> Drain:
    """Fill ``n`` jobs, drain them with one burst worker, and time the last ``tail``."""
    app = App(url)
    stamps = Stamps({n - tail + 1: 0.0, n: 0.0})

    @app.task(name="backlog.noop")
    async def noop() -> None:
        stamps.hit()

    try:
        begin = time.perf_counter()
        for start in range(0, n, FILL_BATCH):
            noop.send_many([()] * min(FILL_BATCH, n - start))
        fill = n / (time.perf_counter() - begin)
        worker = app.make_worker(
            burst=True, concurrency=CONCURRENCY, batch=CONCURRENCY, prune_every=PRUNE_EVERY
        )

        rss = _rss_mb()
        began = time.perf_counter()
        asyncio.run(burst(app, worker, limit))
        seconds = time.perf_counter() - began
        growth = _rss_mb() - rss
        if stamps.count < n:
            raise RuntimeError(f"drained {stamps.count:,} of {n:,} jobs within {limit:.0f} s")
        first, last = stamps.marks[n - tail + 1], stamps.marks[n]
        rate = (tail - 1) / (last - first)
        stats = after(app) if after is not None else ""
        return Drain(n, rate, fill, seconds, growth, stats)
    finally:
        app.close()


async def burst(app: App, worker: Worker, limit: float) -> None:
    """Run a burst worker, stopped hard after ``limit`` seconds, then close the app."""
    timer = asyncio.get_running_loop().call_later(limit, lambda: worker.stop(hard=True))
    try:
        await worker.run(install_signals=False)
    finally:
        timer.cancel()
        await app.aclose()


def _rss_mb() -> float:
    """This process's resident memory now (Linux), in MB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


# -- where each broker's store lives --------------------------------------------


@contextmanager
def sqlite_place() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="pigeon-backlog-") as tmp:
        yield f"sqlite:///{tmp}/{uuid.uuid4().hex}.db"


@contextmanager
def postgres_place(base: str) -> Iterator[str]:
    import psycopg

    namespace = f"backlog_{uuid.uuid4().hex[:8]}"
    sep = "&" if "?" in base else "?"
    url = f"{base}{sep}namespace={namespace}"
    from pigeon.brokers.postgres import PostgresBroker

    asyncio.run(PostgresBroker.from_url(url, {}).migrate())
    try:
        yield url
    finally:
        with psycopg.connect(base.split("?")[0], autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {namespace} CASCADE")  # type: ignore[arg-type]


@contextmanager
def redis_place(base: str) -> Iterator[str]:
    import redis

    namespace = f"backlog_{uuid.uuid4().hex[:8]}"
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}namespace={namespace}"
    finally:
        client = redis.Redis.from_url(base)
        for key in client.scan_iter(match=f"*{namespace}*", count=10_000):
            client.unlink(key)
        client.close()


def postgres_table_stats(app: App) -> str:
    """Dead tuples and HOT updates of the jobs table, and its index sizes, after a drain."""
    import psycopg

    url = app.url or ""
    namespace = url.split("namespace=")[1].split("&")[0]
    with psycopg.connect(url.split("?")[0], autocommit=True) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        row = conn.execute(
            "SELECT n_live_tup, n_dead_tup, n_tup_upd, n_tup_hot_upd, autovacuum_count,"
            " pg_relation_size(relid), pg_indexes_size(relid)"
            " FROM pg_stat_user_tables WHERE schemaname = %s AND relname = 'jobs'",
            [namespace],
        ).fetchone()
        # What a claim on the drained queue reads: index pages of entries gone dead since
        # the last VACUUM, stepped over one by one.
        plan = conn.execute(
            f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT id FROM {namespace}.jobs"  # type: ignore[arg-type]
            " WHERE state = 'queued' AND queue = 'default' ORDER BY priority DESC, seq LIMIT 200"
        ).fetchone()
        naptime = conn.execute("SHOW autovacuum_naptime").fetchone()
    if row is None or plan is None or naptime is None:
        return ""
    live, dead, upd, hot, vacuums, heap, indexes = row
    buffers = plan[0][0]["Plan"]["Shared Hit Blocks"] + plan[0][0]["Plan"]["Shared Read Blocks"]
    return (
        f"live {live:,}, dead {dead:,}, HOT {hot:,} of {upd:,} updates, {vacuums} autovacuums"
        f" (autovacuum_naptime {naptime[0]}); heap {heap / 2**20:,.0f} MB, indexes {indexes / 2**20:,.0f} MB;"
        f" a claim on the empty queue reads {buffers:,} pages"
    )


@dataclass
class Result:
    broker: str
    small: Drain | None = None
    large: Drain | None = None
    why: str = ""

    @property
    def ratio(self) -> float | None:
        if self.small is None or self.large is None:
            return None
        return self.large.tail_rate / self.small.tail_rate


def places() -> dict[str, tuple[Callable[[], Any], Callable[[App], str] | None]]:
    out: dict[str, tuple[Callable[[], Any], Callable[[App], str] | None]] = {"sqlite": (sqlite_place, None)}
    if pg := os.environ.get("PIGEON_TEST_POSTGRES_URL"):
        out["postgres"] = (lambda: postgres_place(pg), postgres_table_stats)
    if rd := os.environ.get("PIGEON_TEST_REDIS_URL"):
        out["redis"] = (lambda: redis_place(rd), None)
    return out


def measure(name: str, backlog: int, tail: int, limit: float) -> Result:
    place, after = places()[name]
    result = Result(name)
    try:
        with place() as url:
            result.small = drain(url, tail, tail, limit, after)
        with place() as url:
            result.large = drain(url, backlog, tail, limit, after)
    except Exception as exc:  # noqa: BLE001 - a broker that fails is reported, not fatal
        result.why = f"{type(exc).__name__}: {exc}"
    return result


def report(results: list[Result], backlog: int, tail: int, console: Any) -> None:
    from rich.table import Table

    t = Table(title=f"drain rate with a backlog: {tail:,} jobs against the last {tail:,} of {backlog:,}")
    columns = ("broker", f"{tail:,} backlog", f"last {tail:,} of {backlog:,}", "ratio", "aim", "fill", "RSS")
    for col in columns:
        t.add_column(col, justify="left" if col == "broker" else "right")
    for r in results:
        if r.ratio is None or r.small is None or r.large is None:
            t.add_row(r.broker, "n/a", "n/a", "", "≥ 0.80", r.why, "")
            continue
        mark = "[green]✓[/]" if r.ratio >= 0.8 else "[red]✗ missed[/]"
        t.add_row(
            r.broker,
            f"{r.small.tail_rate:,.0f}/s",
            f"{r.large.tail_rate:,.0f}/s",
            f"{r.ratio:.2f}",
            f"≥ 0.80 {mark}",
            f"{r.large.fill_rate:,.0f}/s",
            f"+{r.large.rss_growth:,.0f} MB",
        )
    console.print(t)
    console.print(
        f"  fill: enqueue rate of the large backlog ({FILL_BATCH:,} a batch); RSS: how much the process grew"
        f" while its worker drained the large backlog (aim ≤ 50 MB)",
        style="dim",
    )
    for r in results:
        for label, d in (("small", r.small), ("large", r.large)):
            if d is not None and d.stats:
                console.print(f"  {r.broker}, {label} backlog, after the drain: {d.stats}", highlight=False)


def sizes(quick: bool) -> tuple[int, int]:
    backlog = int(os.environ.get("PIGEON_BENCH_BACKLOG", "1000000"))
    tail = int(os.environ.get("PIGEON_BENCH_TAIL", "100000"))
    if quick:
        backlog, tail = min(backlog, 20_000), min(tail, 2_000)
    return backlog, min(tail, backlog)


def run(names: list[str], backlog: int, tail: int, console: Any) -> None:
    available = places()
    results = []
    for name in names:
        if name not in available:
            results.append(Result(name, why=f"no server: {name.upper()} URL unset"))
            continue
        with console.status(f"backlog on {name}…"):
            results.append(measure(name, backlog, tail, limit=max(120.0, backlog / 2_000)))
    report(results, backlog, tail, console)


def main() -> int:
    from rich.console import Console

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--backlog", type=int, help="the large backlog (default $PIGEON_BENCH_BACKLOG or 1,000,000)"
    )
    parser.add_argument("--tail", type=int, help="the small backlog and the tail timed (default 100,000)")
    parser.add_argument("--only", action="append", choices=["sqlite", "postgres", "redis"])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    backlog, tail = sizes(args.quick)
    backlog = args.backlog or backlog
    tail = min(args.tail or tail, backlog)
    run(args.only or ["sqlite", "postgres", "redis"], backlog, tail, Console())
    return 0


if __name__ == "__main__":
    sys.exit(main())
