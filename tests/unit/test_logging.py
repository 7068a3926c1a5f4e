"""What the worker logs about a job: a record a logging integration (Sentry, …) can use."""

from __future__ import annotations

import logging

import pytest

from pigeon import App
from pigeon.testing import drain


def test_a_failed_job_logs_its_exception_and_every_job_end_logs_its_duration(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App("memory://")

    @app.task(max_attempts=1)
    def explode() -> None:
        raise KeyError("boom")

    @app.task
    def fine() -> int:
        return 1

    try:
        failed, ok = explode.send(), fine.send()
        with caplog.at_level(logging.INFO, logger="pigeon"):
            drain(app)
    finally:
        app.close()
    (error,) = [r for r in caplog.records if getattr(r, "job_id", None) == failed.id and r.levelno >= 40]
    assert error.exc_info is not None and error.exc_info[0] is KeyError
    (end,) = [r for r in caplog.records if getattr(r, "job_id", None) == ok.id]
    assert end.levelno == logging.INFO and end.duration >= 0  # type: ignore[attr-defined]
