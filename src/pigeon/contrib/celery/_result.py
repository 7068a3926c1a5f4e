"""``AsyncResult``: a job handle that speaks Celery's state names."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pigeon.errors import JobCancelled, JobFailed, JobNotFound
from pigeon.handle import JobHandle
from pigeon.job import JobRecord, JobState

if TYPE_CHECKING:
    from pigeon.contrib.celery._current import CeleryApp

PENDING, RECEIVED, STARTED, SUCCESS, FAILURE, RETRY, REVOKED = (
    "PENDING",
    "RECEIVED",
    "STARTED",
    "SUCCESS",
    "FAILURE",
    "RETRY",
    "REVOKED",
)
READY_STATES = frozenset({SUCCESS, FAILURE, REVOKED})


def celery_state(rec: JobRecord | None) -> str:
    """A pigeon record's state in Celery's words (an unknown id is PENDING, as in Celery)."""
    if rec is None:
        return PENDING
    if rec.state is JobState.SCHEDULED and rec.attempts > 0:
        return RETRY
    return {
        JobState.QUEUED: PENDING,
        JobState.SCHEDULED: PENDING,
        JobState.RUNNING: STARTED,
        JobState.SUCCEEDED: SUCCESS,
        JobState.FAILED: FAILURE,
        JobState.CANCELLED: REVOKED,
    }[rec.state]


class AsyncResult:
    """One job by id: ``.status``, ``.get()``, ``.ready()``, ``.successful()``, ``.revoke()``."""

    def __init__(self, id: str, *, app: CeleryApp, task_name: str | None = None) -> None:
        self.id = id
        self.app = app
        self.task_name = task_name
        self._handle: JobHandle[Any] = JobHandle(app.pigeon.client, id, task_name)

    def __repr__(self) -> str:
        return f"<AsyncResult: {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AsyncResult) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def _record(self) -> JobRecord | None:
        try:
            return self._handle.record()
        except JobNotFound:
            return None

    @property
    def status(self) -> str:
        """PENDING, STARTED, RETRY, SUCCESS, FAILURE or REVOKED."""
        return celery_state(self._record())

    state = status

    def ready(self) -> bool:
        """True once the job has ended (SUCCESS, FAILURE or REVOKED)."""
        return self.status in READY_STATES

    def successful(self) -> bool:
        return self.status == SUCCESS

    def failed(self) -> bool:
        return self.status == FAILURE

    def get(
        self, timeout: float | None = None, propagate: bool = True, interval: float = 0.5, **_: Any
    ) -> Any:
        """Wait for the result.

        Raises:
            TimeoutError: the job did not end within ``timeout`` seconds.
            JobFailed: the task raised (with ``propagate``; without it, the error is returned).
            JobCancelled: the job was revoked (with ``propagate``).
        """
        try:
            return self._handle.result(timeout=timeout)
        except (JobFailed, JobCancelled) as exc:
            if propagate:
                raise
            return exc
        except JobNotFound:
            # Celery waits on an id it has not seen yet; so do we, until the deadline.
            deadline = None if timeout is None else time.monotonic() + timeout
            while self._record() is None:
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"no job {self.id} appeared within {timeout} s") from None
                time.sleep(min(interval, 0.1))
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            return self.get(timeout=left, propagate=propagate)

    wait = get

    @property
    def result(self) -> Any:
        """The return value once SUCCESS, the error (``JobFailed``) once FAILURE, else None."""
        if not self.ready():
            return None
        return self.get(timeout=0, propagate=False)

    info = result

    @property
    def traceback(self) -> str | None:
        rec = self._record()
        return rec.error.traceback if rec is not None and rec.error is not None else None

    def revoke(self, terminate: bool = False, **_: Any) -> None:
        """Cancel the job: a pending one never runs, a running one is stopped (``terminate`` or not)."""
        self._handle.cancel()

    def forget(self) -> None:
        """Nothing to do: results expire after the app's ``result_ttl``."""


class GroupResult:
    """A group's results, in order."""

    def __init__(self, id: str, results: list[AsyncResult]) -> None:
        self.id = id
        self.results = results

    def __iter__(self) -> Any:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def get(self, timeout: float | None = None, propagate: bool = True, **_: Any) -> list[Any]:
        """Every member's result, in order (raising the first failure with ``propagate``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        out = []
        for r in self.results:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            out.append(r.get(timeout=left, propagate=propagate))
        return out

    join = get

    def ready(self) -> bool:
        return all(r.ready() for r in self.results)

    def successful(self) -> bool:
        return all(r.successful() for r in self.results)

    def failed(self) -> bool:
        return any(r.failed() for r in self.results)

    def completed_count(self) -> int:
        return sum(r.successful() for r in self.results)

    def revoke(self, **_: Any) -> None:
        for r in self.results:
            r.revoke()
