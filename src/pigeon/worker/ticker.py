"""The worker's periodic-job loop: enqueue each schedule's ticks as they fall due.

Every worker runs it. A tick's job id is derived from the schedule and the tick
(``Schedule.job_for``), and brokers store an id once, so racing workers are
harmless and no leader is needed.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pigeon.errors import BrokerError
from pigeon.job import Job

if TYPE_CHECKING:
    from pigeon.app import App

log = logging.getLogger("pigeon.worker")


async def run_schedules(app: App) -> None:
    """Enqueue missed ticks (per each schedule's policy), then every tick as it falls due."""
    now = datetime.now(UTC)
    upcoming: list[tuple[datetime, int, Iterator[datetime]]] = []
    missed: list[Job] = []
    for i, sched in enumerate(app.schedules):
        ticks = sched.ticks_after(now)
        upcoming.append((next(ticks), i, ticks))
        previous = sched.previous_tick(now) if sched.missed == "once" else None
        if previous is not None:
            missed.append(sched.job_for(previous))
    if missed:
        await _enqueue(app, missed)
    heapq.heapify(upcoming)
    while True:
        await asyncio.sleep(max(0.0, upcoming[0][0].timestamp() - time.time()))
        due: list[Job] = []
        while upcoming[0][0].timestamp() <= time.time():
            tick, i, ticks = heapq.heappop(upcoming)
            due.append(app.schedules[i].job_for(tick))
            heapq.heappush(upcoming, (next(ticks), i, ticks))
        await _enqueue(app, due)


async def _enqueue(app: App, jobs: list[Job]) -> None:
    try:
        await app.aenqueue(jobs)
    except BrokerError as exc:  # another worker, or this one at the next tick, will do it
        log.error("could not enqueue %d periodic jobs: %s", len(jobs), exc)
    except Exception as exc:  # noqa: BLE001 - enqueue skips the seam; what escapes a broker must not end the worker
        log.error("could not enqueue %d periodic jobs: %s: %s", len(jobs), type(exc).__name__, exc)
