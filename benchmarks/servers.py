"""pigeon on PostgreSQL and Redis, beside its peers, on the servers named in the environment.

``PIGEON_TEST_POSTGRES_URL`` and ``PIGEON_TEST_REDIS_URL`` (``.servers/*.env``) name the
servers, which ``make bench`` starts (``scripts/with-servers``); a section whose variable is
unset is skipped with a note: this module never starts a server itself.

Every tool, pigeon included, runs the same way: a driver script in
``benchmarks/peers/`` (stdlib-only plumbing in ``benchcommon.py``), run with
the tool's own virtualenv (``benchmarks/.envs/<name>``, made on demand by
``peers/envs.py``; pigeon's is the project's), enqueues with the tool's own
API and starts the tool's own worker, one process. The jobs tell the driver
when they start over a UDP datagram, so no tool needs a result backend.
Each driver runs in a process group of its own under a deadline; one that
overruns is killed, group and all, and its cell says so.

Isolation: on PostgreSQL pigeon gets a fresh namespace (schema) per workload
and each peer a fresh database of its own (``pigeon_bench_<peer>``), dropped
afterwards. On Redis each tool gets a database number of its own (8 to 14),
used only if empty or marked as the benchmark's by an earlier run, flushed
between workloads and left empty.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from rich.console import Console
from rich.table import Table

from benchmarks.peers import envs

PEERS_DIR = Path(__file__).resolve().parent / "peers"
ROOT = PEERS_DIR.parent.parent
PG_ENV = "PIGEON_TEST_POSTGRES_URL"
REDIS_ENV = "PIGEON_TEST_REDIS_URL"
MARKER = "pigeon-bench:owner"  # set in every Redis database the benchmark uses
LATENCY_GAP = 0.02  # idle time before each latency probe, as in the SQLite section
SAMPLE_TIMEOUT = 5.0
SLACK = 60.0  # a driver's own set-up, fill and teardown, on top of its workload's bound


@dataclass(frozen=True)
class Scale:
    enqueue: int = 20_000
    drain: int = 20_000
    latency: int = 200


FULL = Scale()
QUICK = Scale(enqueue=2_000, drain=2_000, latency=20)


@dataclass(frozen=True)
class Tool:
    name: str
    # The drain's job count as a share of the scale's: slow tools get fewer jobs
    # (jobs/s is the figure), so each drain takes seconds, not minutes.
    drain_share: float = 1.0
    latency_limit: float = 30.0  # a tool that polls slowly gets fewer samples, not more time
    redis_db: int = 0


PG_TOOLS = [Tool("pigeon"), Tool("pgqueuer"), Tool("procrastinate", drain_share=0.25)]
REDIS_TOOLS = [
    Tool("pigeon", redis_db=8),
    Tool("rq", drain_share=0.1, redis_db=9),
    Tool("arq", drain_share=0.25, latency_limit=20.0, redis_db=10),
    Tool("dramatiq", drain_share=0.5, redis_db=11),
    Tool("saq", drain_share=0.5, redis_db=12),
    Tool("taskiq", redis_db=13),
    Tool("celery", drain_share=0.5, redis_db=14),
]


@dataclass
class Cell:
    value: float | None = None
    why: str = ""
    detail: str = ""


@dataclass
class Column:
    title: str
    unit: str
    higher_is_better: bool
    fmt: str
    aim: str = ""
    aim_ratio: float | None = None  # pigeon / best peer that meets the aim
    aim_value: float | None = None  # pigeon's absolute aim
    cells: dict[str, Cell] = field(default_factory=dict)


def server_pid(name: str) -> str:
    """The main process of a server `make bench` started in this checkout; empty if none.

    Its CPU time (with its children's, from /proc) is the server's share of a job's cost.
    """
    for pid_file in (ROOT / ".servers" / f"{name}.pid", ROOT / ".servers" / name / f"{name}.pid"):
        if pid_file.exists():
            return pid_file.read_text().split()[0]
    return ""


# -- running drivers -----------------------------------------------------------


@dataclass
class Interpreter:
    python: Path | None
    why: str = ""
    version: str = ""


def pigeon_interpreter() -> Interpreter:
    import importlib.metadata

    return Interpreter(Path(sys.executable), version=importlib.metadata.version("pigeon"))


def run_driver(
    py: Path,
    tool: str,
    mode: str,
    n: int,
    url: str,
    limit: float,
    *,
    extra: Sequence[str] = (),
    env: dict[str, str] | None = None,
    slack: float = SLACK,
) -> dict[str, Any]:
    """Run ``peers/<tool>_peer.py MODE N`` under a deadline; its last stdout line is JSON.

    ``extra`` adds to its arguments and ``env`` to its environment; ``slack`` is the
    time it gets beyond ``limit``.
    """
    argv = [str(py), str(PEERS_DIR / f"{tool}_peer.py"), mode, str(n), "--limit", str(limit)]
    argv += ["--gap", str(LATENCY_GAP), "--timeout", str(SAMPLE_TIMEOUT), *extra]
    env = dict(os.environ, **(env or {}), BENCH_URL=url)
    env["PYTHONPATH"] = str(PEERS_DIR)
    # Its own session: on a timeout the whole group (driver and worker) goes.
    proc = subprocess.Popen(
        argv, cwd=PEERS_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=limit + slack)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        proc.communicate()
        return {"error": f"the driver overran its {limit + slack:.0f} s bound and was killed"}
    finally:
        kill_group(proc)  # a worker the driver failed to stop
    lines = out.decode(errors="replace").strip().splitlines()
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = " | ".join(err.decode(errors="replace").strip().splitlines()[-2:])
        return {"error": f"the driver exited with {proc.returncode}: {tail[-300:] or '(no output)'}"}
    return result


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def rate_cell(result: dict[str, Any], label: str = "") -> Cell:
    if "error" in result:
        return Cell(why=str(result["error"]))
    n, seconds = result["jobs"], result["seconds"]
    detail = "; ".join(x for x in (result.get("note", ""), label) if x)
    if result.get("pending") not in (None, n):
        detail = f"{result['pending']:,} of {n:,} stored; {detail}"
    return Cell(n / seconds, detail=detail)


def latency_cells(result: dict[str, Any]) -> tuple[Cell, Cell]:
    if "error" in result:
        return Cell(why=str(result["error"])), Cell(why=str(result["error"]))
    ms = [x * 1000 for x in result["samples"]]
    if len(ms) < 2:
        why = f"{len(ms)} samples: {result.get('why', '')}"
        return Cell(why=why), Cell(why=why)
    p99 = statistics.quantiles(ms, n=100, method="inclusive")[98]
    detail = "; ".join(x for x in (result.get("note", ""), f"{len(ms)} samples", result.get("why", "")) if x)
    return Cell(statistics.median(ms), detail=detail), Cell(p99, detail=f"max {max(ms):.2f} ms")


# -- PostgreSQL ----------------------------------------------------------------


def with_path(url: str, path: str, query: str = "") -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=path, query=query))


@contextlib.contextmanager
def pg_place(base: str, tool: str, slot: str) -> Iterator[str]:
    """A fresh, empty place for one tool's workload; its URL. Dropped afterwards."""
    import psycopg

    schema = f"bench_{slot}"
    db = f"pigeon_bench_{tool}"

    def reset(create: bool) -> None:
        with psycopg.connect(base, autocommit=True, connect_timeout=10) as conn:
            if tool == "pigeon":
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            else:
                conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
                if create:
                    conn.execute(f"CREATE DATABASE {db}")

    reset(create=True)
    try:
        yield (
            with_path(base, urlsplit(base).path, f"namespace={schema}")
            if tool == "pigeon"
            else with_path(base, f"/{db}")
        )
    finally:
        reset(create=False)


def postgres_section(scale: Scale, quick: bool, interpreters: dict[str, Interpreter]) -> list[Column] | str:
    base = os.environ.get(PG_ENV)
    if not base:
        return f"skipped: ${PG_ENV} is not set (`make bench` starts the servers)"
    enqueue = Column(
        f"enqueue {scale.enqueue:,}, one batch", "jobs/s", True, "{:,.0f}", "> 50,000", aim_value=50_000
    )
    drain = Column("drain no-ops", "jobs/s", True, "{:,.0f}", "≥ 2× best peer", aim_ratio=2.0)
    p50 = Column("latency p50", "ms", False, "{:.2f}", "< 2.5", aim_value=2.5)
    p99 = Column("latency p99", "ms", False, "{:.2f}")
    bound = 20.0 if quick else 60.0
    for tool in PG_TOOLS:
        interp = interpreters[tool.name]
        if interp.python is None:
            for col in (enqueue, drain, p50, p99):
                col.cells[tool.name] = Cell(why=interp.why)
            continue
        py = interp.python
        with pg_place(base, tool.name, "enqueue") as url:
            enqueue.cells[tool.name] = rate_cell(
                run_driver(py, tool.name, "enqueue", scale.enqueue, url, bound)
            )
        n = max(500, int(scale.drain * tool.drain_share))
        with pg_place(base, tool.name, "drain") as url:
            scaled = "" if n == scale.drain else f"{n:,} jobs (scaled down: a slow drain)"
            drain.cells[tool.name] = rate_cell(run_driver(py, tool.name, "drain", n, url, bound), scaled)
        with pg_place(base, tool.name, "latency") as url:
            result = run_driver(py, tool.name, "latency", scale.latency, url, tool.latency_limit)
            p50.cells[tool.name], p99.cells[tool.name] = latency_cells(result)
    return [enqueue, drain, p50, p99]


# -- Redis ---------------------------------------------------------------------


@contextlib.contextmanager
def redis_place(base: str, tool: Tool) -> Iterator[str]:
    """The tool's own Redis database, empty; flushed again afterwards."""
    import redis

    url = with_path(base, f"/{tool.redis_db}")
    client = redis.Redis.from_url(url, socket_timeout=10)
    try:
        if client.dbsize() and not client.exists(MARKER):
            raise RuntimeError(f"Redis db {tool.redis_db} holds keys the benchmark did not write; left alone")
        client.flushdb()
        client.set(MARKER, "benchmarks/servers.py")
        try:
            yield url + ("?namespace=bench" if tool.name == "pigeon" else "")
        finally:
            client.flushdb()
    finally:
        client.close()


def redis_section(scale: Scale, quick: bool, interpreters: dict[str, Interpreter]) -> list[Column] | str:
    base = os.environ.get(REDIS_ENV)
    if not base:
        return f"skipped: ${REDIS_ENV} is not set (`make bench` starts the servers)"
    drain = Column("drain no-ops", "jobs/s", True, "{:,.0f}", "≥ 2× best peer", aim_ratio=2.0)
    p50 = Column("latency p50", "ms", False, "{:.2f}", "≤ ½ best peer", aim_ratio=0.5)
    p99 = Column("latency p99", "ms", False, "{:.2f}")
    bound = 20.0 if quick else 60.0
    for tool in REDIS_TOOLS:
        interp = interpreters[tool.name]
        if interp.python is None:
            for col in (drain, p50, p99):
                col.cells[tool.name] = Cell(why=interp.why)
            continue
        py = interp.python
        n = max(500, int(scale.drain * tool.drain_share))
        try:
            with redis_place(base, tool) as url:
                scaled = "" if n == scale.drain else f"{n:,} jobs (scaled down: a slow drain)"
                drain.cells[tool.name] = rate_cell(run_driver(py, tool.name, "drain", n, url, bound), scaled)
            with redis_place(base, tool) as url:
                result = run_driver(py, tool.name, "latency", scale.latency, url, tool.latency_limit)
                p50.cells[tool.name], p99.cells[tool.name] = latency_cells(result)
        except RuntimeError as exc:
            for col in (drain, p50, p99):
                col.cells.setdefault(tool.name, Cell(why=str(exc)))
    return [drain, p50, p99]


# -- environments and output ---------------------------------------------------


SECTIONS: dict[str, tuple[str, list[Tool], Callable[..., list[Column] | str]]] = {
    "postgres": ("PostgreSQL", PG_TOOLS, postgres_section),
    "redis": ("Redis", REDIS_TOOLS, redis_section),
}


def prepare(names: list[str], console: Console) -> dict[str, Interpreter]:
    """Every chosen section's peer venvs, created if missing; their creation time printed apart."""
    wanted = sorted({t.name for s in names for t in SECTIONS[s][1]} - {"pigeon"})
    out: dict[str, Interpreter] = {"pigeon": pigeon_interpreter()}
    made: list[str] = []
    spent = 0.0
    for name in wanted:
        with console.status(f"peer venv {name}…"):
            env = envs.ensure(name)
        out[name] = Interpreter(env.python, env.why, env.version)
        spent += env.seconds
        if env.seconds:
            made.append(f"{name} {env.seconds:.0f} s" + (" (failed)" if env.python is None else ""))
    if made:
        console.print(
            f"  peer venvs created in {spent:.0f} s (not counted below): {', '.join(made)}", style="dim"
        )
    else:
        console.print(
            f"  peer venvs: all {len(wanted)} reused from {envs.ENVS.relative_to(ROOT)}", style="dim"
        )
    return out


class Notes:
    """Numbered notes beneath a table: each distinct note once, its cells pointing at it."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def mark(self, who: str, text: str) -> str:
        """The marker a cell carries for ``who: text`` (empty when there is nothing to say)."""
        if not text:
            return ""
        note = f"{who}: {text}"
        if note not in self.items:
            self.items.append(note)
        return f" [dim]\\[{self.items.index(note) + 1}][/]"

    def print(self, console: Console) -> None:
        for i, note in enumerate(self.items, 1):
            console.print(f"  [dim]\\[{i}][/] {note}", highlight=False)


def report(
    console: Console, section: str, columns: list[Column], interpreters: dict[str, Interpreter]
) -> None:
    title, tools, _ = SECTIONS[section]
    table = Table(title=f"{title}: one worker process per tool, same server")
    table.add_column("tool")
    for col in columns:
        table.add_column(f"{col.title} ({col.unit})", justify="right")
    notes = Notes()

    def noted(who: str, cell: Cell) -> str:
        return notes.mark(who, cell.why if cell.value is None else cell.detail)

    for tool in tools:
        interp = interpreters.get(tool.name)
        label = f"{tool.name} {interp.version}" if interp and interp.version else tool.name
        row = [label]
        for col in columns:
            cell = col.cells.get(tool.name, Cell(why="not run"))
            shown = "[yellow]n/a[/]" if cell.value is None else col.fmt.format(cell.value)
            row.append(shown + noted(tool.name, cell))
        table.add_row(*row, style="bold" if tool.name == "pigeon" else None)
    table.add_section()
    best_row, ratio_row, aim_row = ["best peer"], ["pigeon / best peer"], ["pigeon's aim"]
    for col in columns:
        best = best_peer(col)
        pigeon = col.cells.get("pigeon", Cell()).value
        best_row.append(f"{col.fmt.format(best[1])} ({best[0]})" if best else "")
        ratio_row.append(ratio_text(col, pigeon, best))
        aim_row.append(aim_text(col, pigeon, best))
    table.add_row(*best_row)
    table.add_row(*ratio_row)
    table.add_row(*aim_row)
    console.print(table)
    notes.print(console)


def best_peer(col: Column) -> tuple[str, float] | None:
    found = [(k, c.value) for k, c in col.cells.items() if k != "pigeon" and c.value is not None]
    if not found:
        return None
    pick = max if col.higher_is_better else min
    return pick(found, key=lambda kv: kv[1])


def ratio_text(col: Column, pigeon: float | None, best: tuple[str, float] | None) -> str:
    """pigeon's figure over the best peer's, green where pigeon is ahead."""
    if not best or pigeon is None or not best[1]:
        return ""
    r = pigeon / best[1]
    good = r > 1 if col.higher_is_better else r < 1
    return f"[{'green' if good else 'red'}]{r:.2f}×[/]"


def aim_text(col: Column, pigeon: float | None, best: tuple[str, float] | None) -> str:
    if not col.aim:
        return ""
    if pigeon is None:
        return f"{col.aim} [yellow]?[/]"
    if col.aim_value is not None:
        met = pigeon > col.aim_value if col.higher_is_better else pigeon < col.aim_value
    elif col.aim_ratio is not None and best is not None:
        r = pigeon / best[1]
        met = r >= col.aim_ratio if col.higher_is_better else r <= col.aim_ratio
    else:
        return f"{col.aim} [yellow]?[/]"
    return f"{col.aim} " + ("[green]✓[/]" if met else "[red]✗ missed[/]")


def run_sections(names: list[str], quick: bool, console: Console, rearm: Callable[[float], None]) -> None:
    interpreters = prepare(names, console)
    scale = QUICK if quick else FULL
    for name in names:
        title, _, fn = SECTIONS[name]
        rearm(240 if quick else 480)  # the last-resort watchdog, per section
        t0 = time.perf_counter()
        with console.status(f"{title} section…"):
            try:
                out = fn(scale, quick, interpreters)
            except Exception as exc:  # noqa: BLE001 - a broken section is reported, not fatal
                out = f"failed: {type(exc).__name__}: {exc}"
        console.print(f"  {title} section: {time.perf_counter() - t0:.1f} s", style="dim")
        if isinstance(out, str):
            console.print(f"[yellow]{title}[/] {out}", highlight=False)
        else:
            report(console, name, out, interpreters)
    console.print(
        "[dim]Server sections: every tool's no-op job only tells the driver it started (a UDP datagram); "
        "drain jobs/s run from the first job's start to the N-th's, stamped in the worker, so no start-up "
        "is counted; latency runs from just before the send to the job's start, after a "
        f"{LATENCY_GAP * 1000:.0f} ms idle gap; tools with an async API (pigeon among them) send with it on "
        "the driver's event loop, the others with their sync call. "
        "Jobs are filled before each drain, untimed.[/]"
    )
