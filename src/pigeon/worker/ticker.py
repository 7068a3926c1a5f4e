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
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

from pigeon.client import Client
from pigeon.errors import BrokerError
from pigeon.job import Job
from pigeon.schedule import Schedule

log = logging.getLogger("pigeon.worker")


async def run_schedules(client: Client, schedules: Sequence[Schedule]) -> None:
    """Enqueue missed ticks (per each schedule's policy), then every tick as it falls due."""
    now = datetime.now(UTC)
    upcoming: list[tuple[datetime, int, Iterator[datetime]]] = []
    missed: list[Job] = []
    for i, sched in enumerate(schedules):
        ticks = sched.ticks_after(now)
        upcoming.append((next(ticks), i, ticks))
        previous = sched.previous_tick(now) if sched.missed == "once" else None
        if previous is not None:
            missed.append(sched.job_for(previous))
    if missed:
        await _enqueue(client, missed)
    heapq.heapify(upcoming)
    while True:
        await asyncio.sleep(max(0.0, upcoming[0][0].timestamp() - time.time()))
        due: list[Job] = []
        while upcoming[0][0].timestamp() <= time.time():
            tick, i, ticks = heapq.heappop(upcoming)
            due.append(schedules[i].job_for(tick))
            heapq.heappush(upcoming, (next(ticks), i, ticks))
        await _enqueue(client, due)


async def _enqueue(client: Client, jobs: list[Job]) -> None:
    try:
        await client.aenqueue(jobs)
    except BrokerError as exc:  # another worker, or this one at the next tick, will do it
        log.error("could not enqueue %d periodic jobs: %s", len(jobs), exc)
    except Exception as exc:  # noqa: BLE001 - enqueue skips the seam; what escapes a broker must not end the worker
        log.error("could not enqueue %d periodic jobs: %s: %s", len(jobs), type(exc).__name__, exc)
