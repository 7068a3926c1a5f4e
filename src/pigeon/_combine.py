"""Concurrent synchronous sends share round trips (group commit), on a bounded number of connections.

Threads sending at once (a web server's request threads) queue their jobs; at most
``width`` of them store at a time, each taking every job queued so far into one
batch, so ``n`` threads pay about ``n / batch`` round trips (and, in a database,
commits) instead of ``n``. A lone sender pays one lock and nothing else. When a
store ends, its caller hands the lead to the oldest waiting thread rather than
storing for the others forever, so no caller waits for more than two round trips
of others' jobs before its own batch goes out.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence

from pigeon.job import Job


class _Send:
    """One caller's jobs, and what became of them."""

    __slots__ = ("done", "error", "ids", "jobs", "leads")

    def __init__(self, jobs: Sequence[Job]) -> None:
        self.jobs = jobs
        self.ids: list[str] = []
        self.error: BaseException | None = None
        self.leads = False
        self.done: threading.Event | None = None  # made only when the caller must wait


class Combiner:
    """Stores batches with ``store``, combining those of callers that arrive while it is busy.

    Args:
        store: stores a batch of jobs, returning an id per job (``enqueue`` semantics).
        width: how many batches may be stored at once (the connections the store uses).
    """

    def __init__(self, store: Callable[[Sequence[Job]], list[str]], width: int = 1) -> None:
        self._store = store
        self._width = width
        self._lock = threading.Lock()
        self._leading = 0
        self._waiting: deque[_Send] = deque()

    def enqueue(self, jobs: Sequence[Job]) -> list[str]:
        """Store ``jobs`` (maybe with other callers'); raise what storing their batch raised."""
        mine = _Send(jobs)
        with self._lock:
            if self._leading < self._width:
                self._leading += 1
                mine.leads = True
            else:
                mine.done = threading.Event()
                self._waiting.append(mine)
        if mine.done is not None:
            mine.done.wait()
        if mine.leads:
            self._lead(mine)
        if mine.error is not None:
            raise mine.error
        return mine.ids

    def _lead(self, mine: _Send) -> None:
        with self._lock:
            batch = [mine, *self._waiting]
            self._waiting.clear()
        try:
            ids = self._store([job for send in batch for job in send.jobs])
        except BaseException as exc:  # noqa: BLE001 - raised in every caller of the batch, this one too
            for send in batch:
                send.error = exc
        else:
            start = 0
            for send in batch:
                send.ids = ids[start : start + len(send.jobs)]
                start += len(send.jobs)
        with self._lock:
            follower = self._waiting.popleft() if self._waiting else None
            if follower is None:
                self._leading -= 1
            else:
                follower.leads = True
        for woken in (*batch[1:], follower):
            if woken is not None and woken.done is not None:
                woken.done.set()
