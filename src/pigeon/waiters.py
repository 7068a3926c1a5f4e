"""Result waiters: this process's workers wake this process's result waiters."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterable, Iterator

# Result polling backs off from quick (a job that is about to finish) to patient.
FIRST_POLL = 0.001
MAX_POLL = 0.1


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
    return min(pause * 2, MAX_POLL)
