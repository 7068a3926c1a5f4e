"""What the pages show, read from the broker's inspection methods (no Starlette here)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pigeon.app import App
from pigeon.brokers.inspection import JobFilter, as_inspection
from pigeon.events import UNROUTED
from pigeon.job import JobRecord, JobState, WorkerInfo

RUNNING_SHOWN = 1000
"""At most this many running jobs are read for the workers table."""


inspection = as_inspection


@dataclass
class QueueRow:
    name: str
    counts: dict[str, int]
    oldest_ready_age: float | None
    paused: bool


@dataclass
class WorkerRow:
    info: WorkerInfo
    heartbeat_age: float
    jobs: list[JobRecord] = field(default_factory=list)


@dataclass
class Overview:
    queues: list[QueueRow]
    workers: list[WorkerRow]
    states: list[str]


async def overview(app: App) -> Overview:
    """Each queue's depth by state, oldest ready job and pause state; workers and their jobs."""
    broker = await app.connection()
    inspect = inspection(broker)
    now = time.time()
    stats = await broker.stats()
    oldest = await inspect.oldest_ready()
    paused = set(await inspect.paused_queues())
    names = sorted({s.queue for s in stats} | paused)
    counts = {s.queue: s.counts for s in stats}
    queues = [
        QueueRow(q, counts.get(q, {}), None if q not in oldest else max(0.0, now - oldest[q]), q in paused)
        for q in names
    ]
    workers = {w.id: WorkerRow(w, max(0.0, now - w.last_seen)) for w in await broker.workers()}
    for r in await inspect.find_jobs(JobFilter(states=(JobState.RUNNING,)), limit=RUNNING_SHOWN):
        if r.worker_id in workers:
            workers[r.worker_id].jobs.append(r)
    return Overview(queues, sorted(workers.values(), key=lambda w: w.info.id), [s.value for s in JobState])


@dataclass
class JobPage:
    records: list[JobRecord]
    next_before: str | None


async def job_page(app: App, where: JobFilter, *, limit: int, before: str | None) -> JobPage:
    inspect = inspection(await app.connection())
    records = await inspect.find_jobs(where, limit=limit + 1, before=before)
    more = len(records) > limit
    records = records[:limit]
    return JobPage(records, records[-1].job.id if more else None)


@dataclass
class ScheduleRow:
    name: str
    task: str
    when: str
    next_runs: list[str]
    last_run: str
    last_state: str
    last_job: str | None


async def schedules(app: App, count: int = 3) -> list[ScheduleRow]:
    broker = await app.connection()
    now = datetime.now(UTC)
    rows = []
    for s in app.schedules:
        ticks = s.ticks_after(now)
        upcoming = [stamp(next(ticks).timestamp()) for _ in range(count)]
        previous = s.previous_tick(now)
        last = None if previous is None else await broker.get(s.job_for(previous).id)
        rows.append(
            ScheduleRow(
                name=s.name,
                task=s.task.name,
                when=f"cron {s.cron} ({s.tz})" if s.cron else f"every {s.every:g} s",
                next_runs=upcoming,
                last_run="" if previous is None else stamp(previous.timestamp()),
                last_state="not run" if last is None else last.state.value,
                last_job=None if last is None else last.job.id,
            )
        )
    return rows


@dataclass
class Events:
    topics: list[tuple[str, list[str]]]
    unrouted: list[JobRecord]


async def events(app: App, limit: int = 50) -> Events:
    patterns: dict[str, list[str]] = {}
    for pattern, task in app.handlers:
        patterns.setdefault(pattern, []).append(task.name)
    inspect = inspection(await app.connection())
    # Records of unrouted events are cancelled as they are stored: the state narrows the search.
    where = JobFilter(queue=UNROUTED, states=(JobState.CANCELLED,))
    unrouted = await inspect.find_jobs(where, limit=limit)
    return Events(sorted(patterns.items()), unrouted)


def stamp(ts: float | None) -> str:
    """A Unix time as UTC text, to the millisecond."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def age(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def text(data: bytes | Any, limit: int = 100) -> str:
    """Bytes as text, cut at ``limit`` characters."""
    out = bytes(data).decode(errors="replace")
    return out if len(out) <= limit else out[: limit - 1] + "…"


def pretty(data: bytes | None) -> str:
    """JSON bytes indented for reading (as they are when they are not JSON)."""
    if data is None:
        return ""
    text = bytes(data).decode(errors="replace")
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def job_details(r: JobRecord) -> dict[str, Any]:
    """The job page's facts, ready for the template."""
    j = r.job
    waited = None if r.started_at is None else max(0.0, r.started_at - (j.run_at or j.enqueued_at))
    ran = None if r.started_at is None or r.finished_at is None else max(0.0, r.finished_at - r.started_at)
    steps = [] if j.then is None else [s.task for s in j.then.steps]
    return {
        "facts": [
            ("task", j.task),
            ("queue", j.queue),
            ("state", r.state.value),
            ("attempts", f"{r.attempts}/{j.max_attempts}"),
            ("priority", str(j.priority)),
            ("unique key", j.unique_key or ""),
            ("worker", r.worker_id or ""),
            ("enqueued", stamp(j.enqueued_at)),
            ("run at", stamp(j.run_at)),
            ("started", stamp(r.started_at)),
            ("finished", stamp(r.finished_at)),
            ("waited", age(waited)),
            ("ran", age(ran)),
        ],
        "arguments": pretty(bytes(j.payload)),
        "result": pretty(r.result),
        "progress": pretty(r.progress),
        "errors": list(r.errors) if r.errors else ([r.error] if r.error else []),
        "workflow": None if j.then is None else {"root": j.then.root, "index": j.then.index, "steps": steps},
        "can_retry": r.state in (JobState.FAILED, JobState.CANCELLED),
        "can_cancel": not r.state.is_final,
    }
