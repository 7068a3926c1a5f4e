"""What operators type (``--since 1h``, ``order_id=42``, a state name) turned into a JobFilter.

Shared by the CLI and the dashboard, so both read a filter the same way and
refuse the same mistakes with the same messages.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pigeon.brokers.inspection import JobFilter, parse_args_search
from pigeon.job import JobState

if TYPE_CHECKING:
    from pigeon.app import App

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_moment(text: str, *, now: float | None = None) -> float:
    """``1h`` (that long ago), ``2026-12-01T10:00`` or ``2026-12-01`` (UTC unless a zone is given).

    Raises:
        ValueError: neither a duration nor an ISO date/time.
    """
    m = _DURATION.match(text)
    if m:
        return (time.time() if now is None else now) - float(m.group(1)) * _UNIT[m.group(2)]
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"time {text!r}: write a duration ago (30m, 1h, 7d) or an ISO date/time (2026-12-01T10:00)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_states(values: Iterable[str]) -> tuple[JobState, ...]:
    """State names, in JobState's order, each once.

    Raises:
        ValueError: an unknown state.
    """
    wanted = set()
    for value in values:
        for name in value.split(","):
            name = name.strip().lower()
            if not name:
                continue
            try:
                wanted.add(JobState(name))
            except ValueError:
                known = ", ".join(s.value for s in JobState)
                raise ValueError(f"state {name!r}: one of {known}") from None
    return tuple(s for s in JobState if s in wanted)


def task_name_in(app: App, name: str) -> str:
    """A task's full name from its full name or the last part of it (``slow`` for ``jobs.slow``).

    Every verb that takes a task name resolves it here (the CLI's and the dashboard's);
    a name the app does not know is returned as given.
    """
    if name in app.tasks:
        return name
    return next((n for n in app.tasks if short_task_name(n) == name), name)


def short_task_name(task: str) -> str:
    """The last part of a task's name (an event handler's without its ``@topic``)."""
    return task.split("@", 1)[0].rsplit(".", 1)[-1]


def build_filter(
    *,
    app: App | None = None,
    states: Iterable[str] = (),
    task: str | None = None,
    queue: str | None = None,
    since: str | None = None,
    until: str | None = None,
    search: str | None = None,
    scan: str | None = None,
) -> JobFilter:
    """A JobFilter from operator input; empty strings mean "any".

    An argument search looks at the newest ``scan`` jobs (a number, or ``all``); given as
    ``""``, the newest :data:`SEARCH_SCAN`; not given (None), every job.

    Raises:
        ValueError: a part of the input does not read (the message says which and how).
    """
    return JobFilter(
        states=parse_states(states),
        task=_task(app, task),
        queue=queue.strip() if queue and queue.strip() else None,
        since=parse_moment(since) if since and since.strip() else None,
        until=parse_moment(until) if until and until.strip() else None,
        args=(args := parse_args_search(search) if search and search.strip() else ()),
        newest=_scan(scan) if args else None,
    )


SEARCH_SCAN = 100_000
"""How many of the newest jobs an argument search on the dashboard looks at unless told."""


def _scan(text: str | None) -> int | None:
    if text is None or text.strip() == "all":
        return None
    if not text.strip():
        return SEARCH_SCAN
    if not text.strip().isdigit() or int(text) < 1:
        raise ValueError(f"scan {text!r}: a number of jobs, or all")
    return int(text)


def _task(app: App | None, task: str | None) -> str | None:
    if not task or not task.strip():
        return None
    return task.strip() if app is None else task_name_in(app, task.strip())
