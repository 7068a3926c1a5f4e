"""Celery beat schedules converted to pigeon code, and that code run against a real App."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from pigeon.contrib.celery.beat import convert_entry, crontab, render
from pigeon.errors import ConfigurationError


def test_entries_convert_field_by_field() -> None:
    c = convert_entry(
        "weekday-mornings",
        {
            "task": "proj.tasks.report",
            "schedule": crontab(minute=30, hour="7", day_of_week="mon-fri"),
            "args": ("daily",),
            "kwargs": {"email": True},
            "options": {"queue": "reports", "expires": timedelta(minutes=5), "link": "x"},
        },
    )
    assert c.cron == "30 7 * * mon-fri" and c.every is None
    assert c.args == ("daily",) and c.kwargs == {"email": True}
    assert c.options == {"queue": "reports", "expires": 300.0}
    assert c.notes == ("options not carried over: ['link'] (no pigeon equivalent)",)
    assert convert_entry("t", {"task": "a.b", "schedule": timedelta(minutes=2)}).every == 120
    assert convert_entry("t", {"task": "a.b", "schedule": 15.0}).every == 15


def test_unconvertible_entries_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="no task"):
        convert_entry("t", {"schedule": 10})
    with pytest.raises(ConfigurationError, match="no pigeon equivalent"):
        convert_entry("t", {"task": "a.b", "schedule": object()})


def test_the_printed_code_registers_the_same_schedules(tmp_path: Path) -> None:
    (tmp_path / "beatproj").mkdir()
    (tmp_path / "beatproj" / "__init__.py").write_text("")
    (tmp_path / "beatproj" / "tasks.py").write_text(
        textwrap.dedent(
            """
            from pigeon import App
            from pigeon.contrib.celery import Celery, shared_task

            app = App("memory://")
            capp = Celery(app=app)

            @shared_task
            def cleanup(days: int, dry_run: bool = False) -> None: ...

            @app.task
            def ping() -> None: ...
            """
        )
    )
    (tmp_path / "beatproj" / "celeryconfig.py").write_text(
        textwrap.dedent(
            """
            from datetime import timedelta
            from celery.schedules import crontab

            timezone = "Europe/Oslo"
            beat_schedule = {
                "nightly-cleanup": {"task": "beatproj.tasks.cleanup", "schedule": crontab(minute=0, hour=3),
                                    "args": (30,), "kwargs": {"dry_run": True}, "options": {"queue": "low"}},
                "ping": {"task": "beatproj.tasks.ping", "schedule": timedelta(seconds=30)},
            }
            """
        )
    )
    out = subprocess.run(
        [sys.executable, "-m", "pigeon", "schedules", "import-celery", "beatproj.celeryconfig:"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "app.schedule(cleanup.pigeon.options(queue='low'), cron='0 3 * * *', tz='Europe/Oslo'" in out
    assert "app.schedule(ping, every=30, name='ping')" in out
    (tmp_path / "beatproj" / "schedules.py").write_text("from beatproj.tasks import app\n" + out)
    listed = subprocess.run(
        [sys.executable, "-m", "pigeon", "schedules", "beatproj.schedules:app"],
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "nightly-cleanup" in listed and "cron 0 3 * * * (Europe/Oslo)" in listed
    assert "every 30 s" in listed


def test_render_names_each_schedule() -> None:
    code = render({"a": {"task": "m.t", "schedule": 60}}, "UTC")
    assert "from m import t" in code and "app.schedule(t, every=60, name='a')" in code
