"""Scale-out: one queue drained by 1, 2 and 4 worker processes, and by `pigeon worker --processes`.

    scripts/with-servers .venv/bin/python benchmarks/scaleout.py [--jobs N] [--only sqlite|postgres|redis]

For each broker and each layout, the workers (``pigeon worker -c 200``, as separate
processes or as one supervisor with ``--processes N``) start on an empty store and
register; then N no-op jobs are sent in batches of 10,000 and drained. Each job tells the
harness over UDP when it started. Printed: jobs/s from the first job's start to the last's,
the ratio to one process, and CPU per job: the workers' process trees (and the server's,
when ``make bench`` started it here) over the drain, divided by the jobs. On a machine of
two shared cores the curve flattens early; CPU per job is the figure that carries to
bigger machines. ``PIGEON_BENCH_SCALE_JOBS`` (20,000) sizes it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "benchmarks" / "peers"
for p in (str(ROOT), str(PEERS)):
    if p not in sys.path:
        sys.path.insert(0, p)

from benchmarks import backlog, servers  # noqa: E402
from benchmarks.peers.loadcommon import Collector, tree_cpu  # noqa: E402
from pigeon import App  # noqa: E402

CONCURRENCY = 200
FILL_BATCH = 10_000
# (label, separate processes, --processes of each)
LAYOUTS = [("1 process", 1, 1), ("2 processes", 2, 1), ("4 processes", 4, 1)]
LAYOUTS += [("--processes 2", 1, 2), ("--processes 4", 1, 4)]
SERVER = {"postgres": "postgres", "redis": "redis"}


@dataclass
class Point:
    broker: str
    layout: str
    rate: float | None = None
    cpu: float | None = None  # worker CPU seconds per job
    server_cpu: float | None = None
    load: float = 0.0
    why: str = ""


def jobs_for(quick: bool) -> int:
    n = int(os.environ.get("PIGEON_BENCH_SCALE_JOBS", "20000"))
    return min(n, 2_000) if quick else n


def start_workers(url: str, port: int, separate: int, processes: int, log: Path) -> list[Any]:
    import subprocess

    argv = [sys.executable, "-m", "pigeon", "worker", "pigeon_peer:app", "-l", "warning"]
    argv += ["-c", str(CONCURRENCY)] + (["--processes", str(processes)] if processes > 1 else [])
    env = dict(os.environ, BENCH_URL=url, BENCH_PORT=str(port), PYTHONPATH=str(PEERS))
    out = []
    for i in range(separate):
        with open(f"{log}.{i}", "wb") as f:
            out.append(subprocess.Popen(argv, cwd=PEERS, env=env, stdout=f, stderr=subprocess.STDOUT))
    return out


def stop(procs: list[Any]) -> None:
    import signal
    import subprocess

    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


async def queue_paused(app: App, paused: bool) -> None:
    broker = await app.connection()
    await (broker.pause_queue("default") if paused else broker.resume_queue("default"))


def measure(broker: str, url: str, n: int, separate: int, processes: int, limit: float) -> Point:
    point = Point(broker, "")
    app = App(url)

    @app.task(name="pigeon_peer.stamped")  # the worker's task, under its name there
    async def stamped(sent: float) -> None:
        return None

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    procs: list[Any] = []
    try:
        stamped.send_many([])  # opens (and on SQLite creates) the store before the workers
        collector = Collector(sock)
        log = Path(os.environ.get("TMPDIR", "/tmp")) / f"pigeon-scaleout-{os.getpid()}.log"
        procs = start_workers(url, sock.getsockname()[1], separate, processes, log)
        want = separate * processes

        async def registered() -> int:
            return len(await (await app.connection()).workers())

        deadline = time.monotonic() + 60
        while app.portal_call(registered()) < want:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                point.why = f"{app.portal_call(registered())} of {want} workers registered"
                return point
            time.sleep(0.1)
        # Filled while paused, so the enqueues' cost is left out of the drain's.
        app.portal_call(queue_paused(app, True))
        for start in range(0, n, FILL_BATCH):
            stamped.send_many([(0.0,)] * min(FILL_BATCH, n - start))
        server = servers.server_pid(SERVER.get(broker, ""))
        pids = [p.pid for p in procs]
        cpu0 = sum(tree_cpu(p) for p in pids)
        server0 = tree_cpu(int(server)) if server else 0.0
        point.load = os.getloadavg()[0]
        app.portal_call(queue_paused(app, False))
        deadline = time.monotonic() + limit
        while len(collector.pairs) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        cpu = sum(tree_cpu(p) for p in pids) - cpu0
        server_cpu = (tree_cpu(int(server)) - server0) if server else None
        collector.close()
        starts = sorted(started for _, started in collector.pairs)
        if len(starts) < n:
            point.why = f"{len(starts):,} of {n:,} started within {limit:.0f} s"
            return point
        point.rate = (n - 1) / (starts[-1] - starts[0])
        point.cpu = cpu / n
        point.server_cpu = server_cpu / n if server_cpu is not None else None
        return point
    finally:
        stop(procs)
        app.close()
        sock.close()


def run(brokers: list[str], n: int, console: Any) -> list[Point]:
    places = backlog.places()
    points: list[Point] = []
    for broker in brokers:
        if broker not in places:
            points.append(Point(broker, "all", why=f"no server: {broker.upper()} URL unset"))
            continue
        place, _ = places[broker]
        for label, separate, processes in LAYOUTS:
            with console.status(f"scale-out: {broker}, {label}…"), place() as url:
                try:
                    point = measure(broker, url, n, separate, processes, limit=max(60.0, n / 500))
                except Exception as exc:  # noqa: BLE001 - reported in the table
                    point = Point(broker, label, why=f"{type(exc).__name__}: {exc}")
            point.layout = label
            points.append(point)
    return points


def report(points: list[Point], n: int, console: Any) -> None:
    from rich.table import Table

    t = Table(
        title=f"scale-out: {n:,} no-ops, `pigeon worker -c {CONCURRENCY}` per process, {os.cpu_count()} CPUs"
    )
    for col in (
        "broker",
        "workers",
        "jobs/s",
        "× 1 process",
        "worker CPU µs/job",
        "server CPU µs/job",
        "load",
    ):
        t.add_column(col, justify="left" if col in ("broker", "workers") else "right")
    base: dict[str, float] = {}
    last = ""
    for p in points:
        if last and p.broker != last:
            t.add_section()
        last = p.broker
        if p.rate is None:
            t.add_row(p.broker, p.layout, f"[yellow]n/a[/] {p.why}", "", "", "", f"{p.load:.1f}")
            continue
        base.setdefault(p.broker, p.rate)
        t.add_row(
            p.broker,
            p.layout,
            f"{p.rate:,.0f}",
            f"{p.rate / base[p.broker]:.2f}",
            f"{(p.cpu or 0) * 1e6:.0f}",
            "" if p.server_cpu is None else f"{p.server_cpu * 1e6:.0f}",
            f"{p.load:.1f}",
        )
    console.print(t)
    console.print(
        "  jobs/s: first job's start to the last's, across all processes; CPU: process trees (user +"
        " system) from the queue's resume (it is filled while paused) to the last start, per job;"
        " the server's only where it runs here (SQLite has none: its work is in the workers' CPU)",
        style="dim",
        highlight=False,
    )


def main() -> int:
    from rich.console import Console

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--jobs", type=int, help="jobs per drain (default $PIGEON_BENCH_SCALE_JOBS or 20,000)"
    )
    parser.add_argument("--only", action="append", choices=["sqlite", "postgres", "redis"])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = args.jobs or jobs_for(args.quick)
    console = Console()
    with contextlib.suppress(KeyboardInterrupt):
        report(run(args.only or ["sqlite", "postgres", "redis"], n, console), n, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
