"""The state machine's transitions, table by table: an outcome → the fields every broker writes."""

from __future__ import annotations

import msgspec
import pytest

from pigeon.job import WORKER_LOST, ErrorInfo, Job, JobState, Outcome, OutcomeKind
from pigeon.transitions import LOST_ERROR, Transition, arriving, settled

NOW = 1_000.0
BOOM = ErrorInfo("builtins.ValueError", "boom")
BOOM_JSON = msgspec.json.encode(BOOM)


def outcome(kind: OutcomeKind, **fields: object) -> Outcome:
    return Outcome(job_id="j", token="t", kind=kind, **fields)  # type: ignore[arg-type]


def moved(state: JobState, **fields: object) -> Transition:
    return Transition(job_id="j", token="t", state=state, **fields)  # type: ignore[arg-type]


TABLE: list[tuple[str, Outcome, Transition]] = [
    (
        "complete",
        outcome(OutcomeKind.COMPLETE, result=b"42", expires_at=NOW + 60),
        moved(JobState.SUCCEEDED, result=b"42", finished_at=NOW, expires_at=NOW + 60),
    ),
    (
        "fail",
        outcome(OutcomeKind.FAIL, error=BOOM, expires_at=NOW + 600),
        moved(JobState.FAILED, error=BOOM_JSON, finished_at=NOW, expires_at=NOW + 600),
    ),
    (
        "fail, kept for ever",
        outcome(OutcomeKind.FAIL, error=BOOM),
        moved(JobState.FAILED, error=BOOM_JSON, finished_at=NOW),
    ),
    (
        "retry later",
        outcome(OutcomeKind.RETRY, error=BOOM, run_at=NOW + 5),
        moved(JobState.SCHEDULED, error=BOOM_JSON, run_at=NOW + 5),
    ),
    (
        "retry now",
        outcome(OutcomeKind.RETRY, error=BOOM, run_at=NOW),
        moved(JobState.QUEUED, error=BOOM_JSON, run_at=NOW),
    ),
    (
        "retry without a time",
        outcome(OutcomeKind.RETRY, error=BOOM),
        moved(JobState.QUEUED, error=BOOM_JSON, run_at=NOW),
    ),
    (
        "retry without an error",
        outcome(OutcomeKind.RETRY, run_at=NOW + 1),
        moved(JobState.SCHEDULED, run_at=NOW + 1),
    ),
    (
        "defer",
        outcome(OutcomeKind.DEFER, run_at=NOW + 2),
        moved(JobState.SCHEDULED, keep_error=True, release=True, run_at=NOW + 2),
    ),
    (
        "defer, due",
        outcome(OutcomeKind.DEFER, run_at=NOW - 1),
        moved(JobState.QUEUED, keep_error=True, release=True, run_at=NOW - 1),
    ),
    ("release", outcome(OutcomeKind.RELEASE), moved(JobState.QUEUED, keep_error=True, release=True)),
]


@pytest.mark.parametrize(("given", "expected"), [r[1:] for r in TABLE], ids=[r[0] for r in TABLE])
def test_settled(given: Outcome, expected: Transition) -> None:
    assert settled(given, NOW) == expected


@pytest.mark.parametrize(
    ("run_at", "state", "at"),
    [
        (None, JobState.QUEUED, NOW),
        (NOW - 1, JobState.QUEUED, NOW - 1),
        (NOW + 1, JobState.SCHEDULED, NOW + 1),
    ],
    ids=["now", "past", "future"],
)
def test_arriving(run_at: float | None, state: JobState, at: float) -> None:
    job = Job(id="j", task="t", payload=msgspec.Raw(b"{}"), run_at=run_at)
    assert arriving(job, NOW) == (state, at)


def test_the_lost_worker_error_is_written_once() -> None:
    assert msgspec.json.decode(LOST_ERROR, type=ErrorInfo) == WORKER_LOST
    assert WORKER_LOST.type == "pigeon.WorkerLost"
