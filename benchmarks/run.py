"""pigeon's benchmark: throughput, latency and footprint on the SQLite broker, beside Huey.

    .venv/bin/python benchmarks/run.py [--quick] [--only NAME] [--profile]

Every workload gets a fresh SQLite file in a temporary directory and one
worker process (this one, or a child where the worker must be measured
apart). Huey runs the same workloads where it can, with ``SqliteHuey`` and its
own consumer in a child process. The run prints figures and never asserts: a
missed target is marked in the table, not raised.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import faulthandler
import io
import math
import multiprocessing
import os
import platform
import pstats
import queue
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, Python puts benchmarks/ on the path, not the repository;
# the tasks must import as `benchmarks.tasks` here, in workers and in pool processes.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from benchmarks import backlog, hotpath, nfc, payloads, rabbitmq, servers, single_send  # noqa: E402
from benchmarks import sections as scale_sections  # noqa: E402
from benchmarks.tasks import STAMPS, HueySuite, Suite, burn, calibrate  # noqa: E402
from pigeon import App, JobState  # noqa: E402
from pigeon.testing import jobs  # noqa: E402
from pigeon.worker.loop import Worker  # noqa: E402

console = Console()

# Huey's consumer polls an empty queue after 0.1 s, backing off to 10 s, so at its
# defaults an idle consumer notices a job 0.1 to 10 s late. These flags make it poll
# every 4 ms, as pigeon's SQLite broker watches for other processes' commits.
HUEY_POLL = ["-d", "0.004", "-b", "1", "-m", "0.004"]
# Threads for Huey's no-op drain: its storage serialises on one connection, and
# 4 threads beat 1 and 16 on this benchmark (about 2,400 jobs/s against 1,400 and 2,100).
HUEY_DRAIN_THREADS = 4


@dataclass(frozen=True)
class Scale:
    enqueue: int = 20_000
    drain: int = 20_000
    naps: int = 2_000
    nap_seconds: float = 0.05
    nap_concurrency: int = 200
    latency_samples: int = 200
    cpu_jobs: int = 12
    cpu_seconds: float = 1.0
    crowd: int = 10_000
    crowd_seconds: float = 1.0


FULL = Scale()
QUICK = Scale(
    enqueue=2_000,
    drain=2_000,
    naps=400,
    latency_samples=20,
    cpu_jobs=4,
    cpu_seconds=0.25,
    crowd=1_000,
)

# Idle time before each latency probe, so the worker is waiting, not finishing the last job.
LATENCY_GAP = 0.02
SAMPLE_TIMEOUT = 5.0


# -- figures -------------------------------------------------------------------


@dataclass
class Figure:
    """One measurement, or why there is none."""

    value: float | None = None
    why: str = ""
    detail: str = ""

    @classmethod
    def missing(cls, why: str) -> Figure:
        return cls(None, why)


@dataclass
class Row:
    label: str
    unit: str
    higher_is_better: bool
    pigeon: Figure
    huey: Figure | None = None
    target: float | None = None
    target_text: str = ""
    fmt: str = "{:,.0f}"

    def met(self) -> bool | None:
        v = self.pigeon.value
        if v is None or self.target is None:
            return None
        return v >= self.target if self.higher_is_better else v < self.target


@dataclass
class Context:
    scale: Scale
    quick: bool
    profile: bool
    tmp: Path

    def fresh(self, name: str) -> Path:
        """A path for a new database file, in a directory of its own."""
        d = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.tmp))
        return d / f"{name}.db"

    def limit(self, full: float) -> float:
        """A workload's time bound; the quick run gets a tighter one."""
        return min(full, 20.0) if self.quick else full


# -- processes -----------------------------------------------------------------


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


@dataclass
class Child:
    """A worker or consumer in a process of its own, logging to a file."""

    proc: subprocess.Popen[bytes]
    log: Path
    started: float

    @classmethod
    def start(cls, argv: Sequence[str], env: dict[str, str], log: Path) -> Child:
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        return cls(proc, log, time.perf_counter())

    def wait(self, timeout: float) -> tuple[int | None, float, Any]:
        """Reap the child within ``timeout``: (exit code or None, seconds since start, its rusage).

        ``os.wait4`` gives this child's own peak RSS, where RUSAGE_CHILDREN would
        give the largest of every child reaped so far.
        """
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                code = os.waitstatus_to_exitcode(status)
                self.proc.returncode = code  # reaped here; Popen must not wait again
                return code, time.perf_counter() - self.started, usage
            if time.monotonic() >= deadline:
                return None, time.perf_counter() - self.started, None
            time.sleep(0.005)

    def stop(self, grace: float = 10.0) -> None:
        if self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        if self.wait(grace)[0] is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            self.wait(grace)

    def tail(self, lines: int = 3) -> str:
        text = self.log.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:]) or "(no output)"


def pigeon_worker(url: str, log: Path, *args: str) -> Child:
    argv = [sys.executable, "-m", "pigeon", "worker", "benchmarks.tasks:app", "-l", "warning", *args]
    return Child.start(argv, child_env(PIGEON_URL=url), log)


def huey_consumer(db: Path, workers: int, kind: str = "thread") -> Child:
    argv = [
        sys.executable,
        "-m",
        "huey.bin.huey_consumer",
        "benchmarks.tasks.huey",
        "-w",
        str(workers),
        "-k",
        kind,
        *HUEY_POLL,
        "-n",  # no periodic tasks: none are defined
        "-q",
    ]
    return Child.start(argv, child_env(BENCH_HUEY_DB=str(db)), db.with_suffix(".log"))


# -- pigeon helpers ------------------------------------------------------------


def states(app: App) -> dict[str, int]:
    async def fetch() -> dict[str, int]:
        broker = await app.connection()
        out: dict[str, int] = {}
        for q in await broker.stats():
            for state, n in q.counts.items():
                out[state] = out.get(state, 0) + n
        return out

    return app.portal_call(fetch())


@dataclass
class Drained:
    seconds: float
    processed: int
    timed_out: bool
    worker: Worker


def burst(app: App, limit: float, *, profile: bool = False, **config: Any) -> Drained:
    """Run a burst worker on a loop of this thread; time it from start to exit.

    A worker still busy at ``limit`` is stopped hard (running jobs handed back),
    so a slow workload costs its bound, not the whole run.
    """
    worker = app.make_worker(burst=True, **config)
    timed_out = False

    async def main() -> float:
        nonlocal timed_out

        def give_up() -> None:
            nonlocal timed_out
            timed_out = True
            worker.stop(hard=True)

        timer = asyncio.get_running_loop().call_later(limit, give_up)
        start = time.perf_counter()
        try:
            await worker.run(install_signals=False)
        finally:
            timer.cancel()
            await app.aclose()
        return time.perf_counter() - start

    profiler = cProfile.Profile() if profile else None
    with profiler or contextlib.nullcontext():
        seconds = asyncio.run(main())
    if profiler is not None:
        show_profile(profiler, worker)
    return Drained(seconds, worker.processed, timed_out, worker)


def broker_time(worker: Worker) -> str:
    """Where the worker's broker calls spent their time (the seam counts every call)."""
    parts = [
        f"{name} {s.seconds:.2f} s/{s.calls}"
        for name, s in sorted(worker.client.metrics().items(), key=lambda kv: -kv[1].seconds)
        if name in ("claim", "settle")
    ]
    return "broker: " + ", ".join(parts)


def show_profile(profiler: cProfile.Profile, worker: Worker) -> None:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs().sort_stats("tottime").print_stats(25)
    # Python 3.12's profiler rides on sys.monitoring, so it sees every thread,
    # the broker's SQLite thread included.
    console.rule("cProfile of the no-op drain, all threads")
    console.print(out.getvalue(), markup=False, highlight=False, soft_wrap=True)
    console.print(broker_time(worker), markup=False)


def drain_figure(d: Drained, expected: int, value: float) -> Figure:
    if d.timed_out:
        return Figure.missing(f"timed out after {d.seconds:.1f} s ({d.processed:,} of {expected:,} done)")
    if d.processed != expected:
        return Figure(value, detail=f"ran {d.processed:,} of {expected:,}")
    return Figure(value)


# -- Huey helpers --------------------------------------------------------------


def repeat(make: Callable[[], Any], n: int, limit: float) -> int:
    """Call ``make`` up to ``n`` times, stopping at ``limit`` seconds; return how many calls ran.

    Sends one by one are the only unbatched loops here, so they carry their own bound.
    """
    deadline = time.monotonic() + limit
    for i in range(n):
        if i % 256 == 0 and time.monotonic() >= deadline:
            return i
        make()
    return n


def huey_run(h: HueySuite, consumer: Child, n: int, limit: float) -> Figure:
    """Seconds from the first job's start until all ``n`` results are stored.

    Starting at the first job leaves the consumer's interpreter start-up out, as
    pigeon's in-process worker has none to count.
    """
    storage = h.huey.storage
    deadline = time.monotonic() + limit
    done = 0
    while time.monotonic() < deadline:
        done = storage.result_store_size()
        if done >= n:
            break
        if consumer.proc.poll() is not None:
            return Figure.missing(f"the consumer exited ({consumer.tail()})")
        time.sleep(0.01)
    finished = time.time()
    if done < n:
        return Figure.missing(f"timed out after {limit:.0f} s ({done:,} of {n:,} done)")
    starts = [h.huey.serializer.deserialize(v) for v in storage.result_items().values()]
    wall = time.perf_counter() - consumer.started
    return Figure(finished - min(starts), detail=f"{wall:.2f} s from consumer launch")


# -- workloads -----------------------------------------------------------------


def w_enqueue(ctx: Context) -> list[Row]:
    n = ctx.scale.enqueue
    calls = [()] * n

    limit = ctx.limit(30.0)

    def rate(sent: int, seconds: float, stored: int) -> Figure:
        if stored != sent:
            return Figure(sent / seconds, detail=f"{stored:,} of {sent:,} stored")
        if sent < n:
            return Figure(sent / seconds, detail=f"stopped at the {limit:.0f} s bound after {sent:,}")
        return Figure(sent / seconds)

    def pigeon_rate(send: Callable[[Suite], int]) -> Figure:
        suite = Suite(f"sqlite:///{ctx.fresh('enqueue')}")
        try:
            suite.noop.send_many([])  # opens and migrates the file outside the timing
            start = time.perf_counter()
            sent = send(suite)
            seconds = time.perf_counter() - start
            return rate(sent, seconds, states(suite.app).get(JobState.QUEUED.value, 0))
        finally:
            suite.app.close()

    batch = pigeon_rate(lambda suite: len(suite.noop.send_many(calls)))
    single = pigeon_rate(lambda suite: repeat(suite.noop.send, n, limit))

    def huey_rate(send: Callable[[HueySuite], int]) -> Figure:
        h = HueySuite(str(ctx.fresh("huey-enqueue")))
        start = time.perf_counter()
        sent = send(h)
        seconds = time.perf_counter() - start
        return rate(sent, seconds, h.huey.pending_count())

    huey_map = huey_rate(lambda h: len(h.noop.map(calls)))
    huey_map.detail = huey_map.detail or "task.map(): Huey has no batch enqueue; one commit per job"
    huey_single = huey_rate(lambda h: repeat(h.noop, n, limit))
    return [
        Row(f"enqueue {n:,}: one batch", "jobs/s", True, batch, huey_map),
        Row(f"enqueue {n:,}: one by one", "jobs/s", True, single, huey_single),
    ]


def w_drain(ctx: Context) -> list[Row]:
    n = ctx.scale.drain
    suite = Suite(f"sqlite:///{ctx.fresh('drain')}")
    try:
        suite.noop.send_many([()] * n)
        d = burst(suite.app, ctx.limit(60.0), profile=ctx.profile, concurrency=200, batch=200)
        succeeded = states(suite.app).get(JobState.SUCCEEDED.value, 0)
    finally:
        suite.app.close()
    fig = drain_figure(d, n, d.processed / d.seconds)
    if fig.value is not None and succeeded != n:
        fig.detail = f"{succeeded:,} of {n:,} succeeded"
    fig.detail = fig.detail or broker_time(d.worker)

    db = ctx.fresh("huey-drain")
    h = HueySuite(str(db))
    filled = repeat(h.noop, n, ctx.limit(30.0))
    consumer = huey_consumer(db, HUEY_DRAIN_THREADS)
    try:
        hf = huey_run(h, consumer, filled, ctx.limit(90.0))
    finally:
        consumer.stop()
    if hf.value is not None:
        short = "" if filled == n else f"only {filled:,} enqueued in time; "
        hf = Figure(filled / hf.value, detail=f"{short}{HUEY_DRAIN_THREADS} threads; {hf.detail}")
    return [
        Row(
            f"drain {n:,} no-ops, c=200",
            "jobs/s",
            True,
            fig,
            hf,
            target=10_000,
            target_text="≥ 10,000",
        )
    ]


def w_naps(ctx: Context) -> list[Row]:
    s = ctx.scale
    suite = Suite(f"sqlite:///{ctx.fresh('naps')}")
    try:
        suite.nap.send_many([(s.nap_seconds,)] * s.naps)
        d = burst(suite.app, ctx.limit(30.0), concurrency=s.nap_concurrency)
    finally:
        suite.app.close()
    ideal = math.ceil(s.naps / s.nap_concurrency) * s.nap_seconds
    fig = drain_figure(d, s.naps, d.seconds)
    fig.detail = fig.detail or f"ideal {ideal:.2f} s"

    db = ctx.fresh("huey-naps")
    h = HueySuite(str(db))
    filled = repeat(lambda: h.nap(s.nap_seconds), s.naps, ctx.limit(30.0))
    consumer = huey_consumer(db, s.nap_concurrency)
    try:
        hf = huey_run(h, consumer, filled, ctx.limit(60.0))
    finally:
        consumer.stop()
    if hf.value is not None:
        hf.detail = f"{s.nap_concurrency} threads (no gevent here for greenlets); {hf.detail}"
    return [
        Row(
            f"{s.naps:,} × sleep {s.nap_seconds * 1000:.0f} ms, c={s.nap_concurrency}",
            "s",
            False,
            fig,
            hf,
            target=2.0,
            target_text="< 2.00",
            fmt="{:.2f}",
        )
    ]


def percentiles(samples: list[float], what: str) -> tuple[Figure, Figure]:
    if len(samples) < 2:
        why = f"{len(samples)} samples: {what}"
        return Figure.missing(why), Figure.missing(why)
    ms = [x * 1000 for x in samples]
    p99 = statistics.quantiles(ms, n=100, method="inclusive")[98]
    return Figure(statistics.median(ms), detail=what), Figure(p99, detail=f"max {max(ms):.2f} ms")


def sample(n: int, limit: float, probe: Callable[[], float]) -> tuple[list[float], str]:
    """Up to ``n`` sequential probes, each after an idle gap; stops early at ``limit``."""
    out: list[float] = []
    deadline = time.monotonic() + limit
    for _ in range(n):
        if time.monotonic() >= deadline:
            return out, f"stopped at the {limit:.0f} s bound"
        time.sleep(LATENCY_GAP)
        try:
            out.append(probe())
        except TimeoutError:
            return out, f"a job did not start within {SAMPLE_TIMEOUT:.0f} s"
    return out, ""


def w_latency(ctx: Context) -> list[Row]:
    n = ctx.scale.latency_samples
    limit = ctx.limit(40.0)

    # (a) the worker on a thread of this process: the send wakes it directly.
    suite = Suite(f"sqlite:///{ctx.fresh('latency-local')}")
    thread = suite.app.run_worker_in_thread(concurrency=8)
    try:
        while not STAMPS.empty():
            STAMPS.get_nowait()

        def local_probe() -> float:
            sent = time.time()
            suite.stamp.send()
            try:
                return STAMPS.get(timeout=SAMPLE_TIMEOUT) - sent
            except queue.Empty:
                raise TimeoutError from None

        with contextlib.suppress(TimeoutError):
            local_probe()  # the first job pays for opening the worker's connection
        local, why_local = sample(n, limit, local_probe)
    finally:
        thread.stop(timeout=10)
        suite.app.close()

    # (b) the worker in another process: it notices the commit by polling the file.
    db = ctx.fresh("latency-remote")
    suite = Suite(f"sqlite:///{db}")
    worker = pigeon_worker(suite.app.url, db.with_suffix(".log"), "-c", "8")
    try:

        def remote_probe() -> float:
            sent = time.time()
            started: float = suite.stamp.send().result(timeout=SAMPLE_TIMEOUT)
            return started - sent

        try:
            suite.stamp.send().result(timeout=30)  # waits out the worker's start-up
            remote, why_remote = sample(n, limit, remote_probe)
        except TimeoutError:
            remote, why_remote = [], f"the worker did not start ({worker.tail()})"
    finally:
        worker.stop()
        suite.app.close()

    hdb = ctx.fresh("huey-latency")
    h = HueySuite(str(hdb))
    consumer = huey_consumer(hdb, 1)

    def huey_probe() -> float:
        sent = time.time()
        result = h.stamp()
        deadline = time.monotonic() + SAMPLE_TIMEOUT
        while time.monotonic() < deadline:
            # preserve=True only reads; a plain get() pops the result in a write
            # transaction that would contend with the consumer for the lock.
            started = result.get(preserve=True)
            if started is not None:
                return float(started) - sent
            time.sleep(0.001)
        raise TimeoutError

    try:
        try:
            huey_probe()  # waits out the consumer's start-up
            remote_h, why_h = sample(n, limit, huey_probe)
        except TimeoutError:
            remote_h, why_h = [], f"the consumer did not start ({consumer.tail()})"
    finally:
        consumer.stop()

    a50, a99 = percentiles(local, why_local)
    b50, b99 = percentiles(remote, why_remote)
    if b50.value is not None:
        # PIGEON_POLL is a documented knob, but the poll is only the longest idle
        # wait: the broker's data_version watch wakes the worker within 4 ms anyway.
        woke = "`python -m pigeon worker` at its defaults; a 4 ms PRAGMA data_version watch wakes it"
        b50.detail = "; ".join(x for x in (woke, b50.detail) if x)
    h50, h99 = percentiles(remote_h, why_h)
    if h50.value is not None:
        h50.detail = "; ".join(x for x in ("1 thread, polling every 4 ms", h50.detail) if x)
    no_local = Figure.missing("Huey's consumer is always a process of its own")
    return [
        Row(
            "latency, same process: p50",
            "ms",
            False,
            a50,
            no_local,
            target=2.0,
            target_text="< 2",
            fmt="{:.2f}",
        ),
        Row("latency, same process: p99", "ms", False, a99, no_local, fmt="{:.2f}"),
        Row(
            "latency, other process: p50",
            "ms",
            False,
            b50,
            h50,
            target=20.0,
            target_text="< 20",
            fmt="{:.2f}",
        ),
        Row("latency, other process: p99", "ms", False, b99, h99, fmt="{:.2f}"),
    ]


def w_cpu(ctx: Context) -> list[Row]:
    s = ctx.scale
    cores = os.cpu_count() or 1
    loops = calibrate(s.cpu_seconds)
    ideal = math.ceil(s.cpu_jobs / cores) * s.cpu_seconds
    # The machine may be shared: the same jobs on a bare process pool, just before,
    # say what this machine gives right now, and pigeon is judged against that.
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(cores) as pool:
        pool.map_async(burn, [loops] * s.cpu_jobs, chunksize=1).get(ctx.limit(60.0))
    bare = time.perf_counter() - start
    suite = Suite(f"sqlite:///{ctx.fresh('cpu')}")
    try:
        suite.burn.send_many([(loops,)] * s.cpu_jobs)
        d = burst(suite.app, ctx.limit(60.0), concurrency=s.cpu_jobs)
        succeeded = states(suite.app).get(JobState.SUCCEEDED.value, 0)
    finally:
        suite.app.close()
    fig = drain_figure(d, s.cpu_jobs, d.seconds)
    if fig.value is not None:
        fig.detail = fig.detail or (
            f"{cores} pool processes; {100 * (d.seconds / bare - 1):+.0f}% on the bare pool"
            if succeeded == s.cpu_jobs
            else f"{succeeded} of {s.cpu_jobs} succeeded"
        )

    db = ctx.fresh("huey-cpu")
    h = HueySuite(str(db))
    filled = repeat(lambda: h.burn(loops), s.cpu_jobs, ctx.limit(30.0))
    consumer = huey_consumer(db, cores, kind="process")
    try:
        hf = huey_run(h, consumer, filled, ctx.limit(60.0))
    finally:
        consumer.stop()
    if hf.value is not None:
        hf.detail = f"{cores} worker processes; {hf.detail}"
    return [
        Row(
            f"{s.cpu_jobs} × ~{s.cpu_seconds:g} s CPU, process pool",
            "s",
            False,
            fig,
            hf,
            target_text=f"ideal {ideal:.2f}; bare Pool {bare:.2f}",
            fmt="{:.2f}",
        )
    ]


def w_crowd(ctx: Context) -> list[Row]:
    s = ctx.scale
    db = ctx.fresh("crowd")
    suite = Suite(f"sqlite:///{db}")
    try:
        suite.nap.send_many([(s.crowd_seconds,)] * s.crowd)
        worker = pigeon_worker(suite.app.url, db.with_suffix(".log"), "--burst", "-c", str(s.crowd))
        code, wall, usage = worker.wait(ctx.limit(60.0))
        if code is None:
            worker.stop()
        records = jobs(suite.app) if code == 0 else []
    finally:
        suite.app.close()

    done = [r for r in records if r.state is JobState.SUCCEEDED]
    if code is None:
        fig = Figure.missing(f"timed out after {wall:.0f} s")
    elif code != 0:
        fig = Figure.missing(f"the worker exited with {code} ({worker.tail()})")
    else:
        span = max(r.finished_at or 0 for r in done) - min(r.started_at or 0 for r in done) if done else 0
        fig = Figure(wall, detail=f"wall, with interpreter start; first start→last finish {span:.2f} s")
        if len(done) != s.crowd:
            fig.detail = f"{len(done):,} of {s.crowd:,} succeeded; {fig.detail}"
    # ru_maxrss is in kilobytes on Linux.
    rss = Figure(usage.ru_maxrss / 1024) if usage is not None else Figure.missing("the worker was not reaped")
    no_huey = Figure.missing(f"Huey rejects async def tasks; a thread per job would be {s.crowd:,} threads")
    return [
        Row(
            f"{s.crowd:,} × sleep {s.crowd_seconds:g} s, c={s.crowd:,}",
            "s",
            False,
            fig,
            no_huey,
            target=3.0,
            target_text="< 3.00",
            fmt="{:.2f}",
        ),
        Row("  peak RSS of that worker", "MB", False, rss, no_huey, 200, "< 200", "{:.0f}"),
    ]


WORKLOADS: dict[str, tuple[str, Callable[[Context], list[Row]]]] = {
    "enqueue": ("enqueue throughput", w_enqueue),
    "drain": ("no-op drain throughput", w_drain),
    "naps": ("sleeping async jobs", w_naps),
    "latency": ("enqueue-to-start latency", w_latency),
    "cpu": ("CPU-bound jobs in processes", w_cpu),
    "crowd": ("10,000 concurrent async jobs", w_crowd),
}


# -- output --------------------------------------------------------------------


def cell(fig: Figure, fmt: str, mark: str) -> str:
    if fig.value is None:
        return f"[yellow]n/a[/]{mark}"
    return f"{fmt.format(fig.value)}{mark}"


def ratio(row: Row) -> str:
    p, h = row.pigeon.value, row.huey.value if row.huey else None
    if p is None or h is None or h == 0:
        return ""
    r = p / h
    better = r > 1 if row.higher_is_better else r < 1
    colour = "green" if better else "red"
    return f"[{colour}]{r:.2f}[/]"


def report(sections: list[tuple[str, list[Row]]], title: str) -> None:
    """The figures in a narrow table; what qualifies them, as numbered notes beneath."""
    t = Table(title=title)
    t.add_column("workload", overflow="fold")
    t.add_column("unit")
    t.add_column("pigeon", justify="right")
    t.add_column("target")
    t.add_column("huey", justify="right")
    t.add_column("pigeon/huey", justify="right")
    notes = servers.Notes()

    def noted(who: str, fig: Figure) -> str:
        return notes.mark(who, fig.why if fig.value is None else fig.detail)

    for i, (_, rows) in enumerate(sections):
        if i:
            t.add_section()
        for row in rows:
            met = row.met()
            mark = "" if met is None else (" [green]✓[/]" if met else " [red]✗ missed[/]")
            pigeon = cell(row.pigeon, row.fmt, noted("pigeon", row.pigeon))
            huey = "" if row.huey is None else cell(row.huey, row.fmt, noted("huey", row.huey))
            t.add_row(row.label, row.unit, pigeon, f"{row.target_text}{mark}", huey, ratio(row))
    console.print(t)
    notes.print(console)


def failed(label: str, exc: BaseException) -> list[Row]:
    why = f"{type(exc).__name__}: {exc}"
    return [Row(label, "", True, Figure.missing(why), Figure.missing("not run: the workload failed"))]


@contextlib.contextmanager
def quiet_stderr_logging() -> Iterator[None]:
    # A worker stopped at a workload's bound logs warnings; the table says it already.
    import logging

    logger = logging.getLogger("pigeon")
    before = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(before)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a small smoke run (about 30 s)")
    parser.add_argument(
        "--only",
        choices=sorted(
            [
                *WORKLOADS,
                *servers.SECTIONS,
                "backlog",
                "nfc",
                "hotpath",
                *scale_sections.SECTIONS,
                "payloads",
                "rabbitmq",
                "single",
            ]
        ),
        action="append",
        help="run only this workload, server section (postgres, redis), backlog or rabbitmq; repeatable",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the no-op drain and print it")
    args = parser.parse_args(argv)

    import huey

    start_all = time.perf_counter()
    scale = QUICK if args.quick else FULL
    chosen = [w for w in args.only or WORKLOADS if w in WORKLOADS]
    server_sections = [s for s in args.only or servers.SECTIONS if s in servers.SECTIONS]
    console.print(
        f"pigeon benchmark{' (quick)' if args.quick else ''}: Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, Huey {huey.__version__}, {os.cpu_count()} CPUs, "
        f"{platform.machine()} {platform.system()}; 1-min load {os.getloadavg()[0]:.2f} before the run",
        highlight=False,
    )
    # Every workload bounds itself; this is the last resort should one hang inside
    # a call no bound reaches: print every thread's stack and exit.
    began = time.perf_counter()
    sections: list[tuple[str, list[Row]]] = []
    with tempfile.TemporaryDirectory(prefix="pigeon-bench-") as tmp, quiet_stderr_logging():
        ctx = Context(scale, args.quick, args.profile, Path(tmp))
        for name in chosen:
            label, fn = WORKLOADS[name]
            faulthandler.dump_traceback_later(90 if args.quick else 360, exit=True)
            t0 = time.perf_counter()
            with console.status(f"{label}…"):
                try:
                    rows = fn(ctx)
                except Exception as exc:  # noqa: BLE001 - a broken workload is reported, not fatal
                    rows = failed(label, exc)
            console.print(f"  {label}: {time.perf_counter() - t0:.1f} s", style="dim")
            sections.append((name, rows))
    faulthandler.cancel_dump_traceback_later()
    took = time.perf_counter() - began
    if sections:
        report(
            sections,
            f"pigeon on SQLite, one worker process ({took:.0f} s, 1-min load {os.getloadavg()[0]:.2f})",
        )
        console.print(
            "[dim]pigeon/huey divides pigeon's figure by Huey's: green favours pigeon "
            "(higher jobs/s, fewer seconds or ms). Huey's drain times run from its first job's "
            "start to the last result stored, leaving out its consumer's start-up; pigeon's run "
            "from its in-process worker's start to its exit.[/]"
        )
    if server_sections:
        began = time.perf_counter()
        servers.run_sections(
            server_sections,
            args.quick,
            console,
            lambda seconds: faulthandler.dump_traceback_later(seconds, exit=True),
        )
        faulthandler.cancel_dump_traceback_later()
        console.print(f"  server sections: {time.perf_counter() - began:.0f} s", style="dim")
    if args.only is None or "single" in args.only:
        began = time.perf_counter()
        single_send.run(args.quick, console)
        console.print(f"  single-send section: {time.perf_counter() - began:.0f} s", style="dim")
    if args.only is None or "backlog" in args.only:
        began = time.perf_counter()
        size, tail = backlog.sizes(args.quick)
        with quiet_stderr_logging():
            backlog.run(["sqlite", "postgres", "redis"], size, tail, console)
        console.print(
            f"  backlog section: {time.perf_counter() - began:.0f} s"
            " (sizes: $PIGEON_BENCH_BACKLOG, $PIGEON_BENCH_TAIL)",
            style="dim",
        )
    if args.only is None or "nfc" in args.only:
        began = time.perf_counter()
        nfc.run(console, quick=args.quick)
        console.print(f"  NFC section: {time.perf_counter() - began:.0f} s", style="dim")
    if args.only is None or "hotpath" in args.only:
        hotpath.run(10_000 if args.quick else 50_000, 1 if args.quick else 3, say=console.print)
    with quiet_stderr_logging():
        scale_sections.run(args.only, args.quick, console)
    if args.only is None or "payloads" in args.only:
        payloads.run(list(payloads.BROKERS), 20 if args.quick else 200, payloads.MB, console)
    if args.only is None or "rabbitmq" in args.only:
        rabbitmq.run(args.quick, console)
    console.print(f"  the whole run: {time.perf_counter() - start_all:.0f} s", style="dim")
    return 0


if __name__ == "__main__":
    sys.exit(main())
