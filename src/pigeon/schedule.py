"""Periodic jobs: cron expressions and fixed intervals, run by every worker, each tick once.

There is no beat process and no leader. Every worker computes the same ticks
and enqueues each as a job whose id is derived from the schedule's name and the
tick's time; brokers store an id once, so however many workers race, a tick
becomes one job. Ticks missed while no worker ran follow ``missed``: ``"once"``
runs the latest missed tick when a worker starts, ``"skip"`` runs none.
(A tick's job must outlive one period in the broker for that to hold: keep
``result_ttl`` longer than the longest period.)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

import msgspec
from cronsim import CronSim, CronSimError

from pigeon.errors import ConfigurationError

if TYPE_CHECKING:
    from pigeon.job import Job
    from pigeon.task import Task

MissedPolicy = Literal["once", "skip"]


@dataclass(frozen=True)
class Schedule:
    """When a task runs by itself, and with which arguments."""

    name: str
    task: Task[Any, Any]
    cron: str | None = None
    every: float | None = None
    tz: str = "UTC"
    missed: MissedPolicy = "once"
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every is None):
            raise ConfigurationError(f"schedule {self.name}: give cron= or every=, one of them")
        if self.every is not None and self.every <= 0:
            raise ConfigurationError(f"schedule {self.name}: every= must be positive")
        try:
            zone = ZoneInfo(self.tz)
        except Exception as exc:
            raise ConfigurationError(f"schedule {self.name}: unknown time zone {self.tz!r}") from exc
        if self.cron is not None:
            try:
                CronSim(self.cron, datetime.now(zone))
            except CronSimError as exc:
                raise ConfigurationError(f"schedule {self.name}: bad cron {self.cron!r}: {exc}") from None
        self.task.make_job(self.args, dict(self.kwargs))  # bad arguments fail at registration

    def ticks_after(self, moment: datetime) -> Iterator[datetime]:
        """Ticks strictly after ``moment``, in order (aware datetimes)."""
        if self.every is not None:
            n = math.floor(moment.timestamp() / self.every) + 1
            while True:
                yield datetime.fromtimestamp(n * self.every, UTC)
                n += 1
        else:
            assert self.cron is not None
            yield from CronSim(self.cron, moment.astimezone(ZoneInfo(self.tz)))

    def previous_tick(self, moment: datetime) -> datetime | None:
        """The latest tick at or before ``moment``."""
        if self.every is not None:
            return datetime.fromtimestamp(math.floor(moment.timestamp() / self.every) * self.every, UTC)
        assert self.cron is not None
        # cronsim's reverse walk starts strictly before its start: nudge past ``moment``.
        start = moment.astimezone(ZoneInfo(self.tz)) + timedelta(seconds=1)
        return next(iter(CronSim(self.cron, start, reverse=True)), None)

    def job_for(self, tick: datetime) -> Job:
        """The job of one tick; its id is the same in every process."""
        job = self.task.make_job(self.args, dict(self.kwargs))
        digest = hashlib.sha256(f"{self.name}@{tick.timestamp():.3f}".encode()).hexdigest()[:32]
        return msgspec.structs.replace(job, id=digest, enqueued_at=tick.timestamp())
