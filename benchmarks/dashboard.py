"""How fast the dashboard answers with a large store: page times at N jobs per broker.

    .venv/bin/python benchmarks/dashboard.py [--jobs 1000000] [--only sqlite,postgres,redis]

Each broker gets N jobs (two queues, three tasks, distinct ``order_id`` arguments),
most of them QUEUED (a backlog: the hard case for counts and the oldest ready job),
some claimed and settled as SUCCEEDED or FAILED. A ``pigeon dashboard`` process
serves it; every page is fetched over HTTP a few times and the median is printed.
PostgreSQL and Redis need PIGEON_TEST_POSTGRES_URL / PIGEON_TEST_REDIS_URL
(``make bench`` starts them). Prints figures; never asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from pigeon.brokers.base import Migrating, create_broker  # noqa: E402
from pigeon.job import ErrorInfo, Job, JobState, Outcome, OutcomeKind, new_id  # noqa: E402

TASKS = ("shop.charge", "shop.refund", "mail.send")
BATCH = 5000
BULK_PAGE = 500  # apply_bulk's page
TARGET = 0.5


def jobs(n: int, start: int) -> list[Job]:
    now = time.time()
    return [
        Job(
            id=new_id(),
            task=TASKS[i % 3],
            queue="mail" if i % 3 == 2 else "default",
            payload=msgspec.Raw(msgspec.json.encode({"order_id": i, "customer": f"c{i % 997}"})),
            enqueued_at=now,
        )
        for i in range(start, start + n)
    ]


async def seed(url: str, total: int, finished: int) -> float:
    """Enqueue ``total`` jobs, then settle ``finished`` of them (half succeeded, half failed)."""
    broker = create_broker(url, {})
    if isinstance(broker, Migrating):  # Redis has no schema
        await broker.migrate()
    began = time.perf_counter()
    async with broker:
        for start in range(0, total, BATCH):
            await broker.enqueue(jobs(min(BATCH, total - start), start))
        done = 0
        while done < finished:
            claims = await broker.claim("bench", ("default", "mail"), min(1000, finished - done), 600)
            if not claims:
                break
            expires = time.time() + 86400
            err = ErrorInfo("ValueError", "declined", "Traceback (most recent call last): ...")
            await broker.settle(
                [
                    Outcome(
                        job_id=c.job.id,
                        token=c.token,
                        kind=OutcomeKind.COMPLETE,
                        result=b"1",
                        expires_at=expires,
                    )
                    if k % 2
                    else Outcome(
                        job_id=c.job.id, token=c.token, kind=OutcomeKind.FAIL, error=err, expires_at=expires
                    )
                    for k, c in enumerate(claims)
                ]
            )
            done += len(claims)
    return time.perf_counter() - began


def pages(total: int, some_id: str, deep_id: str) -> list[tuple[str, str]]:
    middle = total // 2
    return [
        ("overview", "/"),
        ("overview fragment", "/?fragment=1"),
        ("jobs, newest", "/jobs"),
        ("jobs, failed", "/jobs?state=failed"),
        ("jobs, task", "/jobs?task=shop.refund"),
        ("jobs, task+state", "/jobs?task=shop.refund&state=failed"),
        ("jobs, deep page", f"/jobs?before={deep_id}"),
        ("jobs, last hour", "/jobs?since=1h"),
        ("jobs, argument", f"/jobs?q=order_id%3D{middle}"),  # the newest 100,000 jobs
        ("jobs, argument, all", f"/jobs?q=order_id%3D{middle}&scan=all"),
        ("bulk confirm, argument", f"/jobs/bulk?action=retry&q=order_id%3D{middle}"),
        ("bulk confirm, failed", "/jobs/bulk?action=retry&state=failed"),
        ("bulk confirm, task", "/jobs/bulk?action=retry&task=shop.refund"),
        ("job", f"/jobs/{some_id}"),
        ("events", "/events"),
        ("metrics", "/metrics"),
    ]


def fetch(url: str) -> float:
    began = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as r:
        r.read()
    return time.perf_counter() - began


def measure(url: str, total: int, repeat: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pigeon", "dashboard", url, "--port", "0", "--read-only-anonymous"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert proc.stdout is not None
    base = proc.stdout.readline().split(" on ", 1)[1].strip().rstrip("/")
    try:
        ids = asyncio.run(_ids(url))
        for name, path in pages(total, *ids):
            fetch(base + path)  # warm
            times = [fetch(base + path) for _ in range(repeat)]
            median = statistics.median(times)
            mark = "" if median < TARGET else "   over 500 ms"
            print(f"  {name:<22} {median * 1000:8.1f} ms{mark}", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()


async def bulk(url: str, n: int) -> None:
    """Retry and cancel ``n`` jobs one call each (as bulk actions did), then ``n`` a page per call."""
    from pigeon.brokers.inspection import JobFilter, as_inspection

    async with create_broker(url, {}) as broker:
        inspect = as_inspection(broker)
        for action, state in (("retry", JobState.FAILED), ("cancel", JobState.QUEUED)):
            ids = [r.job.id for r in await inspect.find_jobs(JobFilter(states=(state,)), limit=2 * n)]
            if len(ids) < 2 * n:
                print(f"  bulk {action}: only {len(ids):,} {state.value} jobs, skipped")
                continue
            began = time.perf_counter()
            for job_id in ids[:n]:
                if action == "retry":
                    await inspect.requeue(job_id)
                else:
                    await broker.cancel(job_id, time.time() + 600)
            one = n / (time.perf_counter() - began)
            began = time.perf_counter()
            for i in range(n, 2 * n, BULK_PAGE):
                page = ids[i : i + BULK_PAGE]
                if action == "retry":
                    await inspect.requeue_jobs(page)
                else:
                    await inspect.cancel_jobs(page, time.time() + 600)
            paged = n / (time.perf_counter() - began)
            print(
                f"  bulk {action} {n:,} jobs: {one:,.0f}/s one call a job, {paged:,.0f}/s one call"
                f" per {BULK_PAGE} ({paged / one:.1f}x)",
                flush=True,
            )


async def _ids(url: str) -> tuple[str, str]:
    from pigeon.brokers.inspection import JobFilter, as_inspection

    async with create_broker(url, {}) as broker:
        inspect = as_inspection(broker)
        newest = await inspect.find_jobs(JobFilter(), limit=1)
        failed = await inspect.find_jobs(JobFilter(task="shop.refund"), limit=1)
        deep = await inspect.find_jobs(JobFilter(), limit=5000)
    return (failed or newest)[0].job.id, deep[-1].job.id


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--jobs", type=int, default=int(os.environ.get("PIGEON_BENCH_DASHBOARD_JOBS", 1_000_000))
    )
    parser.add_argument("--only", default="sqlite,postgres,redis")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    finished = min(args.jobs // 10, 100_000)
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.only.split(","):
            if kind == "sqlite":
                url = f"sqlite:///{tmp}/bench.db"
            else:
                server = os.environ.get(f"PIGEON_TEST_{kind.upper()}_URL")
                if not server:
                    print(
                        f"{kind}: skipped (PIGEON_TEST_{kind.upper()}_URL is not set; `make bench` starts it)"
                    )
                    continue
                sep = "&" if "?" in server else "?"
                url = f"{server}{sep}namespace=bench_{uuid.uuid4().hex[:8]}"
            try:
                run_one(kind, url, args.jobs, finished, args.repeat)
            finally:
                drop(kind, url)
    return 0


def run_one(kind: str, url: str, total: int, finished: int, repeat: int) -> None:
    seconds = asyncio.run(seed(url, total, finished))
    stored = f"{total:,} jobs ({finished:,} finished) stored in {seconds:.0f} s"
    print(f"{kind}: {stored}; page times:", flush=True)
    measure(url, total, repeat)
    asyncio.run(bulk(url, min(10_000, finished // 10)))


def drop(kind: str, url: str) -> None:
    """Remove a server's benchmark namespace: a million jobs left behind slow what runs next."""
    namespace = url.rsplit("namespace=", 1)[-1]
    if kind == "postgres":
        import psycopg

        with psycopg.connect(url.split("?")[0], autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {namespace} CASCADE")  # type: ignore[arg-type]
    elif kind == "redis":
        import redis

        client = redis.Redis.from_url(url.split("?")[0])
        for key in client.scan_iter(match=f"{namespace}:*", count=10_000):
            client.unlink(key)
        client.close()


if __name__ == "__main__":
    sys.exit(main())
