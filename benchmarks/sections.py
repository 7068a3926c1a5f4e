"""The scale sections of `make bench`, each a module of its own, run after the others.

``pgqueuer`` (pigeon against pgqueuer, A/B), ``steady`` (a constant rate), ``scaleout``
(1, 2, 4 processes) and ``memory`` (a million jobs). Each is sized by its own environment
variables (see its module); ``make bench`` runs the steady load for 20 s a rate unless
``PIGEON_BENCH_STEADY_SECONDS`` says otherwise, to bound the whole run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

BROKERS = ["sqlite", "postgres", "redis"]
STEADY_SECONDS = 20.0  # in `make bench`; the module alone runs the aim's 60 s


def _pgqueuer(quick: bool, console: Any) -> None:
    from benchmarks import pgqueuer_ab

    pgqueuer_ab.run(quick, console)


def _steady(quick: bool, console: Any) -> None:
    from benchmarks import steady

    seconds = float(os.environ.get("PIGEON_BENCH_STEADY_SECONDS", STEADY_SECONDS))
    seconds, rates = steady.sizes(quick, seconds)
    steady.report(steady.run(BROKERS, seconds, rates, console), seconds, console)


def _scaleout(quick: bool, console: Any) -> None:
    from benchmarks import scaleout

    n = scaleout.jobs_for(quick)
    scaleout.report(scaleout.run(BROKERS, n, console), n, console)


def _memory(quick: bool, console: Any) -> None:
    from benchmarks import memory

    jobs, single = memory.sizes(quick)
    memory.report(memory.run(BROKERS, jobs, single, console), jobs, single, console)


SECTIONS: dict[str, Callable[[bool, Any], None]] = {
    "pgqueuer": _pgqueuer,
    "steady": _steady,
    "scaleout": _scaleout,
    "memory": _memory,
}


def run(only: list[str] | None, quick: bool, console: Any) -> None:
    """The chosen sections (all when ``only`` is None), each timed and reported as it ends."""
    for name, fn in SECTIONS.items():
        if only is not None and name not in only:
            continue
        began = time.perf_counter()
        load = os.getloadavg()[0]
        try:
            fn(quick, console)
        except Exception as exc:  # noqa: BLE001 - a broken section is reported, not fatal
            console.print(f"[yellow]{name}[/] failed: {type(exc).__name__}: {exc}")
        console.print(
            f"  {name} section: {time.perf_counter() - began:.0f} s (1-min load {load:.1f} before,"
            f" {os.getloadavg()[0]:.1f} after)",
            style="dim",
        )
