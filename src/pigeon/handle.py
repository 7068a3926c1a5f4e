"""JobHandle: what a send returns; looks the job up in the broker on demand."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Generic, TypeVar

import msgspec

from pigeon import waiters
from pigeon.client import Client
from pigeon.errors import JobCancelled, JobFailed, JobNotFound
from pigeon.job import JobRecord, JobState, Progress

R = TypeVar("R")


class JobHandle(Generic[R]):
    """A reference to one job, by id; every property reads the broker afresh."""

    __slots__ = ("client", "id", "task")

    def __init__(self, client: Client, job_id: str, task: str | None = None) -> None:
        self.client = client
        self.id = job_id
        self.task = task

    def __repr__(self) -> str:
        return f"<JobHandle {self.id} {self.task or ''}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JobHandle) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def record(self) -> JobRecord:
        """The broker's current record of the job.

        Raises:
            JobNotFound: unknown id, or the job was pruned.
        """
        return self.client.portal_call(self.arecord())

    async def arecord(self) -> JobRecord:
        """Asynchronous :meth:`record`."""
        broker = await self.client.connection()
        rec = await broker.get(self.id)
        if rec is None:
            raise JobNotFound(f"no job {self.id} (never sent, or pruned after its retention)")
        return rec

    @property
    def status(self) -> JobState:
        """The job's state now (queued, scheduled, running, succeeded, failed, cancelled)."""
        return self.record().state

    def result(self, timeout: float | None = None) -> R:
        """Wait for the job to finish and return its result.

        Raises:
            TimeoutError: the job did not finish within ``timeout`` seconds.
            JobFailed: the job failed; carries the task's error type, message, traceback.
            JobCancelled: the job was cancelled.
            JobNotFound: unknown id, or pruned.
        """
        return self.client.portal_call(self.aresult(timeout))

    async def aresult(self, timeout: float | None = None) -> R:
        """Asynchronous :meth:`result`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = waiters.FIRST_POLL
        with self.client.result_waiters.watching([self.id]) as settled:
            while True:
                rec = await self.arecord()
                if rec.state.is_final:
                    return self._outcome(rec)
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"job {self.id} still {rec.state} after {timeout} s")
                pause = await waiters.wait_a_while(settled, pause, deadline)

    def _outcome(self, rec: JobRecord) -> R:
        if rec.state is JobState.SUCCEEDED:
            data = rec.result if rec.result is not None else b"null"
            value: R = self.client.decode_result(rec.job.task, data)
            return value
        if rec.state is JobState.CANCELLED:
            raise JobCancelled(f"job {self.id} was cancelled")
        err = rec.error
        raise JobFailed(
            self.id,
            err.type if err else "unknown",
            err.message if err else "",
            err.traceback if err else "",
        )

    def cancel(self) -> bool:
        """Cancel the job unless it has finished; True if it was cancelled.

        A pending job never runs. A running one is stopped at its worker's next
        heartbeat (2 s by default): an async task is cancelled, a process task's
        process is killed; a thread cannot be stopped, so it runs on and its
        outcome is discarded.
        """
        return self.client.cancel(self.id)

    async def acancel(self) -> bool:
        """Asynchronous :meth:`cancel`."""
        return await self.client.acancel(self.id)

    @property
    def progress(self) -> Progress | None:
        """The job's latest progress report, if it made one."""
        data = self.record().progress
        return None if data is None else msgspec.json.decode(data, type=Progress)

    @property
    def finished_at(self) -> datetime | None:
        ts = self.record().finished_at
        return None if ts is None else datetime.fromtimestamp(ts, UTC)
