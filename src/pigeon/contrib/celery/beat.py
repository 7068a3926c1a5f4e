"""Celery beat schedules as pigeon code: ``pigeon schedules import-celery MODULE:ATTRIBUTE``.

The command prints Python to paste next to your tasks (it registers nothing):
one ``app.schedule(...)`` per ``beat_schedule`` entry. A ``crontab`` becomes a
cron expression in the Celery app's ``timezone``, a ``timedelta`` or a number of
seconds becomes ``every=``; ``args``, ``kwargs`` and the ``queue``, ``priority``
and ``expires`` options carry over. What has no equivalent (``solar``, other
options) is written as a comment on its entry, never dropped silently.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pigeon.errors import ConfigurationError

_CARRIED_OPTIONS = ("queue", "priority", "expires")


class crontab:  # noqa: N801 - Celery's name
    """Celery's ``crontab`` fields, for schedules written after Celery is uninstalled."""

    def __init__(
        self,
        minute: str | int = "*",
        hour: str | int = "*",
        day_of_week: str | int = "*",
        day_of_month: str | int = "*",
        month_of_year: str | int = "*",
    ) -> None:
        self._orig_minute = str(minute)
        self._orig_hour = str(hour)
        self._orig_day_of_week = str(day_of_week)
        self._orig_day_of_month = str(day_of_month)
        self._orig_month_of_year = str(month_of_year)

    @property
    def cron(self) -> str:
        return cron_of(self)


def cron_of(entry: Any) -> str:
    """A cron expression from a Celery ``crontab`` (read by its fields, Celery not imported)."""
    fields = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
    return " ".join(str(getattr(entry, f"_orig_{f}")).replace(" ", "") for f in fields)


@dataclass(frozen=True)
class Converted:
    """One beat entry in pigeon's terms."""

    name: str
    task: str
    cron: str | None = None
    every: float | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def convert_entry(name: str, entry: dict[str, Any]) -> Converted:
    """One ``beat_schedule`` entry, converted; ``ConfigurationError`` if it has no task or schedule."""
    task = entry.get("task")
    if not task:
        raise ConfigurationError(f"beat entry {name!r} has no task")
    sched: Any = entry.get("schedule")
    notes: list[str] = []
    cron: str | None = None
    every: float | None = None
    if hasattr(sched, "_orig_minute"):
        cron = cron_of(sched)
    elif hasattr(sched, "run_every"):  # celery.schedules.schedule
        every = _seconds(sched.run_every)
    elif isinstance(sched, timedelta | int | float) and not isinstance(sched, bool):
        every = _seconds(sched)
    else:
        raise ConfigurationError(
            f"beat entry {name!r}: schedule {type(sched).__name__} has no pigeon equivalent "
            "(crontab, timedelta and seconds do); write it as a cron expression"
        )
    options = dict(entry.get("options") or {})
    carried = {k: options.pop(k) for k in _CARRIED_OPTIONS if k in options}
    if "expires" in carried and isinstance(carried["expires"], timedelta):
        carried["expires"] = carried["expires"].total_seconds()
    if options:
        notes.append(f"options not carried over: {sorted(options)} (no pigeon equivalent)")
    if entry.get("relative"):
        notes.append("relative=True: pigeon's intervals are aligned to the epoch")
    return Converted(
        name=name,
        task=str(task),
        cron=cron,
        every=every,
        args=tuple(entry.get("args") or ()),
        kwargs=dict(entry.get("kwargs") or {}),
        options=carried,
        notes=tuple(notes),
    )


def _seconds(value: timedelta | float) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def load_beat(target: str) -> tuple[dict[str, dict[str, Any]], str]:
    """The ``beat_schedule`` and time zone behind ``module:attribute``.

    The attribute is a Celery app (real or ``pigeon.contrib.celery.Celery``), a
    settings module or object with ``CELERY_BEAT_SCHEDULE``/``beat_schedule``, or the dict.
    """
    module_name, _, attr = target.partition(":")
    if not module_name:
        raise ValueError(f"{target!r}: write MODULE:ATTRIBUTE (e.g. proj.celery:app)")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    obj: Any = importlib.import_module(module_name)
    for part in filter(None, attr.split(".")):
        obj = getattr(obj, part)
    if isinstance(obj, dict) and "beat_schedule" not in obj:
        return obj, "UTC"
    conf = getattr(obj, "conf", obj)
    found: Any = None
    tz: Any = None
    for key in ("beat_schedule", "CELERY_BEAT_SCHEDULE", "CELERYBEAT_SCHEDULE"):
        found = conf.get(key) if isinstance(conf, dict) else getattr(conf, key, None)
        if found is not None:
            break
    for key in ("timezone", "CELERY_TIMEZONE", "TIME_ZONE"):
        tz = conf.get(key) if isinstance(conf, dict) else getattr(conf, key, None)
        if tz:
            break
    if found is None:
        raise ConfigurationError(f"{target!r} has no beat_schedule")
    return dict(found), str(tz or "UTC")


def render(entries: dict[str, dict[str, Any]], tz: str, resolve: Any = None) -> str:
    """Python declaring the schedules on ``app``; ``resolve(name)`` finds each task, if it can."""
    converted = [convert_entry(name, entry) for name, entry in entries.items()]
    imports: dict[str, set[str]] = {}
    blocks: list[str] = []
    for c in converted:
        module, _, func = c.task.rpartition(".")
        if module:
            imports.setdefault(module, set()).add(func)
        target = func or c.task
        task_obj = resolve(c.task) if resolve is not None else None
        if task_obj is not None and hasattr(task_obj, "pigeon_on"):
            target += ".pigeon"  # a pigeon.contrib.celery task: its pigeon Task
        if c.options:
            target += ".options(" + ", ".join(f"{k}={v!r}" for k, v in c.options.items()) + ")"
        when = f"cron={c.cron!r}, tz={tz!r}" if c.cron else f"every={c.every:g}"
        parts = [target, when]
        if c.args:
            parts.append(f"args={c.args!r}")
        if c.kwargs:
            parts.append(f"kwargs={c.kwargs!r}")
        parts.append(f"name={c.name!r}")
        lines = [f"# {note}" for note in c.notes]
        lines.append(f"app.schedule({', '.join(parts)})")
        blocks.append("\n".join(lines))
    head = [f"from {m} import {', '.join(sorted(names))}" for m, names in sorted(imports.items())]
    intro = "# pigeon schedules converted from Celery beat: put these where `app` is your pigeon App.\n"
    return intro + "\n".join(head) + "\n\n" + "\n".join(blocks) + "\n"
