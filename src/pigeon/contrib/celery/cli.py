"""The Celery commands of ``pigeon``: ``schedules import-celery`` and ``celery-bridge``."""

from __future__ import annotations

import importlib
from typing import Any

import click

from pigeon.errors import PigeonError


@click.command("import-celery")
@click.argument("target", metavar="MODULE:ATTRIBUTE")
def import_celery(target: str) -> None:
    """Print pigeon schedules equivalent to a Celery beat_schedule (registers nothing)."""
    from pigeon.cli_common import Failure
    from pigeon.contrib.celery.beat import load_beat, render

    try:
        entries, tz = load_beat(target)
        click.echo(render(entries, tz, resolve=_resolve), nl=False)
    except (PigeonError, ImportError, AttributeError, ValueError) as exc:
        raise Failure(str(exc) or type(exc).__name__) from exc


def _resolve(name: str) -> Any:
    module, _, attr = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr, None)
    except ImportError:
        return None


@click.command("celery-bridge")
@click.argument("app_path", metavar="APP")
@click.option("--broker", "broker_url", required=True, help="Celery's broker URL (redis://… or amqp://…).")
@click.option(
    "--result-backend",
    "backend_url",
    default=None,
    help="Celery's result backend (redis://…, django-db, db+…).",
)
@click.option("-Q", "--queues", default="celery", show_default=True, help="Celery queues, comma-separated.")
@click.option("--log-level", default="info", show_default=True)
def celery_bridge(
    app_path: str, broker_url: str, backend_url: str | None, queues: str, log_level: str
) -> None:
    """Run Celery's queued tasks as pigeon jobs of APP (and write results back for Celery)."""
    import asyncio

    from pigeon.cli_common import Failure, load_app, setup_logging
    from pigeon.contrib.celery.bridge.core import split_queues
    from pigeon.contrib.celery.bridge.run import run_bridge

    setup_logging(log_level)
    try:
        app = load_app(app_path)
        asyncio.run(run_bridge(app, broker_url, split_queues(queues), backend_url))
    except (PigeonError, ImportError, ValueError, OSError) as exc:
        raise Failure(str(exc) or type(exc).__name__) from exc
