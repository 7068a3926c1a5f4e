"""``pigeon jobs``: list and show jobs (retry, cancel and purge are in :mod:`pigeon.cli_ops`)."""

from __future__ import annotations

import json
from typing import Any

import click
import msgspec
from rich.markup import escape
from rich.table import Table

from pigeon.app import App
from pigeon.brokers.inspection import JobFilter, as_inspection
from pigeon.cli_common import (
    console,
    inspected_app,
    one_line_errors,
    run_on,
    when,
)
from pigeon.cli_ops import filter_options, operator_filter, print_json, record_json, search_note
from pigeon.errors import PigeonError
from pigeon.events import UNROUTED
from pigeon.filters import short_task_name
from pigeon.job import JobRecord


@click.group()
def jobs() -> None:
    """List, show, retry, cancel and purge jobs."""


@jobs.command("list")
@click.argument("app_path", metavar="APP")
@filter_options
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Jobs per page.")
@click.option("--before", default=None, metavar="ID", help="Only jobs older than job ID (the next page).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@one_line_errors
def jobs_list(app_path: str, limit: int, before: str | None, as_json: bool, **raw: Any) -> None:
    """Jobs, newest first, one page at a time: the last line says how to ask for the next."""

    async def read(app: App) -> tuple[list[JobRecord], bool, JobFilter]:
        task = raw["task"]
        where = operator_filter(app, raw)
        inspect = as_inspection(await app.connection())
        # One job past the page says whether there is a next page, without counting.
        records = await inspect.find_jobs(where, limit=limit + 1, before=before)
        short = where.task if where.task is not None and where.task == (task or "").strip() else None
        if not records and short is not None and "." not in short:
            # A short name the app (or a bare URL) cannot resolve: match the last part here.
            anyone = msgspec.structs.replace(where, task=None)
            scanned = await inspect.find_jobs(anyone, limit=max(limit * 20, 1000), before=before)
            records = [r for r in scanned if short_task_name(r.job.task) == short]
        return records[:limit], len(records) > limit, where

    records, more, where = run_on(inspected_app(app_path), read)
    notes = [n for n in (search_note(where),) if n is not None]
    if more:
        notes.append(f"more jobs: --before {records[-1].job.id}")
    if as_json:
        print_json([record_json(r) for r in records])
        for note in notes:  # stdout stays JSON
            click.echo(note, err=True)
        return
    table = Table()
    table.add_column("id", no_wrap=True)
    for col in ("task", "queue", "state", "attempts", "enqueued"):
        table.add_column(col)
    for r in records:
        unrouted = r.job.task == UNROUTED
        table.add_row(
            r.job.id,
            f"event {_topic(r)}" if unrouted else r.job.task,
            r.job.queue,
            "unrouted" if unrouted else r.state.value,
            "" if unrouted else f"{r.attempts}/{r.job.max_attempts}",
            when(r.job.enqueued_at),
        )
    console.print(table if records else "no jobs")
    for note in notes:
        console.print(note, highlight=False, markup=False)


@jobs.command("show")
@click.argument("app_path", metavar="APP")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@one_line_errors
def jobs_show(app_path: str, job_id: str, as_json: bool) -> None:
    """Everything about one job: arguments, state, result or error with traceback."""

    async def show(app: App) -> JobRecord:
        rec = await (await app.connection()).get(job_id)
        if rec is None:
            raise PigeonError(f"no job {job_id}")
        return rec

    r = run_on(inspected_app(app_path), show)
    if as_json:
        print_json(record_json(r))
        return
    j = r.job
    if j.task == UNROUTED:
        _show_unrouted(r)
        return
    rows = [
        ("id", j.id),
        ("task", j.task),
        ("queue", j.queue),
        ("state", r.state.value),
        ("attempts", f"{r.attempts}/{j.max_attempts}"),
        ("priority", str(j.priority)),
        ("unique key", j.unique_key or ""),
        ("enqueued", when(j.enqueued_at)),
        ("run at", when(j.run_at)),
        ("started", when(r.started_at)),
        ("finished", when(r.finished_at)),
        ("worker", r.worker_id or ""),
        ("arguments", bytes(j.payload).decode(errors="replace")),
        ("result", "" if r.result is None else r.result.decode(errors="replace")),
        ("progress", "" if r.progress is None else r.progress.decode(errors="replace")),
    ]
    if r.raw is not None:  # not an envelope pigeon wrote: show its bytes, escaped, and nothing else
        rows[1:2] = [("task", "(malformed)"), ("stored", repr(r.raw[:2000]))]
    for key, value in rows:
        console.print(f"[bold]{key:>11}[/] {escape(value)}", highlight=False)
    earlier = r.errors[:-1] if r.error is not None and r.errors[-1:] == (r.error,) else r.errors
    for n, e in enumerate(earlier, 1):
        console.print(f"[bold]{'failed':>11}[/] ({n}) {e.type}: {e.message}", highlight=False)
    if r.error is not None:
        error = f"{r.error.type}: {r.error.message}"
        console.print(f"[bold]{'error':>11}[/] {escape(error)}", highlight=False)
        if r.error.traceback:
            console.print(r.error.traceback, highlight=False, markup=False)


def _topic(r: JobRecord) -> str:
    try:
        return str(json.loads(bytes(r.job.payload))["topic"])
    except (ValueError, KeyError, TypeError):
        return "?"


def _show_unrouted(r: JobRecord) -> None:
    """A recorded event nobody handled: what it is, not a cancelled job that runs in year 3000."""
    rows = [
        ("id", r.job.id),
        ("event", _topic(r)),
        ("state", "unrouted: published with no handler, kept for inspection until failed_ttl"),
        ("published", when(r.job.enqueued_at)),
        ("payload", bytes(r.job.payload).decode()),
    ]
    for key, value in rows:
        console.print(f"[bold]{key:>11}[/] {value}", highlight=False)
