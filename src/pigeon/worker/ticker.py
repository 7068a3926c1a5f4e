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
    # A driver may turn the worker's cancel into an error of its own, or swallow it and return
    # (aio-pika, opening a channel, does both now and then): the stop must still win, or the
    # loop sleeps to the next tick.
    try:
        await client.aenqueue(jobs)
    except Exception as exc:  # noqa: BLE001 - what escapes a broker must not end the worker
        raise_if_cancelling(exc)
        what = str(exc) if isinstance(exc, BrokerError) else f"{type(exc).__name__}: {exc}"
        log.error("could not enqueue %d periodic jobs: %s", len(jobs), what)
    raise_if_cancelling()


def raise_if_cancelling(cause: BaseException | None = None) -> None:
    """Raise ``CancelledError`` if the current task is being cancelled.

    For loops that call drivers which may swallow a cancel (aio-pika does, now and
    then): without this, a stopping worker's loop would carry on for ever.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from cause
