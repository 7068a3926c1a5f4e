"""The benchmark tasks, for pigeon and for Huey.

The functions are plain module-level functions, registered on an app by
:class:`Suite` (pigeon) or :class:`HueySuite` (Huey). The benchmark gives
every workload a fresh database file, so it builds a suite per file; a worker
or consumer started in another process finds the same tasks, under the same
names, on the module-level ``app`` / ``huey``, which read the file from the
environment (``$PIGEON_URL``, ``$BENCH_HUEY_DB``).
"""

from __future__ import annotations

import asyncio
import functools
import os
import queue
import time
from typing import Any

from pigeon import App

# Start times of `stamp` jobs run in this process: a same-process latency probe
# waits here instead of polling the broker, which would compete with the worker.
STAMPS: queue.SimpleQueue[float] = queue.SimpleQueue()


async def noop() -> None:
    return None


async def nap(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def stamp() -> float:
    started = time.time()
    STAMPS.put(started)
    return started


def burn(loops: int) -> int:
    """Pure-Python arithmetic: holds the GIL, so only processes run it in parallel."""
    total = 0
    for i in range(loops):
        total = (total + i * i) % 1_000_003
    return total


def calibrate(seconds: float) -> int:
    """How many :func:`burn` loops take about ``seconds`` on one core here."""
    probe = 200_000
    best = min(_timed_burn(probe) for _ in range(3))
    return max(1, int(probe * seconds / best))


def _timed_burn(loops: int) -> float:
    start = time.perf_counter()
    burn(loops)
    return time.perf_counter() - start


class Suite:
    """The pigeon tasks, registered on one app."""

    def __init__(self, url: str | None = None) -> None:
        self.app = App(url)
        self.noop = self.app.task(noop)
        self.nap = self.app.task(nap)
        self.stamp = self.app.task(stamp)
        # One attempt: a benchmark must not hide a crash behind a retry.
        self.burn = self.app.task(executor="process", max_attempts=1)(burn)


# What `python -m pigeon worker benchmarks.tasks:app` runs; nothing connects until used.
suite = Suite()
app = suite.app


# -- Huey ----------------------------------------------------------------------
# Huey keeps a result only when it is not None, and the benchmark reads when
# each job started from the results, so every Huey task returns its start time.


def huey_noop() -> float:
    return time.time()


def huey_nap(seconds: float) -> float:
    started = time.time()
    time.sleep(seconds)
    return started


def huey_stamp() -> float:
    return time.time()


def huey_burn(loops: int) -> float:
    started = time.time()
    burn(loops)
    return started


class HueySuite:
    """The Huey tasks, registered on one ``SqliteHuey``."""

    def __init__(self, filename: str) -> None:
        from huey import SqliteHuey

        self.huey = SqliteHuey("bench", filename=filename)
        self.noop = self.huey.task()(huey_noop)
        self.nap = self.huey.task()(huey_nap)
        self.stamp = self.huey.task()(huey_stamp)
        self.burn = self.huey.task()(huey_burn)


@functools.cache
def _huey_from_env() -> HueySuite:
    return HueySuite(os.environ["BENCH_HUEY_DB"])


def __getattr__(name: str) -> Any:
    # `huey_consumer benchmarks.tasks.huey` looks the instance up here. Building
    # it creates its database file, so it is built on first use, in the process
    # that names a file, never on import.
    if name == "huey":
        return _huey_from_env().huey
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
