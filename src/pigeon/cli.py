"""The ``pigeon`` command: run workers, send jobs, inspect queues.

APP is ``module:attribute`` (the current directory is importable) or, for the
inspection commands, a broker URL. Errors print one line and exit 1.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from functools import wraps
from typing import Any, TypeVar

import click
import msgspec
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pigeon.app import App
from pigeon.contrib.celery import cli as celery_cli
from pigeon.errors import ConfigurationError, PigeonError
from pigeon.events import UNROUTED
from pigeon.filters import short_task_name, task_name_in
from pigeon.job import JobRecord, JobState

T = TypeVar("T")
# Piped output is read by programs and people's pagers: tables are never cut to 80 columns there.
console = Console(width=None if sys.stdout.isatty() else 100_000)


class _Failure(click.ClickException):
    def show(self, file: Any = None) -> None:
        Console(stderr=True).print(f"[bold red]error:[/] {self.message}", highlight=False)


def _one_line_errors(fn: Callable[..., T]) -> Callable[..., T]:
    @wraps(fn)
    def run(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except (PigeonError, TypeError, ValueError, ImportError, OSError) as exc:
            raise _Failure(str(exc) or type(exc).__name__) from exc

    return run


def load_app(target: str) -> App:
    """An App from ``module:attribute``, or a bare one for a broker URL."""
    if "://" in target:
        return App(target)
    module_name, _, attr = target.partition(":")
    if not attr:
        raise ValueError(f"{target!r}: write MODULE:APP (e.g. myproject.jobs:app) or a broker URL")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    app = getattr(module, attr, None)
    app = getattr(app, "__pigeon_app__", app)  # framework glue standing in for an App
    if not isinstance(app, App):
        raise ValueError(f"{target!r} is not a pigeon App (found {type(app).__name__})")
    return app


# One way to name a task, shared with the dashboard (pigeon.filters).
_short = short_task_name


def inspected_app(target: str) -> App:
    """:func:`load_app` for the inspection verbs, which never create a database.

    Opening a SQLite file creates it (and its folders): a typo would show an empty
    queue. Only ``worker`` and ``migrate`` create one.

    Raises:
        ConfigurationError: the URL names a SQLite file that does not exist.
    """
    app = load_app(target)
    url = app.url
    if url.startswith("sqlite:"):
        from pigeon.brokers.sqlite import SqliteBroker

        path = SqliteBroker.from_url(url, {}).path
        if not os.path.exists(path):
            raise ConfigurationError(
                f"no SQLite database at {os.path.abspath(path)} (a typo?); "
                "`pigeon worker` or `pigeon migrate` creates one"
            )
    return app


def _run(app: App, coro_fn: Callable[[App], Coroutine[Any, Any, T]]) -> T:
    async def main() -> T:
        try:
            return await coro_fn(app)
        finally:
            await app.aclose()

    return asyncio.run(main())


class _JobFormatter(logging.Formatter):
    """Adds ``[job=… task=… attempt=…]`` to records that carry them."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        job = getattr(record, "job_id", None)
        if job is None:
            return line
        task, attempt = getattr(record, "task", "?"), getattr(record, "attempt", "?")
        return f"{line} [job={job} task={task} attempt={attempt}]"


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the job's fields, the traceback."""

    FIELDS = ("job_id", "task", "attempt", "duration")

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update({k: getattr(record, k) for k in self.FIELDS if hasattr(record, k)})
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def _setup_logging(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_JobFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger("pigeon")
    root.addHandler(handler)
    root.setLevel(level.upper())


@click.group()
@click.version_option(package_name="pigeon")
def main() -> None:
    """pigeon: background jobs and message passing."""


@main.command()
@click.argument("app_path", metavar="APP")
@click.option(
    "--queues",
    "-Q",
    default=None,
    help="Comma-separated queues (default: the app's: a Django backend's QUEUES, else default); "
    "name=N caps that queue at N jobs in flight here.",
)
@click.option("--concurrency", "-c", type=int, default=None, help="Jobs in flight per process.")
@click.option("--processes", "-p", type=int, default=1, show_default=True, help="Worker processes.")
@click.option("--burst", is_flag=True, help="Exit when nothing is left to do.")
@click.option("--grace", type=float, default=None, help="Seconds running jobs get at shutdown.")
@click.option("--log-level", "-l", default="info", show_default=True)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one JSON object per line (for log collectors).",
)
@click.option(
    "--metrics-port", type=int, default=None, help="Serve Prometheus metrics on this port (0: any)."
)
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Address for --metrics-port.")
@_one_line_errors
def worker(
    app_path: str,
    queues: str | None,
    concurrency: int | None,
    processes: int,
    burst: bool,
    grace: float | None,
    log_level: str,
    log_format: str,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Run a worker for APP (module:app). SIGTERM/SIGINT stop gracefully; a second one stops at once."""
    from pigeon.worker.config import WorkerConfig

    _setup_logging(log_level, log_format)
    if processes > 1:
        from pigeon.worker.supervisor import supervise

        argv = [a for a in sys.argv[1:]]
        metrics = None if metrics_port is None else (load_app(app_path), metrics_host, metrics_port)
        sys.exit(supervise(argv, processes, metrics=metrics))
    app = load_app(app_path)
    changes: dict[str, Any] = {"burst": burst}
    if queues:
        changes["queues"] = queues
    if concurrency:
        changes["concurrency"] = concurrency
    if grace is not None:
        changes["grace"] = grace
    config = WorkerConfig.from_env(base=app.worker_defaults()).replace(**changes)

    the_worker = app.make_worker(config)

    async def run(app: App) -> None:
        if metrics_port is not None or os.environ.get("PIGEON_METRICS_CHILD"):
            from pigeon import metrics

            counters = metrics.JobMetrics(app)
            the_worker.observer = counters
            if metrics_port is not None:
                port = metrics.serve_worker(app, counters, metrics_host, metrics_port)
                click.echo(f"metrics on http://{metrics_host}:{port}/metrics")
        await the_worker.run()

    _run(app, run)
    _exit_past_stuck_threads(the_worker.busy_threads)


def _exit_past_stuck_threads(busy: int) -> None:
    """Exit now if job threads still run a job (Python would wait for them at exit).

    Idle pool threads are not counted: they end on their own once the pool shuts down.
    """
    if busy:
        logging.getLogger("pigeon.worker").warning(
            "%d job threads are still running; exiting without them (their jobs were settled or handed back)",
            busy,
        )
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


@main.command()
@click.argument("app_path", metavar="APP")
@click.argument("task_name", metavar="TASK")
@click.option("--args", "args_json", default="[]", help="JSON list of positional arguments.")
@click.option("--kwargs", "kwargs_json", default="{}", help="JSON object of keyword arguments.")
@click.option("--queue", default=None)
@click.option("--priority", type=int, default=None)
@click.option("--delay", type=float, default=None, help="Seconds before the job may start.")
@click.option("--unique-key", default=None)
@click.option("--wait", "wait_for", type=float, default=None, help="Wait this many seconds for the result.")
@_one_line_errors
def enqueue(
    app_path: str,
    task_name: str,
    args_json: str,
    kwargs_json: str,
    queue: str | None,
    priority: int | None,
    delay: float | None,
    unique_key: str | None,
    wait_for: float | None,
) -> None:
    """Send TASK (its full name, or the last part of it) with JSON arguments."""
    app = load_app(app_path)
    full = task_name_in(app, task_name)
    task = app.tasks.get(full)
    if task is None:
        known = ", ".join(sorted(app.tasks)) or "none"
        raise ValueError(f"no task {task_name!r} in {app_path} (known: {known})")
    try:
        args, kwargs = json.loads(args_json), json.loads(kwargs_json)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--args/--kwargs must be JSON: {exc}") from None
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise ValueError("--args must be a JSON list and --kwargs a JSON object")
    sender = task.options(queue=queue, priority=priority, delay=delay, unique_key=unique_key)

    async def send(app: App) -> None:
        handle = await sender.asend(*args, **kwargs)
        console.print(handle.id)
        if wait_for is not None:
            console.print_json(json.dumps(await handle.aresult(timeout=wait_for), default=str))

    _run(app, send)


@main.command()
@click.argument("app_path", metavar="APP")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_one_line_errors
def status(app_path: str, as_json: bool) -> None:
    """Queues with job counts by state, and the workers alive."""

    async def show(app: App) -> None:
        broker = await app.connection()
        stats, workers = await broker.stats(), await broker.workers()
        if as_json:
            from pigeon.cli_ops import print_json

            print_json({"queues": msgspec.to_builtins(stats), "workers": msgspec.to_builtins(workers)})
            return
        table = Table(title=f"queues — {app.url}")
        table.add_column("queue")
        for state in JobState:
            table.add_column(state.value, justify="right")
        for s in stats:
            table.add_row(s.queue, *(str(s.counts.get(state.value, 0)) for state in JobState))
        console.print(table if stats else "no jobs")
        wt = Table(title="workers")
        for col in ("id", "queues", "concurrency", "up", "last seen"):
            wt.add_column(col)
        now = time.time()
        for w in workers:
            wt.add_row(
                w.id,
                ",".join(w.queues),
                str(w.concurrency),
                _ago(now - w.started_at),
                _ago(now - w.last_seen),
            )
        console.print(wt if workers else "no workers")
        if app.handlers:
            topics = Table(title="event handlers (this app)")
            topics.add_column("topic pattern")
            topics.add_column("handlers")
            patterns: dict[str, list[str]] = {}
            for pattern, task in app.handlers:
                patterns.setdefault(pattern, []).append(task.name.split("@")[0])
            for pattern, names in patterns.items():
                topics.add_row(pattern, ", ".join(names))
            console.print(topics)
        if any(s.queue == UNROUTED for s in stats):
            console.print(f"events published with no handler are kept in the {UNROUTED!r} queue")

    _run(inspected_app(app_path), show)


def _ago(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


class _DefaultGroup(click.Group):
    """A group whose arguments go to its ``list`` command unless they name another."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] != "--help":
            args = ["list", *args]
        return super().parse_args(ctx, args)


@main.group(cls=_DefaultGroup)
def schedules() -> None:
    """Periodic jobs: `pigeon schedules APP` lists them; `import-celery` converts Celery beat's."""


@schedules.command("list")
@click.argument("app_path", metavar="APP")
@click.option("--count", "-n", type=int, default=3, show_default=True, help="Next runs to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_one_line_errors
def schedules_list(app_path: str, count: int, as_json: bool) -> None:
    """Periodic jobs and their next runs."""
    app = load_app(app_path)
    if as_json:
        from pigeon.cli_ops import print_json

        start = datetime.now(UTC)
        print_json(
            [
                {
                    "name": s.name,
                    "task": s.task.name,
                    "cron": s.cron,
                    "every": s.every,
                    "tz": s.tz,
                    "missed": s.missed,
                    "next_runs": [
                        t.isoformat() for t, _ in zip(s.ticks_after(start), range(count), strict=False)
                    ],
                }
                for s in app.schedules
            ]
        )
        return
    if not app.schedules:
        console.print("no schedules")
        return
    table = Table(title="schedules")
    for col in ("name", "task", "when", "missed", "next runs"):
        table.add_column(col)
    now = datetime.now(UTC)
    for s in app.schedules:
        ticks = s.ticks_after(now)
        upcoming = ", ".join(next(ticks).strftime("%Y-%m-%d %H:%M:%S %Z") for _ in range(count))
        when = f"cron {s.cron} ({s.tz})" if s.cron else f"every {s.every:g} s"
        table.add_row(s.name, s.task.name, when, s.missed, upcoming)
    console.print(table)


schedules.add_command(celery_cli.import_celery)
main.add_command(celery_cli.celery_bridge)


@main.group()
def jobs() -> None:
    """List, show, retry, cancel and purge jobs."""


@jobs.command("list")
@click.argument("app_path", metavar="APP")
@click.option("--queue", default=None)
@click.option("--state", type=click.Choice([s.value for s in JobState]), default=None)
@click.option("--task", default=None)
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_one_line_errors
def jobs_list(
    app_path: str, queue: str | None, state: str | None, task: str | None, limit: int, as_json: bool
) -> None:
    """Jobs, newest first."""

    async def show(app: App) -> None:
        broker = await app.connection()
        wanted = None if task is None else task_name_in(app, task)
        chosen = JobState(state) if state else None
        records = await broker.list_jobs(queue=queue, state=chosen, task=wanted, limit=limit)
        if not records and wanted is not None and wanted == task and "." not in task:
            # A short name the app (or a bare URL) cannot resolve: match the last part here.
            scanned = await broker.list_jobs(queue=queue, state=chosen, limit=max(limit * 20, 1000))
            records = [r for r in scanned if _short(r.job.task) == task][:limit]
        if as_json:
            from pigeon.cli_ops import print_json, record_json

            print_json([record_json(r) for r in records])
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
                _when(r.job.enqueued_at),
            )
        console.print(table if records else "no jobs")

    _run(inspected_app(app_path), show)


@jobs.command("show")
@click.argument("app_path", metavar="APP")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_one_line_errors
def jobs_show(app_path: str, job_id: str, as_json: bool) -> None:
    """Everything about one job: arguments, state, result or error with traceback."""

    async def show(app: App) -> JobRecord:
        rec = await (await app.connection()).get(job_id)
        if rec is None:
            raise PigeonError(f"no job {job_id}")
        return rec

    r = _run(inspected_app(app_path), show)
    if as_json:
        from pigeon.cli_ops import print_json, record_json

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
        ("enqueued", _when(j.enqueued_at)),
        ("run at", _when(j.run_at)),
        ("started", _when(r.started_at)),
        ("finished", _when(r.finished_at)),
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
        ("published", _when(r.job.enqueued_at)),
        ("payload", bytes(r.job.payload).decode()),
    ]
    for key, value in rows:
        console.print(f"[bold]{key:>11}[/] {value}", highlight=False)


@main.command()
@click.option("--stations", type=int, default=10, show_default=True, help="Simulated NFC readers.")
@click.option("--seconds", type=float, default=10.0, show_default=True, help="How long the readers read.")
@click.option("--interval", type=float, default=2.0, show_default=True, help="Mean seconds between reads.")
@click.option("--tour", is_flag=True, help="A tour of the task API instead.")
@click.option("--url", default=None, help="Another broker (redis://…, amqp://…); default: a new SQLite file.")
@click.option("--store", default=None, help="RabbitMQ's store; default: $PIGEON_STORE, else a SQLite file.")
@_one_line_errors
def demo(
    stations: int, seconds: float, interval: float, tour: bool, url: str | None, store: str | None
) -> None:
    """The NFC station demo on the embedded SQLite default, everything in this process."""
    if tour:
        from pigeon.demo import tour as tour_module

        tour_module.main()
        return
    from pigeon.demo import nfc

    if not nfc.main(stations, seconds, interval, url=url, store=store):
        sys.exit(1)


@main.command()
@click.argument("app_path", metavar="APP")
@_one_line_errors
def migrate(app_path: str) -> None:
    """Create or upgrade the broker's schema (brokers that have one)."""

    async def run(app: App) -> list[str]:
        return await app.amigrate()

    applied = _run(load_app(app_path), run)
    console.print("applied: " + ", ".join(applied) if applied else "the schema is up to date")


def _register_operations() -> None:
    from pigeon import cli_ops

    cli_ops.register(main, jobs)


_register_operations()


if __name__ == "__main__":  # pragma: no cover
    main()
