"""What the ``pigeon`` commands share: loading the app, one-line errors, logging, formatting."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from functools import wraps
from typing import Any, TypeVar

import click
from rich.console import Console

from pigeon.app import App
from pigeon.errors import ConfigurationError, PigeonError

T = TypeVar("T")
# Piped output is read by programs and people's pagers: tables are never cut to 80 columns there.
console = Console(width=None if sys.stdout.isatty() else 100_000)


class Failure(click.ClickException):
    """A command's error, printed as one red line."""

    def show(self, file: Any = None) -> None:
        Console(stderr=True).print(f"[bold red]error:[/] {self.message}", highlight=False)


def one_line_errors(fn: Callable[..., T]) -> Callable[..., T]:
    @wraps(fn)
    def run(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except (PigeonError, TypeError, ValueError, ImportError, OSError) as exc:
            raise Failure(str(exc) or type(exc).__name__) from exc

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


def run_on(app: App, coro_fn: Callable[[App], Coroutine[Any, Any, T]]) -> T:
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


def setup_logging(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_JobFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger("pigeon")
    root.addHandler(handler)
    root.setLevel(level.upper())


def ago(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
