"""Steady load: producers at a constant rate while a worker runs the jobs, beside the peers.

    scripts/with-servers .venv/bin/python benchmarks/steady.py [--seconds 60] [--rates 2000,5000]

For each broker (SQLite, PostgreSQL, Redis) and each rate, pigeon and the peer whose driver
exists there (Huey on SQLite, pgqueuer on PostgreSQL, taskiq on Redis) run the same
workload through ``benchmarks/peers/``: one worker process at the tool's defaults, and a
producer (the driver) sending the rate for the given seconds, in 10 ms ticks, with the
tool's own send call (its batch send where it has one). Each job carries the time its
send began; its start is stamped in the worker. Printed: enqueue→start latency p50, p99
and max, p99 over each half of the run (a latency that grows shows there), the backlog
(sent, not started; sampled every second) at its largest and when sending stopped, what
the producer achieved, and the worker's CPU per job. The load is shared: the 1-minute
load average is printed beside each run.

``PIGEON_BENCH_STEADY_SECONDS`` (60 here; 20 in ``make bench``) and
``PIGEON_BENCH_STEADY_RATES`` (``2000,5000``) size it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import servers  # noqa: E402
from benchmarks.peers import envs  # noqa: E402

CATCH_UP = 30.0  # after sending stops, how long the worker gets to start what is left
PEERS = {"sqlite": "huey", "postgres": "pgqueuer", "redis": "taskiq"}


@dataclass
class Run:
    broker: str
    rate: int
    tool: str
    out: dict[str, Any]
    load: float


def sizes(quick: bool, seconds: float | None = None, rates: str | None = None) -> tuple[float, list[int]]:
    secs = seconds or float(os.environ.get("PIGEON_BENCH_STEADY_SECONDS", "60"))
    wanted = [int(r) for r in (rates or os.environ.get("PIGEON_BENCH_STEADY_RATES", "2000,5000")).split(",")]
    return (min(secs, 5.0), wanted[:1]) if quick else (secs, wanted)


@contextlib.contextmanager
def place(broker: str, tool: str) -> Iterator[str]:
    """A fresh store for one run; its URL (a file path for Huey)."""
    if broker == "sqlite":
        with tempfile.TemporaryDirectory(prefix="pigeon-steady-") as tmp:
            yield f"{tmp}/huey.db" if tool == "huey" else f"sqlite:///{tmp}/pigeon.db"
    elif broker == "postgres":
        with servers.pg_place(os.environ[servers.PG_ENV], tool, "steady") as url:
            yield url
    else:
        spec = next(t for t in servers.REDIS_TOOLS if t.name == tool)
        with servers.redis_place(os.environ[servers.REDIS_ENV], spec) as url:
            yield url


def interpreter(tool: str) -> tuple[Path | None, str]:
    if tool in ("pigeon", "huey"):  # Huey is in pigeon's own venv (the bench extra)
        return Path(sys.executable), ""
    env = envs.ensure(tool)
    return env.python, env.why


def available(broker: str) -> str:
    """Why the broker's runs are skipped, or empty."""
    need = {"postgres": servers.PG_ENV, "redis": servers.REDIS_ENV}.get(broker)
    return f"${need} is not set" if need and not os.environ.get(need) else ""


def run(brokers: list[str], seconds: float, rates: list[int], console: Any) -> list[Run]:
    runs: list[Run] = []
    for broker in brokers:
        if why := available(broker):
            console.print(f"[yellow]steady load on {broker}[/] skipped: {why}")
            continue
        for rate in rates:
            for tool in ("pigeon", PEERS[broker]):
                py, why = interpreter(tool)
                load = os.getloadavg()[0]
                if py is None:
                    runs.append(Run(broker, rate, tool, {"error": why}, load))
                    continue
                status = f"steady load: {tool} on {broker}, {rate:,}/s for {seconds:.0f} s…"
                with console.status(status), place(broker, tool) as url:
                    extra = ["--seconds", str(seconds)]
                    out = servers.run_driver(
                        py, tool, "steady", rate, url, CATCH_UP, extra=extra, slack=seconds + 90
                    )
                runs.append(Run(broker, rate, tool, out, load))
    return runs


def report(runs: list[Run], seconds: float, console: Any) -> None:
    from rich.table import Table

    t = Table(title=f"steady load: a constant rate for {seconds:.0f} s, one worker at its defaults")
    cols = (
        "broker",
        "rate",
        "tool",
        "sent/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "p99 1st/2nd half",
        "backlog max/end",
        "catch-up s",
        "CPU µs/job",
        "load",
    )
    for col in cols:
        t.add_column(col, justify="left" if col in ("broker", "tool") else "right")
    notes = servers.Notes()
    last = ""
    for r in runs:
        if last and r.broker != last:
            t.add_section()
        last = r.broker
        o = r.out
        if "error" in o:
            mark = notes.mark(r.tool, str(o["error"]))
            t.add_row(r.broker, f"{r.rate:,}", r.tool, f"[yellow]n/a[/]{mark}", *[""] * 7, f"{r.load:.1f}")
            continue
        short = o["started"] < o["sent"]
        started = f" ({o['started']:,} of {o['sent']:,} started)" if short else ""
        mark = notes.mark(r.tool, f"{o.get('note', '')}{started}")
        t.add_row(
            r.broker,
            f"{r.rate:,}",
            r.tool + mark,
            f"{o['send_rate']:,.0f}",
            f"{o['p50']:.1f}",
            f"{o['p99']:.1f}",
            f"{o['max']:.0f}",
            f"{o['p99_first_half']:.1f} / {o['p99_second_half']:.1f}",
            f"{o['backlog_max']:,} / {o['backlog_end']:,}",
            f"{o['catch_up']:.1f}",
            f"{o['cpu_per_job'] * 1e6:.0f}",
            f"{r.load:.1f}",
            style="bold" if r.tool == "pigeon" else None,
        )
    console.print(t)
    notes.print(console)
    console.print(
        "  sent/s: what the producer achieved (it sends what is due every 10 ms, so a slow send shows"
        " here); backlog: jobs sent and not started, every second; catch-up: from the last send until"
        f" every job had started (bound {CATCH_UP:.0f} s); CPU: the worker's process tree over the run",
        style="dim",
        highlight=False,
    )


def main() -> int:
    from rich.console import Console

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, help="how long producers send (default 60)")
    parser.add_argument("--rates", help="jobs/s, comma-separated (default 2000,5000)")
    parser.add_argument("--only", action="append", choices=list(PEERS))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    seconds, rates = sizes(args.quick, args.seconds, args.rates)
    console = Console()
    report(run(args.only or list(PEERS), seconds, rates, console), seconds, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
