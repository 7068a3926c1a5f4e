"""Memory: a producer sending a million jobs, and a worker draining them, sampled along the way.

    scripts/with-servers .venv/bin/python benchmarks/memory.py [--jobs N] [--only sqlite|postgres|redis]

For each broker, in a fresh store: a producer process sends N no-op jobs in batches of
1,000 (``send_many``), then ``PIGEON_BENCH_MEMORY_SINGLE`` more one at a time (``send``),
reporting its own resident memory (RSS) every tenth of the way; then ``pigeon worker
--burst -c 200`` drains the N + single jobs, its RSS read from /proc every half second.
Printed: RSS at the start (once the first 1% of jobs are done, so imports, pools and caches
are warm), its peak and its end, and the growth; the aim is a worker that grows by at
most 50 MB over a 1,000,000-job drain, and a producer whose memory does not follow the
number of jobs it sent. ``PIGEON_BENCH_MEMORY_JOBS`` (1,000,000) and
``PIGEON_BENCH_MEMORY_SINGLE`` (50,000) size it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "benchmarks" / "peers"
for p in (str(ROOT), str(PEERS)):
    if p not in sys.path:
        sys.path.insert(0, p)

from benchmarks import backlog  # noqa: E402
from benchmarks.peers.loadcommon import rss_mb  # noqa: E402

BATCH = 1_000
SAMPLE_EVERY = 0.5
AIM_MB = 50.0


@dataclass
class Trace:
    """RSS (MB) against jobs done, sampled along a run."""

    points: list[tuple[int, float]] = field(default_factory=list)
    why: str = ""

    def start(self, total: int) -> float:
        warm = [mb for done, mb in self.points if done >= total // 100]
        return warm[0] if warm else 0.0

    def peak(self) -> float:
        return max((mb for _, mb in self.points), default=0.0)

    def end(self) -> float:
        return self.points[-1][1] if self.points else 0.0

    def growth(self, total: int) -> float:
        return self.peak() - self.start(total)

    def series(self, total: int) -> str:
        """RSS at each tenth of the run."""
        out, mark = [], 0
        for done, mb in self.points:
            if done >= mark * total // 10:
                out.append(f"{mb:.0f}")
                mark = done * 10 // total + 1
        return " ".join(out)


def sizes(quick: bool) -> tuple[int, int]:
    jobs = int(os.environ.get("PIGEON_BENCH_MEMORY_JOBS", "1000000"))
    single = int(os.environ.get("PIGEON_BENCH_MEMORY_SINGLE", "50000"))
    return (min(jobs, 20_000), min(single, 2_000)) if quick else (jobs, single)


# -- the producer, in a process of its own ----------------------------------------


def produce(url: str, jobs: int, single: int) -> None:
    """Send the jobs; print one JSON line: RSS samples as (jobs sent, MB), per phase."""
    from pigeon import App

    app = App(url)

    @app.task(name="pigeon_peer.noop")  # the worker's task, under its name there
    async def noop() -> None:
        return None

    pid = os.getpid()
    batched: list[tuple[int, float]] = [(0, rss_mb(pid))]
    step = max(BATCH, jobs // 10)
    for sent in range(0, jobs, BATCH):
        noop.send_many([()] * min(BATCH, jobs - sent))
        if (sent + BATCH) % step == 0 or sent + BATCH >= jobs:
            batched.append((min(sent + BATCH, jobs), rss_mb(pid)))
    ones: list[tuple[int, float]] = [(0, rss_mb(pid))]
    began = time.perf_counter()
    for i in range(1, single + 1):
        noop.send()
        if i % max(1, single // 10) == 0:
            ones.append((i, rss_mb(pid)))
    rate = single / (time.perf_counter() - began) if single else 0.0
    app.close()
    print(json.dumps({"batched": batched, "single": ones, "single_rate": rate}), flush=True)


def run_producer(url: str, jobs: int, single: int, limit: float) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--produce", url, str(jobs), str(single)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=limit, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"the producer overran {limit:.0f} s"}
    lines = proc.stdout.strip().splitlines()
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        return {"error": f"the producer exited with {proc.returncode}: {proc.stderr.strip()[-300:]}"}
    return result


# -- the worker ----------------------------------------------------------------------


def drain(url: str, total: int, limit: float) -> tuple[Trace, float]:
    """Drain ``total`` jobs with a burst worker; its RSS against jobs done, and the jobs/s."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    argv = [
        sys.executable,
        "-m",
        "pigeon",
        "worker",
        "pigeon_peer:app",
        "-l",
        "warning",
        "--burst",
        "-c",
        "200",
    ]
    env = dict(os.environ, BENCH_URL=url, BENCH_PORT=str(sock.getsockname()[1]), BENCH_MODE="drain")
    env.update(BENCH_TARGET=str(total), PYTHONPATH=str(PEERS))
    trace = Trace()
    done, first, last = 0, 0.0, 0.0
    proc = subprocess.Popen(argv, cwd=PEERS, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + limit

    def progress() -> None:
        nonlocal done, first, last
        while True:  # every datagram so far
            try:
                msg = sock.recv(256).decode().split()
            except BlockingIOError:
                return
            if msg[0] == "P":
                done = max(done, int(msg[1]))
            elif msg[0] == "D":
                done, first, last = total, float(msg[1]), float(msg[2])

    try:
        while proc.poll() is None:
            if time.monotonic() > deadline:
                trace.why = f"stopped at the {limit:.0f} s bound after {done:,} jobs"
                break
            progress()
            mb = rss_mb(proc.pid)
            if mb and done:  # from its first jobs on: before them it is still starting
                trace.points.append((done, mb))
            time.sleep(SAMPLE_EVERY)
        progress()
    finally:
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate()
        sock.close()
    if done < total and not trace.why:
        trace.why = f"the worker exited with {proc.returncode} after {done:,} jobs: {err.decode()[-200:]}"
    return trace, (total - 1) / (last - first) if last > first else 0.0


@dataclass
class Result:
    broker: str
    producer: dict[str, Any]
    worker: Trace
    rate: float
    load: float


def measure(broker: str, jobs: int, single: int) -> Result:
    place, _ = backlog.places()[broker]
    total = jobs + single
    with place() as url:
        load = os.getloadavg()[0]
        producer = run_producer(url, jobs, single, limit=max(300.0, total / 1_000))
        if "error" in producer:
            return Result(broker, producer, Trace(why="not run: the producer failed"), 0.0, load)
        worker, rate = drain(url, total, limit=max(300.0, total / 2_000))
    return Result(broker, producer, worker, rate, load)


def report(results: list[Result], jobs: int, single: int, console: Any) -> None:
    from rich.table import Table

    total = jobs + single
    t = Table(
        title=f"memory: a producer sending {jobs:,} jobs ({single:,} more one by one), a worker draining them"
    )
    for col in (
        "broker",
        "process",
        "RSS start MB",
        "peak MB",
        "end MB",
        "growth MB",
        "aim",
        "RSS by tenths",
        "load",
    ):
        t.add_column(col, justify="left" if col in ("broker", "process", "RSS by tenths") else "right")
    for r in results:
        if "error" in r.producer:
            t.add_row(
                r.broker, "producer", f"[yellow]n/a[/] {r.producer['error']}", *[""] * 5, f"{r.load:.1f}"
            )
        else:
            for phase, what in (
                ("batched", f"producer, send_many({BATCH:,})"),
                ("single", "producer, send()"),
            ):
                pts = r.producer[phase]
                grow = max(mb for _, mb in pts) - pts[1 if len(pts) > 1 else 0][1]
                extra = f" ({r.producer['single_rate']:,.0f}/s)" if phase == "single" else ""
                series = " ".join(f"{mb:.0f}" for _, mb in pts)
                t.add_row(
                    r.broker,
                    what + extra,
                    f"{pts[0][1]:.0f}",
                    f"{max(mb for _, mb in pts):.0f}",
                    f"{pts[-1][1]:.0f}",
                    f"{grow:+.0f}",
                    "",
                    series,
                    f"{r.load:.1f}",
                )
        w = r.worker
        if not w.points:
            t.add_row(r.broker, "worker", f"[yellow]n/a[/] {w.why}", *[""] * 5, "")
            continue
        growth = w.growth(total)
        mark = "[green]✓[/]" if growth <= AIM_MB and not w.why else "[red]✗[/]"
        label = f"worker, --burst -c 200 ({r.rate:,.0f}/s)" + (f" [yellow]{w.why}[/]" if w.why else "")
        t.add_row(
            r.broker,
            label,
            f"{w.start(total):.0f}",
            f"{w.peak():.0f}",
            f"{w.end():.0f}",
            f"{growth:+.0f}",
            f"≤ {AIM_MB:.0f} {mark}",
            w.series(total),
            "",
        )
        t.add_section()
    console.print(t)
    console.print(
        "  producer growth: its peak over its RSS after the first tenth (batched) or the first"
        " sample (one by one); worker: start is its RSS once 1% of the jobs are done, growth its peak"
        " over that; RSS by tenths: the RSS at each tenth of the run",
        style="dim",
        highlight=False,
    )


def run(brokers: list[str], jobs: int, single: int, console: Any) -> list[Result]:
    available = backlog.places()
    results = []
    for broker in brokers:
        if broker not in available:
            console.print(f"[yellow]memory on {broker}[/] skipped: no server")
            continue
        with console.status(f"memory: {jobs + single:,} jobs on {broker}…"):
            results.append(measure(broker, jobs, single))
    return results


def main() -> int:
    from rich.console import Console

    if sys.argv[1:2] == ["--produce"]:
        produce(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, help="jobs sent in batches (default 1,000,000)")
    parser.add_argument("--single", type=int, help="jobs sent one by one after them (default 50,000)")
    parser.add_argument("--only", action="append", choices=["sqlite", "postgres", "redis"])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    jobs, single = sizes(args.quick)
    jobs = args.jobs if args.jobs is not None else jobs
    single = args.single if args.single is not None else single
    console = Console()
    report(run(args.only or ["sqlite", "postgres", "redis"], jobs, single, console), jobs, single, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
