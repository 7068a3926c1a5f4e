"""Single sends: one job per call, from synchronous code, as a web request sends; pigeon beside its peers.

For each broker (SQLite, Redis, PostgreSQL) every tool's driver (``peers/``)
sends N no-op jobs one by one from one thread (``single``), then from 4 threads
at once (``threads``): the tool's synchronous send where it has one, else its
async send on the driver's loop (4 tasks for the 4 threads). Tools run in turn,
in two interleaved rounds, and the better round counts, so a burst of load on
the shared machine weighs on no tool alone. Then pigeon's idle latency, an idle
worker and one job per 20 ms, sent with ``send()`` (from the driver's thread, no event
loop running there, as a web request's thread) and with ``asend()`` (on the driver's loop).

Run alone: ``scripts/with-servers .venv/bin/python benchmarks/run.py --only single``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks import django_send, servers
from benchmarks.servers import Cell, Column, Interpreter, Notes, Tool, aim_text, best_peer

TOOLS = {
    "sqlite": [Tool("pigeon"), Tool("huey")],
    "redis": [
        Tool("pigeon", redis_db=8),
        Tool("huey", redis_db=15),
        Tool("saq", redis_db=12),
        Tool("taskiq", redis_db=13),
        Tool("rq", redis_db=9),
    ],
    "postgres": [Tool("pigeon"), Tool("pgqueuer"), Tool("procrastinate")],
}
TITLES = {"sqlite": "SQLite", "redis": "Redis", "postgres": "PostgreSQL"}
ROUNDS = 2


@contextlib.contextmanager
def place(broker: str, tool: Tool, slot: str, tmp: Path) -> Iterator[str | None]:
    """A fresh, empty place for one run of one tool (None: the broker's server is not up)."""
    if broker == "sqlite":
        with tempfile.TemporaryDirectory(dir=tmp) as d:
            yield f"sqlite:///{d}/{tool.name}-{slot}.db"
        return
    base = os.environ.get(servers.REDIS_ENV if broker == "redis" else servers.PG_ENV)
    if not base:
        yield None
        return
    if broker == "redis":
        with servers.redis_place(base, tool) as url:
            yield url
    else:
        with servers.pg_place(base, tool.name, slot) as url:
            yield url


def run_tool(broker: str, tool: Tool, py: Path, n: int, tmp: Path, columns: list[Column]) -> None:
    for mode, col in zip(("single", "threads"), columns, strict=True):
        with place(broker, tool, mode, tmp) as url:
            if url is None:
                col.cells[tool.name] = Cell(why="the server is not up")
                continue
            cell = servers.rate_cell(servers.run_driver(py, tool.name, mode, n, url, 60.0))
        kept = col.cells.get(tool.name)
        if kept is None or kept.value is None or (cell.value is not None and cell.value > kept.value):
            col.cells[tool.name] = cell


def latency(broker: str, py: Path, n: int, tmp: Path) -> str:
    """pigeon's idle latency with send() and with asend(), p50 / p99 in ms."""
    shown = []
    for kind in ("sync", "async"):
        os.environ["BENCH_SEND"] = kind
        try:
            with place(broker, Tool("pigeon", redis_db=8), "latency", tmp) as url:
                if url is None:
                    return ""
                result = servers.run_driver(py, "pigeon", "latency", n, url, 30.0)
        finally:
            del os.environ["BENCH_SEND"]
        p50, p99 = servers.latency_cells(result)
        call = "send()" if kind == "sync" else "asend()"
        if p50.value is None or p99.value is None:
            shown.append(f"{call} n/a ({p50.why})")
        else:
            shown.append(f"{call} {p50.value:.2f} / {p99.value:.2f}")
    return ", ".join(shown)


def section(broker: str, n: int, latency_n: int, interpreters: dict[str, Interpreter], tmp: Path) -> None:
    tools = TOOLS[broker]
    one = Column(f"{n:,} sends, one thread", "jobs/s", True, "{:,.0f}", "≥ best peer", aim_ratio=1.0)
    four = Column(f"{n:,} sends, 4 threads", "jobs/s", True, "{:,.0f}", "≥ 1.5× best peer", aim_ratio=1.5)
    for _ in range(ROUNDS):
        for tool in tools:
            py = interpreters[tool.name].python
            if py is None:
                for col in (one, four):
                    col.cells[tool.name] = Cell(why=interpreters[tool.name].why)
                continue
            try:
                run_tool(broker, tool, py, n, tmp, [one, four])
            except RuntimeError as exc:  # its place could not be made (a Redis db in use): said, not fatal
                for col in (one, four):
                    col.cells.setdefault(tool.name, Cell(why=str(exc)))
    pigeon_py = interpreters["pigeon"].python
    assert pigeon_py is not None
    idle = latency(broker, pigeon_py, latency_n, tmp)
    report(broker, [one, four], interpreters, idle)


def report(broker: str, columns: list[Column], interpreters: dict[str, Interpreter], idle: str) -> None:
    console = Console()
    table = Table(title=f"{TITLES[broker]}: single sends, same server (better of {ROUNDS} rounds)")
    table.add_column("tool")
    for col in columns:
        table.add_column(f"{col.title} ({col.unit})", justify="right")
    notes = Notes()
    for tool in TOOLS[broker]:
        interp = interpreters[tool.name]
        row = [f"{tool.name} {interp.version}".strip()]
        for col in columns:
            cell = col.cells.get(tool.name, Cell(why="not run"))
            mark = notes.mark(tool.name, cell.why if cell.value is None else cell.detail)
            row.append(("[yellow]n/a[/]" if cell.value is None else col.fmt.format(cell.value)) + mark)
        table.add_row(*row, style="bold" if tool.name == "pigeon" else None)
    table.add_section()
    best_row, ratio_row, aim_row = ["best peer"], ["pigeon / best peer"], ["pigeon's aim"]
    for col in columns:
        best = best_peer(col)
        pigeon = col.cells.get("pigeon", Cell()).value
        best_row.append(f"{col.fmt.format(best[1])} ({best[0]})" if best else "")
        ratio_row.append(f"{pigeon / best[1]:.2f}×" if best and pigeon and best[1] else "")
        aim_row.append(aim_text(col, pigeon, best))
    for extra in (best_row, ratio_row, aim_row):
        table.add_row(*extra)
    console.print(table)
    notes.print(console)
    if idle:
        console.print(f"  pigeon idle latency p50 / p99 (ms): {idle}", highlight=False)


def run(quick: bool, console: Console) -> None:
    """Every broker's single-send table; peer venvs made on demand (their time printed apart)."""
    n, latency_n = (2_000, 50) if quick else (20_000, 200)
    names = sorted({t.name for tools in TOOLS.values() for t in tools} - {"pigeon"})
    interpreters: dict[str, Interpreter] = {"pigeon": servers.pigeon_interpreter()}
    for name in names:
        with console.status(f"peer venv {name}…"):
            env = servers.envs.ensure(name)
        interpreters[name] = Interpreter(env.python, env.why, env.version)
    with tempfile.TemporaryDirectory(prefix="pigeon-single-") as tmp:
        for broker in TOOLS:
            with console.status(f"single sends on {TITLES[broker]}…"):
                section(broker, n, latency_n, interpreters, Path(tmp))
    console.print(
        "[dim]Single sends: each tool's own send call per job (sync where the tool has one: pigeon, "
        "Huey, RQ; async on one event loop for SAQ, taskiq, pgqueuer and procrastinate's defer_async), "
        "timed from the first send to the last one's return; 4 threads start together on a barrier "
        "after one warm-up send each. Each tool at its defaults: SqliteHuey commits with SQLite's "
        "synchronous=FULL (an fsync per job), pigeon with NORMAL in WAL mode. "
        "Idle latency: one idle `pigeon worker`, one job per 20 ms, from just before the send to "
        "the job's start; send() from a plain thread, asend() on an event loop.[/]"
    )
    django_send.run(quick, console)
