"""pigeon against pgqueuer on one PostgreSQL server: drains A/B, interleaved, and idle latency.

    scripts/with-servers .venv/bin/python benchmarks/pgqueuer_ab.py [--quick]

Each round drains the same number of no-op jobs with pigeon, then pgqueuer, at each one's
defaults (`pigeon worker`: c=32; pgqueuer: batch_size=10, no cap), then at matched
concurrency (200 jobs in flight: `pigeon worker -c 200`; pgqueuer batch_size=100,
max_concurrent_tasks=200), through the drivers in ``benchmarks/peers/``. The aim is a
drain of at least 2× pgqueuer's in each pair and an idle latency no worse. Rounds:
``PIGEON_BENCH_AB_ROUNDS`` (2); jobs a drain: ``PIGEON_BENCH_AB_JOBS`` (20,000).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import servers  # noqa: E402
from benchmarks.peers import envs  # noqa: E402

# (label, pigeon's driver env, pgqueuer's driver env)
CONFIGS: list[tuple[str, dict[str, str], dict[str, str]]] = [
    (
        "defaults",
        {"BENCH_PIGEON_CONCURRENCY": "default"},
        {"BENCH_PGQUEUER_BATCH": "10", "BENCH_PGQUEUER_CONCURRENCY": "0"},
    ),
    (
        "200 in flight",
        {"BENCH_PIGEON_CONCURRENCY": "200"},
        {"BENCH_PGQUEUER_BATCH": "100", "BENCH_PGQUEUER_CONCURRENCY": "200"},
    ),
]


@dataclass
class Pair:
    label: str
    pigeon: list[float] = field(default_factory=list)
    pgqueuer: list[float] = field(default_factory=list)
    cpu: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # (worker, server) µs/job
    loads: list[float] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)

    def ratios(self) -> list[float]:
        return [a / b for a, b in zip(self.pigeon, self.pgqueuer, strict=False) if b]


def sizes(quick: bool) -> tuple[int, int]:
    jobs = int(os.environ.get("PIGEON_BENCH_AB_JOBS", "20000"))
    rounds = int(os.environ.get("PIGEON_BENCH_AB_ROUNDS", "2"))
    return (min(jobs, 2_000), 1) if quick else (jobs, rounds)


def drain(py: Path, base: str, tool: str, n: int, env: dict[str, str], limit: float) -> dict[str, Any]:
    with servers.pg_place(base, tool, "ab") as url:
        env = {**env, "BENCH_SERVER_PID": servers.server_pid("postgres")}
        return servers.run_driver(py, tool, "drain", n, url, limit, env=env)


def latency(py: Path, base: str, tool: str, n: int, limit: float) -> dict[str, Any]:
    env = {"BENCH_PIGEON_CONCURRENCY": "default"}
    with servers.pg_place(base, tool, "ab") as url:
        return servers.run_driver(py, tool, "latency", n, url, limit, env=env)


def run(quick: bool, console: Any) -> None:
    base = os.environ.get(servers.PG_ENV)
    if not base:
        console.print(f"[yellow]pigeon vs pgqueuer[/] skipped: ${servers.PG_ENV} is not set")
        return
    pg = envs.ensure("pgqueuer")
    if pg.python is None:
        console.print(f"[yellow]pigeon vs pgqueuer[/] skipped: {pg.why}")
        return
    pythons = {"pigeon": Path(sys.executable), "pgqueuer": pg.python}
    n, rounds = sizes(quick)
    limit = 20.0 if quick else 60.0
    pairs = [Pair(label) for label, _, _ in CONFIGS]
    for r in range(rounds):
        for pair, (_, pigeon_env, pgq_env) in zip(pairs, CONFIGS, strict=True):
            with console.status(f"pigeon vs pgqueuer: {pair.label}, round {r + 1}…"):
                pair.loads.append(os.getloadavg()[0])
                for tool, env, into in (
                    ("pigeon", pigeon_env, pair.pigeon),
                    ("pgqueuer", pgq_env, pair.pgqueuer),
                ):
                    out = drain(pythons[tool], base, tool, n, env, limit)
                    if "error" in out:
                        pair.notes[tool] = str(out["error"])
                        into.append(0.0)
                    else:
                        into.append(out["jobs"] / out["seconds"])
                        pair.notes.setdefault(tool, out.get("note", ""))
                        if "cpu_per_job" in out:
                            us = (out["cpu_per_job"] * 1e6, out.get("server_cpu_per_job", 0.0) * 1e6)
                            pair.cpu.setdefault(tool, []).append(us)
    samples = 20 if quick else 200
    with console.status("pigeon vs pgqueuer: idle latency…"):
        load = os.getloadavg()[0]
        lat = {tool: latency(py, base, tool, samples, 30.0) for tool, py in pythons.items()}
    report(pairs, lat, load, n, console)


def report(pairs: list[Pair], lat: dict[str, dict[str, Any]], load: float, n: int, console: Any) -> None:
    from rich.table import Table

    t = Table(title=f"PostgreSQL: pigeon against pgqueuer, drains of {n:,} no-ops, A/B interleaved")
    columns = (
        "configuration",
        "pigeon jobs/s",
        "pgqueuer jobs/s",
        "pigeon/pgqueuer",
        "aim ≥ 2×",
        "1-min load",
    )
    for col in columns:
        t.add_column(col, justify="left" if col == "configuration" else "right")
    for p in pairs:
        ratios = p.ratios()
        med = statistics.median(ratios) if ratios else 0.0
        mark = "[green]✓[/]" if ratios and min(ratios) >= 2 else "[red]✗ missed[/]"
        t.add_row(
            p.label,
            " / ".join(f"{x:,.0f}" for x in p.pigeon),
            " / ".join(f"{x:,.0f}" for x in p.pgqueuer),
            " / ".join(f"{x:.2f}" for x in ratios) + f" (median {med:.2f})",
            mark,
            " / ".join(f"{x:.1f}" for x in p.loads),
        )
    t.add_section()
    for p in pairs:
        cpu = {tool: cpu_text(p.cpu.get(tool, [])) for tool in ("pigeon", "pgqueuer")}
        a, b = (median_total(p.cpu.get(tool, [])) for tool in ("pigeon", "pgqueuer"))
        r = f"{b / a:.2f}× less" if a and b else ""
        t.add_row(f"CPU µs/job, {p.label}", cpu["pigeon"], cpu["pgqueuer"], r, "", "")
    t.add_section()
    cells = {tool: servers.latency_cells(out) for tool, out in lat.items()}
    for tool, (c50, c99) in cells.items():
        shown = "n/a" if c50.value is None else f"p50 {c50.value:.2f} ms, p99 {c99.value or 0:.2f} ms"
        mine = tool == "pigeon"
        t.add_row(f"idle latency, {tool}", shown if mine else "", "" if mine else shown)
    a, b = cells["pigeon"][0].value, cells["pgqueuer"][0].value
    if a is not None and b is not None and b:
        good = "[green]✓[/]" if a <= b else "[red]✗ missed[/]"
        t.add_row("idle latency p50", "", "", f"{a / b:.2f}", f"≤ 1× {good}", f"{load:.1f}")
    console.print(t)
    for p in pairs:
        for tool, note in p.notes.items():
            if note:
                console.print(f"  {p.label}, {tool}: {note}", style="dim", highlight=False)
    for tool, (c50, _) in cells.items():
        console.print(f"  idle latency, {tool}: {c50.why or c50.detail}", style="dim", highlight=False)
    console.print(
        "  CPU µs/job: the worker's process tree + the PostgreSQL server's, from the drain's 1,000th job"
        " to its last (the server's only when it runs here); pigeon/pgqueuer column: pgqueuer's total"
        " over pigeon's (medians)",
        style="dim",
        highlight=False,
    )


def cpu_text(samples: list[tuple[float, float]]) -> str:
    """Worker + server CPU per job, each run: "12 + 25"."""
    return " / ".join(f"{w:.0f} + {s:.0f}" for w, s in samples)


def median_total(samples: list[tuple[float, float]]) -> float:
    return statistics.median(w + s for w, s in samples) if samples else 0.0


def main() -> int:
    from rich.console import Console

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    run(args.quick, Console())
    return 0


if __name__ == "__main__":
    sys.exit(main())
