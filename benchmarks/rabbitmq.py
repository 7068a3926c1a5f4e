"""pigeon on RabbitMQ beside Celery and Dramatiq, on the same server in the same run.

``PIGEON_TEST_RABBITMQ_URL`` (``make bench`` starts the node through ``scripts/with-servers``)
names the server; unset, the section is skipped with a note. Each tool runs as in the other
server sections (``servers.py``): a driver in ``peers/`` (``pigeon_amqp_peer.py``,
``celery_amqp_peer.py``, ``dramatiq_amqp_peer.py``) with the tool's own virtualenv, its own
worker, one process, and jobs that tell the driver when they start.

Every workload runs three rounds (one with ``--quick``), the tools in turn within each
round, and each cell is the median round. Workloads: a no-op drain (each tool at its usual
concurrency: pigeon 200 jobs in flight, Celery 8 threads, Dramatiq its default 8 threads);
2,000 jobs that each sleep 50 ms (I/O), every tool at 200 concurrent jobs (pigeon's
coroutines, the others' threads); idle latency, one job at a time.

Each tool at its defaults on RabbitMQ: pigeon publishes with confirms to a quorum queue and keeps
every job's record in its store (an SQLite file here); "pigeon alone" is RabbitMQ alone (the same
driver, no store: the unacknowledged delivery is the lease); Celery and Dramatiq publish without
confirms to classic queues and keep no record (no result backend). Every workload gets queues of
its own, deleted afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks import servers
from benchmarks.peers import envs
from benchmarks.servers import Cell, Column, Interpreter, Notes

RABBIT_ENV = "PIGEON_TEST_RABBITMQ_URL"
NAPS = 2_000
NAP = 0.05
NAP_CONCURRENCY = 200
ROUNDS = 3


@dataclass(frozen=True)
class Tool:
    name: str
    driver: str  # peers/<driver>_peer.py
    drain_share: float = 1.0


TOOLS = [
    Tool("pigeon", "pigeon_amqp"),
    Tool("pigeon alone", "pigeon_amqp"),  # RabbitMQ alone: no store, the delivery is the lease
    Tool("celery", "celery_amqp", drain_share=0.5),
    Tool("dramatiq", "dramatiq_amqp", drain_share=0.5),
]


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Variables the driver (and its worker) inherit, for one run."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def place(base: str, tool: Tool, tmp: Path) -> Iterator[str]:
    """The URL for one workload of ``tool``, with queues of its own, deleted afterwards."""
    slot = f"bench_{tool.name.replace(' ', '_')}_{uuid.uuid4().hex[:8]}"
    if tool.name == "pigeon":
        url = f"{base}?namespace={slot}&store=sqlite:///{tmp}/{slot}.db"
        queues = [f"{slot}.default"]
    elif tool.name == "pigeon alone":
        url, queues = f"{base}?namespace={slot}", [f"{slot}.default", f"{slot}.default.dead"]
    else:
        url, queues = base, [slot, f"{slot}.DQ", f"{slot}.XQ"]  # Dramatiq's delay and dead-letter queues
    with environment(BENCH_QUEUE=slot):
        try:
            yield url
        finally:
            asyncio.run(delete(base, queues))


async def delete(base: str, queues: list[str]) -> None:
    import aio_pika

    connection = await aio_pika.connect(base, timeout=10)
    async with connection:
        channel = await connection.channel()
        for q in queues:
            await channel.queue_delete(q)


def interpreters(console: Console) -> dict[str, Interpreter]:
    out = {"pigeon": servers.pigeon_interpreter(), "pigeon alone": servers.pigeon_interpreter()}
    for name in ("celery", "dramatiq"):
        with console.status(f"peer venv {name}…"):
            env = envs.ensure(name)
        out[name] = Interpreter(env.python, env.why, env.version)
        if env.seconds:
            console.print(f"  peer venv {name} created in {env.seconds:.0f} s (not counted)", style="dim")
    return out


def section(quick: bool, found: dict[str, Interpreter], tmp: Path) -> list[Column] | str:
    base = os.environ.get(RABBIT_ENV)
    if not base:
        return f"skipped: ${RABBIT_ENV} is not set (`make bench` starts the servers)"
    scale = servers.QUICK if quick else servers.FULL
    naps = NAPS // 5 if quick else NAPS
    drain = Column("drain no-ops", "jobs/s", True, "{:,.0f}", "≥ 2× best peer", aim_ratio=2.0)
    io = Column(f"{naps:,} × {NAP * 1000:.0f} ms I/O", "jobs/s", True, "{:,.0f}")
    p50 = Column("latency p50", "ms", False, "{:.2f}", "≤ best peer", aim_ratio=1.0)
    p99 = Column("latency p99", "ms", False, "{:.2f}", "≤ best peer", aim_ratio=1.0)
    bound = 20.0 if quick else 60.0
    runs: dict[tuple[str, str], list[tuple[Cell, ...]]] = {}
    # Rounds, each tool in turn: on a shared machine the load drifts, and a tool measured
    # only at a busy moment would carry it alone. Each cell is the median round.
    for _ in range(1 if quick else ROUNDS):
        for tool in TOOLS:
            py = found[tool.name].python
            if py is None:
                continue
            n = max(500, int(scale.drain * tool.drain_share))
            with place(base, tool, tmp) as url:
                scaled = "" if n == scale.drain else f"{n:,} jobs (scaled down: a slow drain)"
                result = servers.run_driver(py, tool.driver, "drain", n, url, bound)
                runs.setdefault((tool.name, "drain"), []).append((servers.rate_cell(result, scaled),))
            nap = environment(BENCH_NAP=str(NAP), BENCH_CONCURRENCY=str(NAP_CONCURRENCY))
            with place(base, tool, tmp) as url, nap:
                result = servers.run_driver(py, tool.driver, "drain", naps, url, bound)
                runs.setdefault((tool.name, "io"), []).append((servers.rate_cell(result),))
            with place(base, tool, tmp) as url:
                result = servers.run_driver(py, tool.driver, "latency", scale.latency, url, 30.0)
                runs.setdefault((tool.name, "latency"), []).append(servers.latency_cells(result))
    for tool in TOOLS:
        why = found[tool.name].why
        drain.cells[tool.name] = median(runs.get((tool.name, "drain"), []), 0, why)
        io.cells[tool.name] = median(runs.get((tool.name, "io"), []), 0, why)
        p50.cells[tool.name] = median(runs.get((tool.name, "latency"), []), 0, why)
        p99.cells[tool.name] = median(runs.get((tool.name, "latency"), []), 1, why)
    return [drain, io, p50, p99]


def best_peer(col: Column) -> tuple[str, float] | None:
    """The best of the other tools' cells (neither pigeon's mode)."""
    found = [(k, c.value) for k, c in col.cells.items() if not k.startswith("pigeon") and c.value is not None]
    if not found:
        return None
    pick = max if col.higher_is_better else min
    return pick(found, key=lambda kv: kv[1])


def median(rounds: list[tuple[Cell, ...]], i: int, why: str) -> Cell:
    """The median round's cell ``i``, its detail saying the spread; or why there is none."""
    cells = [r[i] for r in rounds]
    measured = sorted((c for c in cells if c.value is not None), key=lambda c: c.value or 0.0)
    if not measured:
        return cells[0] if cells else Cell(why=why or "not run")
    mid = measured[(len(measured) - 1) // 2]
    if len(cells) == 1:
        return mid
    lo, hi = measured[0].value, measured[-1].value
    spread = f"median of {len(measured)} rounds of {len(cells)} ({lo:,.2f} to {hi:,.2f})"
    return Cell(mid.value, detail="; ".join(x for x in (mid.detail, spread) if x))


def report(console: Console, columns: list[Column], found: dict[str, Interpreter]) -> None:
    table = Table(title="RabbitMQ: one worker process per tool, same node")
    table.add_column("tool")
    for col in columns:
        table.add_column(f"{col.title} ({col.unit})", justify="right")
    notes = Notes()
    for tool in TOOLS:
        interp = found.get(tool.name)
        row = [f"{tool.name} {interp.version}" if interp and interp.version else tool.name]
        for col in columns:
            cell = col.cells.get(tool.name, Cell(why="not run"))
            shown = "[yellow]n/a[/]" if cell.value is None else col.fmt.format(cell.value)
            row.append(shown + notes.mark(tool.name, cell.why if cell.value is None else cell.detail))
        table.add_row(*row, style="bold" if tool.name.startswith("pigeon") else None)
    table.add_section()
    best_row = ["best peer"]
    for col in columns:
        best = best_peer(col)
        best_row.append(f"{col.fmt.format(best[1])} ({best[0]})" if best else "")
    table.add_row(*best_row)
    for mine in ("pigeon", "pigeon alone"):
        ratio_row, aim_row = [f"{mine} / best peer"], [f"{mine}'s aim"]
        for col in columns:
            best = best_peer(col)
            pigeon = col.cells.get(mine, Cell()).value
            ratio_row.append(servers.ratio_text(col, pigeon, best))
            aim_row.append(servers.aim_text(col, pigeon, best))
        table.add_row(*ratio_row)
        table.add_row(*aim_row)
    console.print(table)
    notes.print(console)
    console.print(
        "[dim]RabbitMQ section: pigeon publishes with confirms to a quorum queue and records every job "
        "in its store (SQLite); pigeon alone publishes with confirms to a quorum queue and records "
        "nothing (the unacknowledged delivery is the lease); Celery and Dramatiq publish without "
        "confirms to classic queues and record nothing. Drains run from the first job's start to "
        "the N-th's, stamped in the worker.[/]"
    )


def run(quick: bool, console: Console) -> None:
    """The RabbitMQ section, printed."""
    began = time.perf_counter()
    found = interpreters(console)
    with tempfile.TemporaryDirectory(prefix="pigeon-bench-amqp-") as tmp, console.status("RabbitMQ section…"):
        try:
            out = section(quick, found, Path(tmp))
        except Exception as exc:  # noqa: BLE001 - a broken section is reported, not fatal
            out = f"failed: {type(exc).__name__}: {exc}"
    console.print(f"  RabbitMQ section: {time.perf_counter() - began:.1f} s", style="dim")
    if isinstance(out, str):
        console.print(f"[yellow]RabbitMQ[/] {out}", highlight=False)
    else:
        report(console, out, found)
