"""Big payloads: 1 MB arguments and 1 MB results, enqueued and drained on every broker.

    .venv/bin/python benchmarks/payloads.py [--jobs N] [--size BYTES] [--only BROKER] [--quick]

For each broker, in a process of its own (so its peak memory is its own): ``jobs`` jobs
whose one argument is a ``size``-byte string are sent ``BATCH`` at a time, then one
in-process burst worker (``-c CONCURRENCY``) runs them; each returns its argument, so each
result is as big again and is stored (results kept as by default). Printed: enqueue and
drain rates (jobs/s and MB/s of arguments), and the process's resident memory before,
at its peak while sending, and at its peak while draining. Brokers without a server URL
(``PIGEON_TEST_*_URL``, set by ``scripts/with-servers``) are skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pigeon import App  # noqa: E402

BROKERS = ("memory", "sqlite", "postgres", "redis", "amqp+sqlite")
BATCH = 10
CONCURRENCY = 8
MB = 2**20


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MB


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _with(url: str, **params: str) -> str:
    sep = "&" if "?" in url else "?"
    return url + sep + "&".join(f"{k}={v}" for k, v in params.items())


@contextmanager
def place(broker: str) -> Iterator[str]:
    """A fresh store for ``broker``: a temporary file, or a namespace of its own on the server."""
    from pigeon.brokers.base import with_store

    namespace = f"payloads_{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="pigeon-payloads-") as tmp:
        if broker == "memory":
            yield "memory://"
        elif broker == "sqlite":
            yield f"sqlite:///{tmp}/jobs.db"
        elif broker == "amqp+sqlite":
            yield with_store(_with(_server("rabbitmq"), namespace=namespace), f"sqlite:///{tmp}/jobs.db")
        else:
            yield _with(_server(broker), namespace=namespace)
            _drop(broker, namespace)


def _server(kind: str) -> str:
    url = os.environ.get(f"PIGEON_TEST_{kind.upper()}_URL")
    if not url:
        raise LookupError(f"no {kind} server (PIGEON_TEST_{kind.upper()}_URL unset)")
    return url


def _drop(broker: str, namespace: str) -> None:
    if broker == "postgres":
        import psycopg

        with psycopg.connect(_server("postgres").split("?")[0], autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {namespace} CASCADE")  # type: ignore[arg-type]
    elif broker == "redis":
        import redis

        client = redis.Redis.from_url(_server("redis"))
        for key in client.scan_iter(match=f"*{namespace}*", count=10_000):
            client.unlink(key)
        client.close()


def measure(broker: str, jobs: int, size: int) -> dict[str, Any]:
    """Send and drain ``jobs`` jobs of ``size`` bytes on ``broker``; the figures as a dict."""
    data = "".join(chr(ord("a") + i % 26) for i in range(size))
    with place(broker) as url:
        if broker in ("postgres",):
            from pigeon.brokers.postgres import PostgresBroker

            asyncio.run(PostgresBroker.from_url(url, {}).migrate())
        app = App(url)
        done = 0

        @app.task(name="payloads.echo")
        async def echo(blob: str) -> str:
            nonlocal done
            done += 1
            return blob

        try:
            base = _rss_mb()
            began = time.perf_counter()
            for start in range(0, jobs, BATCH):
                echo.send_many([(data,)] * min(BATCH, jobs - start))
            sent = time.perf_counter() - began
            peak_send = _peak_mb()
            worker = app.make_worker(burst=True, concurrency=CONCURRENCY, batch=CONCURRENCY)

            async def run() -> None:
                try:
                    await worker.run(install_signals=False)
                finally:
                    await app.aclose()

            began = time.perf_counter()
            asyncio.run(run())
            drained = time.perf_counter() - began
            if done != jobs:
                raise RuntimeError(f"ran {done} of {jobs} jobs")
            return {
                "broker": broker,
                "enqueue": jobs / sent,
                "drain": jobs / drained,
                "mb": size / MB,
                "base": base,
                "peak_send": peak_send,
                "peak_drain": _peak_mb(),
            }
        finally:
            app.close()


def run(names: list[str], jobs: int, size: int, console: Any) -> None:
    """Measure each broker in a child process, and print one table."""
    from rich.table import Table

    rows: list[dict[str, Any]] = []
    for name in names:
        with console.status(f"1 MB payloads on {name}…"):
            proc = subprocess.run(
                [sys.executable, __file__, "--child", name, "--jobs", str(jobs), "--size", str(size)],
                capture_output=True,
                text=True,
                timeout=max(120.0, jobs * size / MB / 5),
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
        lines = proc.stdout.strip().splitlines()
        if proc.returncode == 0 and lines:
            rows.append(json.loads(lines[-1]))
        else:
            why = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            rows.append({"broker": name, "why": why[:80]})
    title = f"{size / MB:g} MB arguments and results: {jobs:,} jobs, sent {BATCH} a call, -c {CONCURRENCY}"
    t = Table(title=title)
    for col in ("broker", "enqueue", "drain", "RSS before", "peak sending", "peak draining"):
        t.add_column(col, justify="left" if col == "broker" else "right")
    for r in rows:
        if "why" in r:
            t.add_row(r["broker"], "n/a", r["why"], "", "", "")
            continue
        t.add_row(
            r["broker"],
            f"{r['enqueue']:,.0f}/s",
            f"{r['drain']:,.0f}/s",
            f"{r['base']:,.0f} MB",
            f"{r['peak_send']:,.0f} MB",
            f"{r['peak_drain']:,.0f} MB",
        )
    console.print(t)
    console.print(
        f"  jobs/s × {size / MB:g} = MB/s of arguments; drain: each job returns its argument, so it"
        " writes a result as big; memory: the whole process's resident set (the memory broker holds"
        " every job in it)",
        style="dim",
    )


def main() -> int:
    from rich.console import Console

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--size", type=int, default=MB)
    parser.add_argument("--only", action="append", choices=BROKERS)
    parser.add_argument("--quick", action="store_true", help="20 jobs a broker")
    parser.add_argument("--child", choices=BROKERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    jobs = 20 if args.quick else args.jobs
    if args.child:
        print(json.dumps(measure(args.child, jobs, args.size)))
        return 0
    run(args.only or list(BROKERS), jobs, args.size, Console())
    return 0


if __name__ == "__main__":
    sys.exit(main())
