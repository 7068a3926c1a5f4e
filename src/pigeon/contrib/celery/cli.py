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
    from pigeon.contrib.celery.beat import load_beat, render

    try:
        entries, tz = load_beat(target)
        click.echo(render(entries, tz, resolve=_resolve), nl=False)
    except (PigeonError, ImportError, AttributeError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc


def _resolve(name: str) -> Any:
    module, _, attr = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr, None)
    except ImportError:
        return None
