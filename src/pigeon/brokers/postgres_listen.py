"""The PostgreSQL broker's wake-ups: one LISTEN connection shared by every waiter.

Statements that make jobs QUEUED ``pg_notify`` the queue's name on the namespace's
channel; :class:`Listener` holds a dedicated connection that LISTENs there and wakes
the waiters whose queues a notice names. Behind a pooler in transaction mode (PgBouncer)
LISTEN receives nothing: at start the listener checks that a notice of its own reaches
it, and when none does it says so once and every wait lasts at most
:data:`POOLED_POLL`, so idle workers poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import psycopg
from psycopg import sql

PROBE_WAIT = 2.0
"""How long the listener waits for its own notice before concluding LISTEN is cut off."""
POOLED_POLL = 0.25
"""Without LISTEN, the longest a wait lasts: idle workers then look for jobs this often."""
_PROBE_PREFIX = "pigeon.probe."

log = logging.getLogger("pigeon.broker.postgres")

Connect = Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]
Pooled = Callable[[], AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]]


class Listener:
    """Wakes the waiters of one namespace's channel, or tells them to poll.

    Args:
        channel: The channel the broker's statements notify.
        where: The server, for the warning when LISTEN is cut off.
        connect: Opens the dedicated LISTEN connection (autocommit).
        pooled: Lends a pool connection, to send the listener's own notice.
        queued_in: The query naming which of ``%(queues)s`` hold QUEUED jobs.
    """

    def __init__(self, channel: str, where: str, connect: Connect, pooled: Pooled, queued_in: bytes) -> None:
        self._channel = channel
        self._where = where
        self._connect = connect
        self._pooled = pooled
        self._queued_in = queued_in
        self._task: asyncio.Task[None] | None = None
        self._waiters: dict[asyncio.Event, frozenset[str]] = {}
        self.pending: set[str] = set()
        """Queues notified while nobody waited on them, for the next wait()."""
        self.works: bool | None = None
        """Whether LISTEN receives notices; None until the listener's first check."""
        self._probe = f"{_PROBE_PREFIX}{os.urandom(8).hex()}"

    async def wait(self, queues: Sequence[str], timeout: float) -> None:
        """Return when one of ``queues`` is notified, or after ``timeout`` seconds."""
        wanted = frozenset(queues)
        if self.pending & wanted:
            self.pending -= wanted
            return
        if self.works is False:
            await asyncio.sleep(min(timeout, POOLED_POLL))
            return
        self.start()
        event = asyncio.Event()
        self._waiters[event] = wanted
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            pass
        finally:
            del self._waiters[event]

    def start(self) -> None:
        """Start listening, and checking that notices arrive, unless already under way."""
        if self._task is None or self._task.done():
            # One listener serves every waiter; close() ends it.
            self._task = asyncio.create_task(self._listen(), name=f"pigeon-listen-{self._channel}")

    async def close(self) -> None:
        """Stop listening (a later wait() starts again)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _wake(self, queue: str) -> None:
        if queue.startswith(_PROBE_PREFIX):
            return  # another process's listener checking its connection
        woken = False
        for event, wanted in self._waiters.items():
            if queue in wanted:
                event.set()
                woken = True
        if not woken:
            self.pending.add(queue)  # for the next wait(), so a notice between two waits is not lost

    async def _listen(self) -> None:
        """Keep a LISTEN connection, reconnecting with back-off, and wake the waiters it concerns."""
        pause = 0.05
        listen = sql.SQL("LISTEN {}").format(sql.Identifier(self._channel))
        while True:
            try:
                async with await self._connect() as conn:
                    await conn.execute(listen)
                    if self.works is None and not await self._notices_arrive(conn):
                        self._cut_off()
                        return
                    self.works = True
                    # Jobs queued before LISTEN took effect notified nobody; look for them once.
                    wanted = sorted(set().union(*self._waiters.values()))
                    if wanted:
                        cur = await conn.execute(self._queued_in, {"queues": wanted})
                        for (queue,) in await cur.fetchall():
                            self._wake(queue)
                    pause = 0.05
                    async for note in conn.notifies():
                        self._wake(note.payload)
            except psycopg.Error:
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    def _cut_off(self) -> None:
        self.works = False
        log.warning(
            "LISTEN on %s receives no notifications (a pooler in transaction mode, such as"
            " PgBouncer?): idle workers poll instead; add listen_url=<a direct"
            " postgresql:// URL, percent-encoded> to the broker URL for instant wake-ups",
            self._where,
        )
        for event in self._waiters:  # to poll from now on
            event.set()

    async def _notices_arrive(self, conn: psycopg.AsyncConnection[Any]) -> bool:
        """Send a notice of our own through the pool; say whether the LISTEN connection gets it."""
        async with self._pooled() as other:
            await other.execute("SELECT pg_notify(%s, %s)", [self._channel, self._probe])
        try:
            async with asyncio.timeout(PROBE_WAIT):
                async for note in conn.notifies():
                    if note.payload == self._probe:
                        return True
                    self._wake(note.payload)
        except TimeoutError:
            pass
        return False
