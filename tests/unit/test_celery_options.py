"""Celery's task options in pigeon's terms: a table of what each becomes."""

from __future__ import annotations

from typing import Any

import pytest

from pigeon.contrib.celery import Unsupported, celery_state
from pigeon.contrib.celery._options import (
    DEFAULT_RETRY_DELAY,
    UNBOUNDED_RETRIES,
    CeleryBackoff,
    parse_task_options,
)
from pigeon.job import ErrorInfo, Job, JobRecord, JobState
from pigeon.retry import Fixed


@pytest.mark.parametrize(
    ("options", "field", "expected"),
    [
        ({}, "max_attempts", 4),  # Celery's default max_retries=3, plus the first attempt
        ({"max_retries": 0}, "max_attempts", 1),
        ({"max_retries": None}, "max_attempts", UNBOUNDED_RETRIES),
        ({"retry_kwargs": {"max_retries": 7}}, "max_attempts", 8),
        ({}, "backoff", Fixed(DEFAULT_RETRY_DELAY)),
        ({"default_retry_delay": 5}, "backoff", Fixed(5.0)),
        ({"retry_kwargs": {"countdown": 2}}, "backoff", Fixed(2.0)),
        ({"retry_backoff": True}, "backoff", CeleryBackoff(1.0, 600.0, True)),
        (
            {"retry_backoff": 3, "retry_backoff_max": 60, "retry_jitter": False},
            "backoff",
            CeleryBackoff(3, 60, False),
        ),
        ({}, "autoretry_for", ()),  # an exception fails the job unless listed, as in Celery
        ({"autoretry_for": (KeyError,)}, "autoretry_for", (KeyError,)),
        ({"time_limit": 30, "soft_time_limit": 20}, "timeout", 20.0),
        ({"time_limit": 30}, "timeout", 30.0),
        ({}, "queue", "default"),
        ({"queue": "mail"}, "queue", "mail"),
        ({"priority": 9}, "priority", 9),
        ({"priority": 255}, "priority", 100),
        ({"rate_limit": "10/m"}, "rate", "10/m"),
        ({"rate_limit": 5}, "rate", "5/s"),
        ({"acks_late": True, "track_started": True, "ignore_result": True}, "bind", False),
        ({"bind": True, "serializer": "json"}, "bind", True),
    ],
)
def test_option_mapping(options: dict[str, Any], field: str, expected: Any) -> None:
    assert getattr(parse_task_options("t", options), field) == expected


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"base": object}, Unsupported, "base="),
        ({"serializer": "pickle"}, Unsupported, "JSON only"),
        ({"dont_autoretry_for": (KeyError,)}, Unsupported, "autoretry_for"),
        ({"retry_kwargs": {"exc": 1}}, Unsupported, "retry_kwargs"),
        ({"autoretry": True}, TypeError, "unknown task option"),
        ({"priority": 300}, ValueError, "0..255"),
    ],
)
def test_options_refused(options: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        parse_task_options("t", options)


def test_celery_backoff_doubles_up_to_its_cap() -> None:
    plain = CeleryBackoff(2.0, cap=10.0, jitter=False)
    assert [plain.delay(a) for a in range(1, 6)] == [2.0, 4.0, 8.0, 10.0, 10.0]
    jittered = CeleryBackoff(2.0, cap=10.0, jitter=True)
    assert all(0 <= jittered.delay(3) <= 8.0 for _ in range(100))  # full jitter: 0..delay


@pytest.mark.parametrize(
    ("state", "attempts", "expected"),
    [
        (JobState.QUEUED, 0, "PENDING"),
        (JobState.SCHEDULED, 0, "PENDING"),
        (JobState.SCHEDULED, 1, "RETRY"),
        (JobState.RUNNING, 1, "STARTED"),
        (JobState.SUCCEEDED, 1, "SUCCESS"),
        (JobState.FAILED, 3, "FAILURE"),
        (JobState.CANCELLED, 0, "REVOKED"),
    ],
)
def test_celery_state_names(state: JobState, attempts: int, expected: str) -> None:
    rec = JobRecord(job=Job(id="j", task="t"), state=state, attempts=attempts, error=ErrorInfo("E", "m"))
    assert celery_state(rec) == expected
    assert celery_state(None) == "PENDING"
