"""The ``pigeon`` command: run workers, send jobs, inspect queues.

APP is ``module:attribute`` (the current directory is importable) or, for the
inspection commands, a broker URL. Errors print one line and exit 1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import msgspec
from rich.table import Table

from pigeon import cli_dead, cli_ops
from pigeon.app import App
from pigeon.cli_common import (
    ago,
    console,
    inspected_app,
    load_app,
    one_line_errors,
    run_on,
    setup_logging,
)
from pigeon.cli_jobs import jobs
from pigeon.contrib.celery import cli as celery_cli
from pigeon.events import UNROUTED
from pigeon.filters import task_name_in
from pigeon.job import JobState

if TYPE_CHECKING:
    from pigeon.worker.loop import Worker


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
@click.option(
    "--burst/--no-burst",
    default=None,
    help="Exit when nothing is left to do (default: PIGEON_BURST, else off).",
)
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
@one_line_errors
def worker(
    app_path: str,
    queues: str | None,
    concurrency: int | None,
    processes: int,
    burst: bool | None,
    grace: float | None,
    log_level: str,
    log_format: str,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Run a worker for APP (module:app). SIGTERM/SIGINT stop gracefully; a second one stops at once."""
    from pigeon.worker.config import WorkerConfig

    setup_logging(log_level, log_format)
    if processes > 1:
        from pigeon.worker.supervisor import supervise

        argv = [a for a in sys.argv[1:]]
        metrics = None if metrics_port is None else (load_app(app_path), metrics_host, metrics_port)
        sys.exit(supervise(argv, processes, metrics=metrics))
    app = load_app(app_path)
    changes: dict[str, Any] = {}
    if burst is not None:
        changes["burst"] = burst
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
        if os.environ.get("PIGEON_SUPERVISED"):
            _obey_the_supervisor(the_worker)
            await the_worker.run(install_signals=False)
        else:
            await the_worker.run()

    run_on(app, run)
    _exit_past_stuck_threads(the_worker.busy_threads)


def _obey_the_supervisor(the_worker: Worker) -> None:
    """Under ``--processes``: any number of SIGTERMs is one graceful stop; SIGUSR1 is "at once".

    systemd's default ``KillMode=control-group`` signals every process of the unit, so a child
    gets SIGTERM from systemd and again from its supervisor: counted as two, it would skip the
    grace. The supervisor says "now" with SIGUSR1 instead.
    """
    loop = asyncio.get_running_loop()
    log = logging.getLogger("pigeon.worker")

    heard: list[int] = []

    def graceful(signum: int) -> None:
        if not heard:  # a second stop() would be a hard one
            log.info("%s: finishing running jobs, then stopping", signal.Signals(signum).name)
            the_worker.stop()
        heard.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, graceful, sig)
    loop.add_signal_handler(signal.SIGUSR1, lambda: the_worker.stop(hard=True))


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
@one_line_errors
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

    run_on(app, send)


@main.command()
@click.argument("app_path", metavar="APP")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@one_line_errors
def status(app_path: str, as_json: bool) -> None:
    """Queues with job counts by state, and the workers alive."""

    async def show(app: App) -> None:
        broker = await app.connection()
        stats, workers = await broker.stats(), await broker.workers()
        if as_json:
            cli_ops.print_json(
                {"queues": msgspec.to_builtins(stats), "workers": msgspec.to_builtins(workers)}
            )
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
                ago(now - w.started_at),
                ago(now - w.last_seen),
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

    run_on(inspected_app(app_path), show)


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
@one_line_errors
def schedules_list(app_path: str, count: int, as_json: bool) -> None:
    """Periodic jobs and their next runs."""
    app = load_app(app_path)
    if as_json:
        start = datetime.now(UTC)
        cli_ops.print_json(
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


@main.command()
@click.option("--stations", type=int, default=10, show_default=True, help="Simulated NFC readers.")
@click.option("--seconds", type=float, default=10.0, show_default=True, help="How long the readers read.")
@click.option("--interval", type=float, default=2.0, show_default=True, help="Mean seconds between reads.")
@click.option("--tour", is_flag=True, help="A tour of the task API instead.")
@click.option("--url", default=None, help="Another broker (redis://…, amqp://…); default: a new SQLite file.")
@click.option(
    "--store",
    default=None,
    help="RabbitMQ's store; default: $PIGEON_STORE, else a SQLite file; 'none': RabbitMQ alone.",
)
@click.option(
    "--role",
    type=click.Choice(["readers", "workers"]),
    default=None,
    help="Run only this box's readers (and its LEDs), or only the look-up workers (needs --url).",
)
@click.option("--box", default="box-0", show_default=True, help="The readers' box name (--role readers).")
@click.option("--readers", "readers_n", type=int, default=0, help="Reader processes to start here (--url).")
@click.option("--workers", "workers_n", type=int, default=1, show_default=True, help="With --readers.")
@click.option("--journal", type=click.Path(path_type=Path), default=None, help="Log read ids here.")
@click.option("--report", type=click.Path(path_type=Path), default=None, help="Write a JSON report here.")
@one_line_errors
def demo(**opts: Any) -> None:
    """The NFC station demo: on the embedded SQLite default, everything in this process;
    with --url, across processes (--role, or --readers N --workers M)."""
    if opts["tour"]:
        from pigeon.demo import tour as tour_module

        tour_module.main()
        return
    if opts["role"] or opts["readers_n"]:
        _demo_roles(opts)
        return
    from pigeon.demo import nfc

    stations, seconds, interval = opts["stations"], opts["seconds"], opts["interval"]
    if not nfc.main(stations, seconds, interval, url=opts["url"], store=opts["store"], report=opts["report"]):
        sys.exit(1)


def _demo_roles(opts: dict[str, Any]) -> None:
    from pigeon.demo import nfc_roles

    url, store = opts["url"], opts["store"]
    if not url:
        raise click.UsageError("--role and --readers need --url: the processes meet at a server broker")
    if opts["role"] == "workers":
        nfc_roles.workers(url, store=store)
        return
    timing = (opts["stations"], opts["seconds"], opts["interval"])
    if opts["role"] == "readers":
        ok = nfc_roles.readers(
            url, opts["box"], *timing, store=store, journal=opts["journal"], report=opts["report"]
        )
    else:
        stations, seconds, interval = timing
        ok = nfc_roles.launch(
            url,
            readers_n=opts["readers_n"],
            workers_n=opts["workers_n"],
            stations=stations,
            seconds=seconds,
            interval=interval,
            store=store,
            report=opts["report"],
        )
    if not ok:
        sys.exit(1)


@main.command()
@click.argument("app_path", metavar="APP")
@one_line_errors
def migrate(app_path: str) -> None:
    """Create or upgrade the broker's schema (brokers that have one)."""

    async def run(app: App) -> list[str]:
        return await app.amigrate()

    applied = run_on(load_app(app_path), run)
    console.print("applied: " + ", ".join(applied) if applied else "the schema is up to date")


main.add_command(jobs)
cli_ops.register(main, jobs)
jobs.add_command(cli_dead.jobs_dead)
jobs.add_command(cli_dead.jobs_requeue_dead)


if __name__ == "__main__":  # pragma: no cover
    main()
