"""The on-call commands of ``pigeon``: dashboard, workers, queues, and jobs by filter.

``pigeon jobs retry|cancel|purge APP`` act on one job (``JOB_ID``) or on every
job a filter matches (``--state --task --queue --since --until --search``),
after printing the count and asking (``--yes`` answers for you), one page of
:data:`~pigeon.brokers.inspection.BULK_PAGE` jobs at a time, each page printed as
it is done. A ``--search`` looks at the newest
:data:`~pigeon.filters.SEARCH_SCAN` jobs unless ``--scan N|all`` says otherwise,
and says so. Every inspection command takes ``--json``. Registered onto the main
group by :func:`register`.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import Any

import click
import msgspec
from rich.table import Table

from pigeon import cli_common as cli
from pigeon.app import App
from pigeon.brokers.inspection import BULK_PAGE, BulkAction, JobFilter, apply_bulk, as_inspection
from pigeon.cli_common import one_line_errors
from pigeon.errors import PigeonError
from pigeon.filters import SEARCH_SCAN, build_filter
from pigeon.job import PENDING_STATES, JobRecord, JobState, WorkerInfo

_DEFAULT_STATES = {
    BulkAction.RETRY: (JobState.FAILED, JobState.CANCELLED),
    BulkAction.CANCEL: PENDING_STATES,
    BulkAction.DELETE: tuple(s for s in JobState if s.is_final),
}


def record_json(r: JobRecord) -> dict[str, Any]:
    """A job record as plain JSON values (arguments, result and progress decoded)."""

    def parsed(data: bytes | None) -> Any:
        if data is None:
            return None
        try:
            return json.loads(bytes(data))
        except ValueError:
            return bytes(data).decode(errors="replace")

    j = r.job
    return {
        "id": j.id,
        "task": j.task,
        "queue": j.queue,
        "state": r.state.value,
        "attempts": r.attempts,
        "max_attempts": j.max_attempts,
        "priority": j.priority,
        "unique_key": j.unique_key,
        "enqueued_at": j.enqueued_at,
        "run_at": j.run_at,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "worker_id": r.worker_id,
        "arguments": parsed(bytes(j.payload)),
        "result": parsed(r.result),
        "progress": parsed(r.progress),
        "error": None if r.error is None else msgspec.to_builtins(r.error),
        "errors": [msgspec.to_builtins(e) for e in r.errors],
    }


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def filter_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--state --task --queue --since --until --search --scan."""
    options = [
        click.option("--state", "states", multiple=True, help="A state (repeat, or comma-separate)."),
        click.option("--task", default=None, help="Task name (or its last part)."),
        click.option("--queue", default=None),
        click.option("--since", default=None, help="Enqueued since: 30m, 1h, 7d or an ISO date/time."),
        click.option("--until", default=None, help="Enqueued before: a duration ago or an ISO date/time."),
        click.option("--search", default=None, help="Arguments, e.g. 'order_id=42 customer=ann'."),
        click.option(
            "--scan",
            default=None,
            metavar="N|all",
            help=f"How many of the newest jobs --search reads (default {SEARCH_SCAN:,}), or all.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def operator_filter(app: App, raw: dict[str, Any]) -> JobFilter:
    """The filter :func:`filter_options` read: a search bounded to the newest jobs unless ``--scan``.

    Raises:
        ValueError: an option does not read (the message says which and how).
    """
    scan = raw.pop("scan")
    return build_filter(app=app, scan="" if scan is None else scan, **raw)


def search_note(where: JobFilter) -> str | None:
    """What a bounded search looked at, and how to look further; None when it read every job."""
    if where.newest is None:
        return None
    return f"searched the newest {where.newest:,} jobs (--scan N or --scan all to look further)"


def register(main: click.Group, jobs: click.Group) -> None:
    """Add the on-call commands to the ``pigeon`` group (called by ``pigeon.cli`` once it is loaded)."""
    for command in (dashboard, workers, queues):
        main.add_command(command)
    for action, name, doc in _BULK:
        jobs.add_command(_bulk_command(action, name, doc))


@click.command()
@click.argument("app_path", metavar="APP")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8642, show_default=True, help="0 picks a free port.")
@click.option("--auth", envvar="PIGEON_DASHBOARD_AUTH", default=None, help="user:password who may sign in.")
@click.option("--read-only-anonymous", is_flag=True, help="Anyone who can reach it may read (not write).")
@one_line_errors
def dashboard(app_path: str, host: str, port: int, auth: str | None, read_only_anonymous: bool) -> None:
    """Serve the dashboard of APP (401 to everyone until --auth or --read-only-anonymous)."""

    from pigeon.dashboard import create_app
    from pigeon.dashboard.security import Guard, check_bind, parse_credentials

    credentials = None if auth is None else parse_credentials(auth)
    check_bind(host, Guard(credentials=credentials, read_only_anonymous=read_only_anonymous))
    app = cli.inspected_app(app_path)
    asgi = create_app(app, auth=auth, read_only_anonymous=read_only_anonymous)
    import uvicorn

    sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"pigeon dashboard on http://{shown}:{sock.getsockname()[1]}/", nl=True)
    if credentials is None:
        mode = "read only for anyone" if read_only_anonymous else "closed: give --auth user:password"
        click.echo(f"access: {mode}")
    server = uvicorn.Server(uvicorn.Config(asgi, log_level="warning", lifespan="off"))

    async def serve(app: App) -> None:
        await server.serve(sockets=[sock])

    cli.run_on(app, serve)


@click.command()
@click.argument("app_path", metavar="APP")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@one_line_errors
def workers(app_path: str, as_json: bool) -> None:
    """Live workers: queues, concurrency, the jobs each holds now, heartbeat age."""

    async def read(app: App) -> tuple[list[WorkerInfo], list[JobRecord]]:
        broker = await app.connection()
        running = await as_inspection(broker).find_jobs(JobFilter(states=(JobState.RUNNING,)), limit=1000)
        return await broker.workers(), running

    found, running = cli.run_on(cli.inspected_app(app_path), read)
    now = time.time()
    held: dict[str, list[JobRecord]] = {}
    for r in running:
        held.setdefault(r.worker_id or "", []).append(r)
    if as_json:
        print_json(
            [
                {
                    **msgspec.to_builtins(w),
                    "heartbeat_age": now - w.last_seen,
                    "jobs": [
                        {"id": r.job.id, "task": r.job.task, "running_for": now - (r.started_at or now)}
                        for r in held.get(w.id, [])
                    ],
                }
                for w in found
            ]
        )
        return
    table = Table(title="workers")
    for col in ("id", "version", "host", "queues", "concurrency", "heartbeat", "jobs now"):
        table.add_column(col)
    for w in found:
        jobs_now = ", ".join(
            f"{r.job.id} {r.job.task} ({cli.ago(now - (r.started_at or now))})" for r in held.get(w.id, [])
        )
        table.add_row(
            w.id,
            w.version,
            f"{w.hostname} ({w.pid})",
            ",".join(w.queues),
            f"{len(held.get(w.id, []))}/{w.concurrency}",
            cli.ago(now - w.last_seen) + " ago",
            jobs_now,
        )
    cli.console.print(table if found else "no workers")


@click.command()
@click.argument("app_path", metavar="APP")
@click.argument("action", type=click.Choice(["list", "pause", "resume"]), default="list")
@click.argument("queue", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (list).")
@one_line_errors
def queues(app_path: str, action: str, queue: str | None, as_json: bool) -> None:
    """List queues (depth by state, paused), or pause / resume QUEUE (no worker claims from it)."""

    if action != "list" and not queue:
        raise click.UsageError(f"pigeon queues APP {action} QUEUE: which queue?")

    async def act(app: App) -> tuple[list[Any], list[str]]:
        broker = await app.connection()
        inspect = as_inspection(broker)
        if action == "pause":
            await inspect.pause_queue(queue or "")
        elif action == "resume":
            await inspect.resume_queue(queue or "")
            app.notifier.notify()
        return await broker.stats(), await inspect.paused_queues()

    stats, paused = cli.run_on(cli.inspected_app(app_path), act)
    if action != "list":
        click.echo(f"{action}d: {queue}")
        return
    counts = {s.queue: s.counts for s in stats}
    names = sorted(set(counts) | set(paused))
    if as_json:
        print_json([{"queue": q, "paused": q in paused, "counts": counts.get(q, {})} for q in names])
        return
    table = Table(title="queues")
    table.add_column("queue")
    table.add_column("paused")
    for state in JobState:
        table.add_column(state.value, justify="right")
    for q in names:
        per = counts.get(q, {})
        table.add_row(q, "paused" if q in paused else "", *(str(per.get(s.value, 0)) for s in JobState))
    cli.console.print(table if names else "no queues")


def _bulk_command(action: BulkAction, name: str, doc: str) -> click.Command:
    @click.command(name, help=doc)
    @click.argument("app_path", metavar="APP")
    @click.argument("job_id", required=False)
    @filter_options
    @click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
    @one_line_errors
    def command(app_path: str, job_id: str | None, yes: bool, **raw: Any) -> None:
        app = cli.inspected_app(app_path)
        if job_id is not None:
            if any(v for v in raw.values()):
                raise click.UsageError("give a JOB_ID or filter options, not both")
            done = cli.run_on(app, lambda app: _one(app, action, job_id))
            if not done:
                raise PigeonError(
                    f"job {job_id} was not {_past(action)} (unknown, or not in a state that allows it)"
                )
            click.echo(f"{name}: {job_id}")
            return
        where = operator_filter(app, raw)
        if not where.states:
            where = msgspec.structs.replace(where, states=_DEFAULT_STATES[action])

        async def count(app: App) -> int:
            return await as_inspection(await app.connection()).count_jobs(where)

        n = cli.run_on(app, count)
        states = ",".join(s.value for s in where.states)
        click.echo(f"{n} jobs match ({states})")
        if (note := search_note(where)) is not None:
            click.echo(note)
        if n == 0:
            return
        if not yes:
            click.confirm(f"{name} {n} jobs?", abort=True)

        pages = 0

        def page_done(changed: int, done: int) -> None:
            nonlocal pages
            pages += 1
            click.echo(f"page {pages} ({BULK_PAGE} at most): {_past(action)} {changed}, {done} so far")

        async def apply(app: App) -> int:
            broker = await app.connection()
            expires_at = time.time() + app.failed_ttl
            done = await apply_bulk(broker, where, action, expires_at=expires_at, progress=page_done)
            app.notifier.notify()
            return done

        click.echo(f"{_past(action)} {cli.run_on(app, apply)} jobs")

    return command


_BULK = (
    (
        BulkAction.RETRY,
        "retry",
        "Queue failed or cancelled jobs again with fresh attempts: one, or all a filter matches.",
    ),
    (
        BulkAction.CANCEL,
        "cancel",
        "Cancel unfinished jobs (a running one stops at its worker's next heartbeat).",
    ),
    (
        BulkAction.DELETE,
        "purge",
        "Delete jobs (finished ones unless --state says otherwise): one, or all a filter matches.",
    ),
)


def _past(action: BulkAction) -> str:
    return {BulkAction.RETRY: "retried", BulkAction.CANCEL: "cancelled", BulkAction.DELETE: "purged"}[action]


async def _one(app: App, action: BulkAction, job_id: str) -> bool:
    broker = await app.connection()
    if action is BulkAction.RETRY:
        done = await broker.requeue(job_id)
        app.notifier.notify()
        return done
    if action is BulkAction.CANCEL:
        return await app.acancel(job_id)
    return await as_inspection(broker).delete_jobs([job_id]) == 1
