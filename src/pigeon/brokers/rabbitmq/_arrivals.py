"""Deliveries counted per queue, and the wait that reports each queue's new ones once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence


class Arrivals:
    """Counts of deliveries per pigeon queue, for ``wait()`` and ``until()`` of both RabbitMQ brokers."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()
        self._counts: dict[str, int] = {}
        self._reported: dict[str, int] = {}

    def note(self, queue: str) -> None:
        self._counts[queue] = self._counts.get(queue, 0) + 1
        self._changed.set()

    async def wait(self, queues: Sequence[str], timeout: float) -> None:
        """Return when a delivery for ``queues`` arrived since the last wait, or after ``timeout``.

        Deliveries already reported stay held for the next claim; reporting them
        again would spin a busy worker's watcher.
        """
        await self._until(lambda: self._report(queues), timeout)

    async def until(self, done: Callable[[], bool], timeout: float) -> None:
        """Wait (up to ``timeout``) until ``done()`` holds, checking it at each arrival."""
        await self._until(done, timeout)

    def _report(self, queues: Sequence[str]) -> bool:
        fresh = [q for q in queues if self._counts.get(q, 0) > self._reported.get(q, 0)]
        for q in fresh:
            self._reported[q] = self._counts[q]
        return bool(fresh)

    async def _until(self, done: Callable[[], bool], timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not done():
            self._changed.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._changed.wait()
