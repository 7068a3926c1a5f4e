"""``manage.py pigeon <verb>``: pigeon's CLI with the project's settings and TASKS app.

Every verb of ``pigeon`` that takes an APP gets the backend's app
(``--backend ALIAS`` picks another TASKS alias)::

    python manage.py pigeon worker --concurrency 8
    python manage.py pigeon status
    python manage.py pigeon jobs list --state failed
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pigeon.contrib.django.cli import TARGET

# The verbs whose first argument is APP, after the verb's own words.
_TAKES_APP = {("worker",), ("enqueue",), ("status",), ("migrate",), ("schedules",), ("jobs", "list"),
              ("jobs", "show"), ("jobs", "retry"), ("jobs", "cancel"), ("jobs", "purge")}  # fmt: skip


def click_argv(argv: list[str], backend: str) -> list[str]:
    """``argv`` for pigeon's click group, with the app inserted after the verb."""
    target = TARGET.format("app" if backend == "default" else backend)
    for n in (2, 1):
        if tuple(argv[:n]) in _TAKES_APP and not any(a in ("--help", "-h") for a in argv[n : n + 1]):
            return [*argv[:n], target, *argv[n:]]
    return argv


class Command(BaseCommand):
    help = "pigeon's CLI (worker, status, schedules, jobs, enqueue, migrate) with this project's TASKS app."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--backend", default="default", help="The TASKS alias (default: default).")
        parser.add_argument("args", nargs="...", help="pigeon's verb and its options, e.g. worker -c 8")

    def run_from_argv(self, argv: list[str]) -> None:
        # Everything after "pigeon" belongs to click, --help included; only --backend is ours.
        rest = argv[2:]
        backend = "default"
        if rest[:1] == ["--backend"] and len(rest) > 1:
            backend, rest = rest[1], rest[2:]
        elif rest[:1] and rest[0].startswith("--backend="):
            backend, rest = rest[0].split("=", 1)[1], rest[1:]
        self.execute(*rest, backend=backend, force_color=False, no_color=False, skip_checks=False)

    def handle(self, *args: str, **options: Any) -> None:
        from pigeon.cli import main

        argv = click_argv(list(args), options["backend"])
        saved = sys.argv
        sys.argv = ["pigeon", *argv]  # `worker --processes N` starts children with sys.argv[1:]
        try:
            main.main(args=argv, prog_name="manage.py pigeon", standalone_mode=False)
        except SystemExit as exc:
            if exc.code:
                raise CommandError(f"pigeon exited with {exc.code}", returncode=int(exc.code)) from None
        except Exception as exc:  # click's own errors (bad options) print as Django's
            import click

            if isinstance(exc, click.ClickException):
                exc.show()
                raise CommandError(exc.format_message(), returncode=exc.exit_code) from None
            raise
        finally:
            sys.argv = saved
