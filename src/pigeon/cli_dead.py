"""``pigeon jobs dead`` and ``pigeon jobs requeue-dead``: the failed jobs, wherever a broker keeps them.

RabbitMQ alone keeps them as messages in each queue's dead-letter queue
(:class:`~pigeon.brokers.inspection.DeadLettering`); every other broker keeps a
FAILED record, read and retried through the inspection protocol. One pair of
commands for both, so a runbook does not depend on the broker.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import click
from rich.table import Table

from pigeon.app import App
from pigeon.brokers.inspection import BulkAction, DeadLettering, JobFilter, apply_bulk, as_inspection
from pigeon.cli_common import console, inspected_app, one_line_errors, run_on, when
from pigeon.cli_ops import print_json, record_json
from pigeon.errors import PigeonError
from pigeon.job import JobRecord, JobState

_QUEUES = "A queue (again for more); default: every queue (RabbitMQ alone: the app's tasks' queues)."
_FAILED = (JobState.FAILED,)


def app_queues(app: App) -> list[str]:
    """The queues the app's tasks and handlers use, ``default`` among them."""
    tasks = [*app.tasks.values(), *(t for _, t in app.handlers)]
    return sorted({"default", *(t.defaults.queue for t in tasks)})


def _failed_in(queues: Sequence[str]) -> list[JobFilter]:
    """A filter of failed jobs per queue named, or one for every queue."""
    return [JobFilter(queue=q, states=_FAILED) for q in queues] or [JobFilter(states=_FAILED)]


async def _broker(app: App) -> object:
    """The app's broker, unwrapped from its seam (the optional protocols are the broker's own)."""
    return (await app.connection()).inner


async def read_dead(app: App, queues: Sequence[str], limit: int) -> list[JobRecord]:
    """Up to ``limit`` failed jobs of ``queues`` (every queue when none are named)."""
    broker = await _broker(app)
    if isinstance(broker, DeadLettering):  # no record: its queues are all it can name
        return await broker.dead_letters(queues or app_queues(app), limit)
    inspect = as_inspection(broker)
    records: list[JobRecord] = []
    for where in _failed_in(queues):
        records += await inspect.find_jobs(where, limit=limit - len(records))
        if len(records) >= limit:
            break
    return records


async def requeue_dead(app: App, queues: Sequence[str], job_ids: Sequence[str] | None) -> int:
    """Queue failed jobs of ``queues`` again (those of ``job_ids``, or all); return how many."""
    broker = await _broker(app)
    if isinstance(broker, DeadLettering):
        done = await broker.requeue_dead(queues or app_queues(app), job_ids)
    elif job_ids is not None:
        done = await as_inspection(broker).requeue_jobs(job_ids)
    else:
        expires_at = time.time() + app.failed_ttl
        done = 0
        for where in _failed_in(queues):
            done += await apply_bulk(broker, where, BulkAction.RETRY, expires_at=expires_at)
    app.notifier.notify()
    return done


@click.command("dead")
@click.argument("app_path", metavar="APP")
@click.option("--queue", "queues", multiple=True, help=_QUEUES)
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@one_line_errors
def jobs_dead(app_path: str, queues: tuple[str, ...], limit: int, as_json: bool) -> None:
    """Failed jobs (on RabbitMQ alone: its dead-letter queues, read and left there)."""
    app = inspected_app(app_path)
    records = run_on(app, lambda app: read_dead(app, list(dict.fromkeys(queues)), limit))
    if as_json:
        print_json([record_json(r) for r in records])
        return
    table = Table()
    for col in ("id", "task", "queue", "attempts", "error", "failed"):
        table.add_column(col, no_wrap=col == "id")
    for r in records:
        error = f"{r.error.type}: {r.error.message}" if r.error is not None else ""
        table.add_row(r.job.id, r.job.task, r.job.queue, str(r.attempts), error, when(r.finished_at))
    console.print(table if records else "no failed jobs")


@click.command("requeue-dead")
@click.argument("app_path", metavar="APP")
@click.argument("job_ids", nargs=-1)
@click.option("--queue", "queues", multiple=True, help=_QUEUES)
@click.option("--all", "every", is_flag=True, help="Every failed job of those queues.")
@one_line_errors
def jobs_requeue_dead(app_path: str, job_ids: tuple[str, ...], queues: tuple[str, ...], every: bool) -> None:
    """Queue failed jobs again with fresh attempts: those named, or --all."""
    if bool(job_ids) == every:
        raise click.UsageError("name the jobs to requeue, or give --all")
    app = inspected_app(app_path)
    wanted = None if every else list(job_ids)
    done = run_on(app, lambda app: requeue_dead(app, list(dict.fromkeys(queues)), wanted))
    if wanted is not None and done < len(wanted):
        raise PigeonError(
            f"requeued {done} of {len(wanted)} jobs: the others are not failed jobs of those queues"
        )
    click.echo(f"requeued {done} jobs")
