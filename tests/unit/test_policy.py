"""The retry policy, table by table: one attempt's ending → the job's outcome."""

from __future__ import annotations

import msgspec
import pytest

from pigeon.errors import Defer, ProcessDied, Retry
from pigeon.job import WORKER_LOST, Claim, ErrorInfo, Job, OutcomeKind
from pigeon.policy import (
    Completed,
    Deferred,
    Ending,
    Lost,
    Raised,
    Released,
    Retention,
    Unrunnable,
    decide,
    recovered,
)
from pigeon.retry import Backoff, Fixed
from pigeon.task import TaskOptions

NOW = 1_000.0
KEEP = Retention(result_ttl=60.0, failed_ttl=600.0)
OPTIONS = TaskOptions(max_attempts=3, backoff=Fixed(7.0), retry_on=(ConnectionError,))
BOOM = ErrorInfo("builtins.ConnectionError", "boom")
BAD = ErrorInfo("builtins.ValueError", "bad")


def claim(attempt: int, max_attempts: int = 3) -> Claim:
    job = Job(id="j", task="t", payload=msgspec.Raw(b"{}"), max_attempts=max_attempts)
    return Claim(job=job, token="tok", attempt=attempt)


def raised(exc: BaseException, info: ErrorInfo = BOOM) -> Raised:
    return Raised(exc, info)


# (attempt, ending, kind, run_at, error, expires_at)
TABLE: list[tuple[str, int, Ending, OutcomeKind, float | None, ErrorInfo | None, float | None]] = [
    ("success", 1, Completed(b"42"), OutcomeKind.COMPLETE, None, None, NOW + 60),
    ("success on the last attempt", 3, Completed(b"42"), OutcomeKind.COMPLETE, None, None, NOW + 60),
    ("handed back at shutdown", 2, Released(), OutcomeKind.RELEASE, None, None, None),
    ("over the rate", 1, Deferred(2.5), OutcomeKind.DEFER, NOW + 2.5, None, None),
    ("raise Defer", 3, raised(Defer(4.0)), OutcomeKind.DEFER, NOW + 4, None, None),
    ("a retry_on error, attempts left", 1, raised(ConnectionError()), OutcomeKind.RETRY, NOW + 7, BOOM, None),
    ("a retry_on error, none left", 3, raised(ConnectionError()), OutcomeKind.FAIL, None, BOOM, NOW + 600),
    ("another error fails at once", 1, raised(ValueError(), BAD), OutcomeKind.FAIL, None, BAD, NOW + 600),
    ("raise Retry(d)", 1, raised(Retry(3.0)), OutcomeKind.RETRY, NOW + 3, BOOM, None),
    ("raise Retry(): the back-off", 2, raised(Retry()), OutcomeKind.RETRY, NOW + 7, BOOM, None),
    ("raise Retry, none left", 3, raised(Retry(3.0)), OutcomeKind.FAIL, None, BOOM, NOW + 600),
    ("its process died", 1, raised(ProcessDied("x")), OutcomeKind.RETRY, NOW + 7, BOOM, None),
    ("its process died, none left", 3, raised(ProcessDied("x")), OutcomeKind.FAIL, None, BOOM, NOW + 600),
    ("unrunnable", 1, Unrunnable(BAD), OutcomeKind.FAIL, None, BAD, NOW + 600),
    ("its worker was lost", 1, Lost(), OutcomeKind.RETRY, NOW, WORKER_LOST, None),
    ("its worker was lost, none left", 3, Lost(), OutcomeKind.FAIL, None, WORKER_LOST, NOW + 600),
]


@pytest.mark.parametrize(
    ("attempt", "ending", "kind", "run_at", "error", "expires_at"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_decide(
    attempt: int,
    ending: Ending,
    kind: OutcomeKind,
    run_at: float | None,
    error: ErrorInfo | None,
    expires_at: float | None,
) -> None:
    out = decide(claim(attempt), OPTIONS, ending, NOW, KEEP)
    assert (out.job_id, out.token) == ("j", "tok")
    assert (out.kind, out.run_at, out.error, out.expires_at) == (kind, run_at, error, expires_at)
    assert out.result == (b"42" if kind is OutcomeKind.COMPLETE else None)


# An unknown task (no options): only what needs no options is decided differently.
UNKNOWN: list[tuple[str, Ending, OutcomeKind]] = [
    ("any error fails", raised(ConnectionError()), OutcomeKind.FAIL),
    ("its process died", raised(ProcessDied("x")), OutcomeKind.RETRY),
    ("its worker was lost", Lost(), OutcomeKind.RETRY),
    ("raise Retry", raised(Retry(1.0)), OutcomeKind.RETRY),
]


@pytest.mark.parametrize(("ending", "kind"), [row[1:] for row in UNKNOWN], ids=[row[0] for row in UNKNOWN])
def test_decide_without_options(ending: Ending, kind: OutcomeKind) -> None:
    assert decide(claim(1), None, ending, NOW, KEEP).kind is kind


def test_the_backoff_counts_the_attempt() -> None:
    steady = TaskOptions(max_attempts=9, backoff=Backoff(base=1.0, factor=2.0, jitter=False))
    delays = [decide(claim(n, 9), steady, raised(Exception()), NOW, KEEP).run_at for n in (1, 2, 3)]
    assert delays == [NOW + 1, NOW + 2, NOW + 4]


def test_a_single_attempt_task_never_retries() -> None:
    once = claim(1, max_attempts=1)
    assert decide(once, OPTIONS, raised(ConnectionError()), NOW, KEEP).kind is OutcomeKind.FAIL
    assert decide(once, OPTIONS, Lost(), NOW, KEEP).kind is OutcomeKind.FAIL
    assert decide(once, OPTIONS, Deferred(1.0), NOW, KEEP).kind is OutcomeKind.DEFER  # no attempt spent


@pytest.mark.parametrize(
    ("attempt", "expires_at", "kind", "run_at", "kept_until"),
    [
        (1, NOW + 9, OutcomeKind.RETRY, NOW, None),
        (3, NOW + 9, OutcomeKind.FAIL, None, NOW + 9),
        (3, None, OutcomeKind.FAIL, None, None),
    ],
    ids=["attempts left", "none left", "none left, kept for ever"],
)
def test_recovered(
    attempt: int, expires_at: float | None, kind: OutcomeKind, run_at: float | None, kept_until: float | None
) -> None:
    out = recovered(claim(attempt), NOW, expires_at)
    assert (out.kind, out.run_at, out.error, out.expires_at) == (kind, run_at, WORKER_LOST, kept_until)
