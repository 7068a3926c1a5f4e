"""A small bounded pool of blocking connections, shared by the threads that send synchronously."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

C = TypeVar("C")
T = TypeVar("T")


class SyncPool(Generic[C]):
    """At most ``size`` connections, opened on first use and kept for the next caller.

    A connection whose use raised is closed rather than kept: it may be broken, and
    opening another is cheap next to an outage. No thread of its own (a script that
    only sends exits without waiting on one); :meth:`close` closes the idle ones, and
    those in use as they come back.

    Args:
        connect: opens a connection (runs on the calling thread, outside the pool's lock).
        close: closes one, and must not raise.
        size: how many may be open at once; callers beyond it wait for one to come back.
    """

    def __init__(self, connect: Callable[[], C], close: Callable[[C], None], size: int) -> None:
        self._connect = connect
        self._close = close
        self._size = size
        self._lock = threading.Lock()
        self._returned = threading.Condition(self._lock)  # waited on only when all are in use
        self._idle: list[C] = []
        self._open = 0  # connections idle or in use (or being opened)
        self._generation = 0  # bumped by close(): connections of an older one are not kept
        self._pid = os.getpid()
        self._inherited: list[C] = []

    @contextlib.contextmanager
    def connection(self) -> Iterator[C]:
        """A connection for the caller's thread alone, until the block ends."""
        conn, _, generation = self._checkout()
        try:
            yield conn
        except BaseException:
            self._close(conn)
            self._forget()
            raise
        self._checkin(conn, generation)

    def run(self, fn: Callable[[C], T], stale: type[BaseException]) -> T:
        """``fn(connection)``; run once more on a new connection if a kept one raised ``stale``.

        A connection kept idle may have been closed by the server since (a restart, an
        idle timeout): its first use fails, and only a new one tells an outage from that.
        ``fn`` must be safe to repeat (an enqueue is: ids are stored once).
        """
        while True:
            conn, kept, generation = self._checkout()
            try:
                out = fn(conn)
            except BaseException as exc:
                self._close(conn)
                self._forget()
                if kept and isinstance(exc, stale):
                    continue
                raise
            self._checkin(conn, generation)
            return out

    def _checkout(self) -> tuple[C, bool, int]:
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's connections are not its own
                # Kept, never closed nor collected: closing one here would end the parent's session.
                self._inherited.extend(self._idle)
                self._idle, self._open, self._pid = [], 0, os.getpid()
                self._generation += 1
            while not self._idle and self._open >= self._size:
                self._returned.wait()
            conn = self._idle.pop() if self._idle else None
            if conn is None:
                self._open += 1
            generation = self._generation
        if conn is not None:
            return conn, True, generation
        try:
            return self._connect(), False, generation
        except BaseException:
            self._forget()
            raise

    def _checkin(self, conn: C, generation: int) -> None:
        with self._lock:
            if generation == self._generation:
                self._idle.append(conn)
                self._returned.notify()
                return
        self._close(conn)
        self._forget()

    def _forget(self) -> None:
        with self._lock:
            self._open -= 1
            self._returned.notify()

    def close(self) -> None:
        """Close every idle connection; those in use close when they come back."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            self._generation += 1
            self._returned.notify_all()
        for conn in idle:
            self._close(conn)
