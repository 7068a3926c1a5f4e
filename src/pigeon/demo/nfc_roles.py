"""The NFC station across processes and machines, through a server broker.

Real deployments put the readers on small boxes at the doors and the look-ups elsewhere:

- ``--role readers --box NAME``: this box's stations (services) publish their reads, and a
  worker of its own lights this box's LEDs (queue ``door.NAME``); it prints its reads'
  tag→LED times, measured on its own clock, and exits when its reads are answered.
- ``--role workers``: the handlers (``play_sound``, ``look_up_badge``) until SIGTERM.
- ``--readers N --workers M``: starts both on this machine and sums the readers' reports.

A reader that cannot reach the broker keeps each read and publishes it again until it is
stored; a reader killed and restarted under the same box name lights the LEDs its
predecessor's reads were answered with (its predecessor's claims are recovered).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from pigeon.demo import nfc
from pigeon.demo.nfc_clock import Breakdown
from pigeon.job import JobState

# A demo box is declared lost after 5 s of silence (not 10): a restarted reader's LEDs come sooner.
LIVELY: dict[str, Any] = {"heartbeat": 0.5, "dead_after": 5.0, "recover_every": 1.0}
_PENDING = (JobState.QUEUED.value, JobState.SCHEDULED.value, JobState.RUNNING.value)


def _connect(url: str, store: str | None, tmp: str) -> None:
    nfc.app.url = url
    if store:
        nfc.app.store = store
    nfc.use_badges(Path(tmp) / "badges.db")  # the same 500 badges in every process


async def _door_idle(box: str) -> bool:
    """Whether nothing is pending on this box's door queue (a predecessor's LEDs included)."""
    broker = await nfc.app.client.connection()
    for stats in await broker.stats():
        if stats.queue == nfc.door_queue(box):
            return not any(stats.counts.get(state, 0) for state in _PENDING)
    return True


async def _readers(box: str, stations: int, seconds: float, interval: float, console: Console) -> None:
    await nfc.app.amigrate()  # a new PostgreSQL schema or namespace: the first box creates it
    nfc.app.service_group(nfc.reader, [(f"{box}-{i}", interval, box) for i in range(stations)])
    config = {**LIVELY, "queues": (nfc.door_queue(box),), "concurrency": 500}
    async with nfc.observed_worker(**config) as worker:
        title = f"pigeon NFC station — box {box} ({nfc.app.client.url.split(':', 1)[0]})"
        await nfc.read_for(seconds, title, stations, console, worker)
        deadline = time.monotonic() + 15
        while not await _door_idle(box) and time.monotonic() < deadline:  # noqa: ASYNC110 - a broker poll
            await asyncio.sleep(0.2)
    await nfc.app.aclose()


def readers(
    url: str,
    box: str,
    stations: int,
    seconds: float,
    interval: float,
    *,
    store: str | None = None,
    journal: Path | None = None,
    report: Path | None = None,
) -> bool:
    """Run one box of readers; True when every read it published was answered by a light."""
    console = Console()
    with tempfile.TemporaryDirectory(prefix="pigeon-nfc-") as tmp:
        _connect(url, store, tmp)
        if journal is not None:
            journal.mkdir(parents=True, exist_ok=True)
            nfc.hw.journal = (
                (journal / f"{box}.published").open("a"),
                (journal / f"{box}.lit").open("a"),
            )
        try:
            asyncio.run(_readers(box, stations, seconds, interval, console))
        finally:
            nfc.app.close()
        ok = nfc.summary(console)
    if report is not None:
        with nfc.hw.lock:
            counts = {"reads": len(nfc.hw.reads), "answered": len(nfc.hw.reads & nfc.hw.answered)}
        rows = [(round(t, 3), [round(s, 3) for s in steps]) for t, steps in nfc.hw.breakdown.rows]
        report.write_text(json.dumps({"box": box, **counts, "retries": nfc.hw.retries, "rows": rows}))
    return ok


def workers(url: str, *, store: str | None = None, concurrency: int = 1000) -> None:
    """Run the look-up and sound handlers until SIGTERM or SIGINT."""
    with tempfile.TemporaryDirectory(prefix="pigeon-nfc-") as tmp:
        _connect(url, store, tmp)
        worker = nfc.app.make_worker(**LIVELY, queues=("default",), concurrency=concurrency, services=False)
        worker.observer = nfc.hw.clock

        async def run() -> None:
            await nfc.app.amigrate()
            nfc.hw.clock.seam = await nfc.app.client.connection()
            ready = asyncio.create_task(_say_ready(worker.started))
            await worker.run()
            ready.cancel()

        try:
            asyncio.run(run())
        finally:
            nfc.app.close()


async def _say_ready(started: asyncio.Event) -> None:
    await started.wait()
    print("workers ready", flush=True)


def launch(
    url: str,
    *,
    readers_n: int,
    workers_n: int,
    stations: int,
    seconds: float,
    interval: float,
    store: str | None = None,
    report: Path | None = None,
) -> bool:
    """Start ``workers_n`` worker and ``readers_n`` reader processes here; sum their reports."""
    console = Console()
    base = [sys.executable, "-m", "pigeon", "demo", "--url", url, *(["--store", store] if store else [])]
    console.rule(
        f"[bold]{stations} stations in {readers_n} reader processes, {workers_n} worker processes, "
        f"{seconds:.0f} s, a read every {interval} s per station"
    )
    cpu: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="pigeon-nfc-") as tmp:
        pool = [
            subprocess.Popen([*base, "--role", "workers"], stdout=subprocess.PIPE, text=True)
            for _ in range(workers_n)
        ]
        try:
            for proc in pool:  # the first line a worker process prints says it is up
                assert proc.stdout is not None
                if "workers ready" not in proc.stdout.readline():
                    raise RuntimeError("a worker process did not start")
            share = [stations // readers_n + (i < stations % readers_n) for i in range(readers_n)]
            boxes = [
                subprocess.Popen(
                    [
                        *base,
                        *("--role", "readers", "--box", f"box-{i}", "--stations", str(n)),
                        *("--seconds", str(seconds), "--interval", str(interval)),
                        *("--report", str(Path(tmp) / f"box-{i}.json")),
                    ],
                    stdout=subprocess.DEVNULL,
                )
                for i, n in enumerate(share)
            ]
            cpu["readers"] = sum(_reap(box) for box in boxes)
        finally:
            for proc in pool:
                proc.send_signal(signal.SIGTERM)
            cpu["workers"] = sum(_reap(proc) for proc in pool)
        reports = [json.loads(p.read_text()) for p in sorted(Path(tmp).glob("box-*.json"))]
    ok = _print_reports(console, reports, readers_n)
    _total(console, reports, cpu, report)
    return ok


def _total(console: Console, reports: list[Any], cpu: dict[str, float], report: Path | None) -> None:
    """Print CPU per read by role; write the boxes' figures together to ``report``."""
    reads = sum(int(r["reads"]) for r in reports)
    per_read = {role: spent / max(reads, 1) * 1000 for role, spent in cpu.items()}
    shares = " + ".join(f"{role} {ms:.2f}" for role, ms in per_read.items())
    console.print(f"CPU per read (ms, this machine's processes, not the broker's server): {shares}")
    if report is not None:
        lat = [t / 1000 for r in reports for t, _ in r["rows"]]
        figures = {
            "reads": reads,
            "answered": sum(int(r["answered"]) for r in reports),
            **{k: nfc.percentile(lat, q) * 1000 for k, q in nfc.QUANTILES},
            "cpu_per_read": sum(per_read.values()),
        }
        report.write_text(json.dumps(figures))


def _reap(proc: subprocess.Popen[Any]) -> float:
    """Wait for ``proc``; the CPU seconds (user + system) it spent."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


def _print_reports(console: Console, reports: list[dict[str, object]], expected: int) -> bool:
    table = Table(title="boxes")
    for col in ("box", "reads", "answered", "p50", "p99", "max"):
        table.add_column(col, justify="right")
    together = Breakdown()
    ok = len(reports) == expected
    for r in reports:
        rows = [(float(t), tuple(s)) for t, s in r["rows"]]  # type: ignore[attr-defined]
        together.rows += rows
        lat = [t / 1000 for t, _ in rows]
        ok = ok and r["reads"] == r["answered"] and bool(r["reads"])
        table.add_row(
            str(r["box"]),
            str(r["reads"]),
            str(r["answered"]),
            *(f"{nfc.percentile(lat, q) * 1000:.1f} ms" for q in (0.5, 0.99, 1.0)),
        )
    lat = [t / 1000 for t, _ in together.rows]
    reads = sum(int(r["reads"]) for r in reports)  # type: ignore[call-overload]
    answered = sum(int(r["answered"]) for r in reports)  # type: ignore[call-overload]
    table.add_row(
        "all",
        str(reads),
        str(answered),
        *(f"{nfc.percentile(lat, q) * 1000:.1f} ms" for q in (0.5, 0.99, 1.0)),
    )
    console.print(table)
    together.print(console)
    if ok:
        console.print("[bold green]every read was answered by a light[/]")
    else:
        console.print(f"[bold red]{reads - answered} reads were not answered[/] ({len(reports)} reports)")
    return ok
