"""JobHandle: what a send returns; looks the job up in the broker on demand."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import msgspec

from pigeon import codec
from pigeon.errors import JobCancelled, JobFailed, JobNotFound
from pigeon.job import JobRecord, JobState
from pigeon.task import Progress

if TYPE_CHECKING:
    from pigeon.app import App

R = TypeVar("R")

# Result polling backs off from quick (a job that is about to finish) to patient.
_FIRST_POLL = 0.001
_MAX_POLL = 0.1


class ResultWaiters:
    """Wakes this process's result waiters when this process's workers finish their jobs.

    A job finished elsewhere is found by polling; this makes the common in-process
    case (a worker in the web process, a test, a script) answer at once. Thread-safe:
    waiters and workers may run on different event loops.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    @contextlib.contextmanager
    def watching(self, job_ids: Iterable[str]) -> Iterator[asyncio.Event]:
        """An event set when any of these jobs may have finished, for the duration of the block."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        ids = list(job_ids)
        with self._lock:
            for job_id in ids:
                self._waiters.setdefault(job_id, set()).add(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                for job_id in ids:
                    waiting = self._waiters.get(job_id)
                    if waiting is not None:
                        waiting.discard(entry)
                        if not waiting:
                            del self._waiters[job_id]

    def done(self, job_ids: Iterable[str]) -> None:
        """These jobs reached a final state: wake whoever waits for them here."""
        with self._lock:
            if not self._waiters:  # the usual case in a worker process: nobody waits
                return
            found = {entry for job_id in job_ids for entry in self._waiters.get(job_id, ())}
        for loop, event in found:
            with contextlib.suppress(RuntimeError):  # that loop has closed, and its waiter with it
                loop.call_soon_threadsafe(event.set)


async def wait_a_while(settled: asyncio.Event, pause: float, deadline: float | None) -> float:
    """Wait until ``settled`` or for ``pause`` (never past ``deadline``); return the next pause."""
    wait = pause if deadline is None else min(pause, max(0.0, deadline - time.monotonic()))
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(wait):
            await settled.wait()
    settled.clear()
    return min(pause * 2, _MAX_POLL)


class JobHandle(Generic[R]):
    """A reference to one job, by id; every property reads the broker afresh."""

    __slots__ = ("app", "id", "task")

    def __init__(self, app: App, job_id: str, task: str | None = None) -> None:
        self.app = app
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
        return self.app.portal_call(self.arecord())

    async def arecord(self) -> JobRecord:
        """Asynchronous :meth:`record`."""
        broker = await self.app.connection()
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
        return self.app.portal_call(self.aresult(timeout))

    async def aresult(self, timeout: float | None = None) -> R:
        """Asynchronous :meth:`result`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = _FIRST_POLL
        with self.app.result_waiters.watching([self.id]) as settled:
            while True:
                rec = await self.arecord()
                if rec.state.is_final:
                    return self._outcome(rec)
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"job {self.id} still {rec.state} after {timeout} s")
                pause = await wait_a_while(settled, pause, deadline)

    def _outcome(self, rec: JobRecord) -> R:
        if rec.state is JobState.SUCCEEDED:
            data = rec.result if rec.result is not None else b"null"
            task = self.app.resolve_task(rec.job.task)
            value: Any = task.decode_result(data) if task is not None else codec.decode_any(data)
            return value  # type: ignore[no-any-return]
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
        return self.app.cancel(self.id)

    async def acancel(self) -> bool:
        """Asynchronous :meth:`cancel`."""
        return await self.app.acancel(self.id)

    @property
    def progress(self) -> Progress | None:
        """The job's latest progress report, if it made one."""
        data = self.record().progress
        return None if data is None else msgspec.json.decode(data, type=Progress)

    @property
    def finished_at(self) -> datetime | None:
        ts = self.record().finished_at
        return None if ts is None else datetime.fromtimestamp(ts, UTC)
