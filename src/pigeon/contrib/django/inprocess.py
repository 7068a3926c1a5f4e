"""When the web process may run a worker: asked for in settings, and not a management command."""

from __future__ import annotations

import sys
from typing import Any

from pigeon.contrib.django._app import DjangoApp, get_app
from pigeon.worker.config import WorkerConfig

# Management commands that serve requests: a worker wrapped around their application may run.
SERVING_COMMANDS = frozenset({"runserver"})


def in_management_command(argv: list[str] | None = None) -> bool:
    """Whether this process is ``manage.py <command>`` (migrate, test, shell, …) rather than a server."""
    argv = sys.argv if argv is None else argv
    if len(argv) < 2:
        return False
    from django.core.management import get_commands

    command = argv[1]
    return command in get_commands() and command not in SERVING_COMMANDS


def worker_app(alias: str = "default") -> DjangoApp | None:
    """The app whose worker should run in this web process, or None."""
    app = get_app(alias)
    if not app.config.worker_in_process or in_management_command():
        return None
    return app


def worker_config(app: DjangoApp, **overrides: Any) -> WorkerConfig:
    """``OPTIONS['worker']`` over the defaults, taking the backend's QUEUES unless it names queues."""
    return app.worker_defaults().replace(**overrides)
