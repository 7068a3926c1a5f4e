"""A private event loop in a thread, so synchronous code can call asynchronous brokers."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class Portal:
    """Runs coroutines on a loop owned by a daemon thread, started on first use."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The portal's loop, once started."""
        return self._loop

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=run, name=self._name, daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the portal's loop, in the caller's context, and wait for its result.

        The caller's context variables (a tracing span, say) are those the coroutine sees.
        """
        loop = self._start()
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a synchronous pigeon call from inside pigeon's own loop would deadlock")
        context = contextvars.copy_context()

        async def in_callers_context() -> T:
            return await asyncio.get_running_loop().create_task(coro, context=context)

        return asyncio.run_coroutine_threadsafe(in_callers_context(), loop).result()

    def close(self, finalizer: Coroutine[Any, Any, None] | None = None) -> None:
        """Run ``finalizer`` (if any) on the loop, then stop the thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            if finalizer is not None:
                finalizer.close()
            return
        if finalizer is not None:
            asyncio.run_coroutine_threadsafe(finalizer, loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def at_exit(fn: Callable[[], None]) -> None:
    """Call ``fn`` when the interpreter exits, before its thread pools shut down.

    ``atexit`` is too late: by then ``concurrent.futures`` has refused new work,
    so a loop's ``run_in_executor`` (DNS lookups, SQLite calls, job threads)
    fails with "cannot schedule new futures after interpreter shutdown". The
    hooks ``threading`` runs before joining threads come first, last registered
    first: registering after ``concurrent.futures.thread`` (imported here) runs
    ``fn`` before it shuts its pools down.
    """
    import concurrent.futures.thread  # noqa: F401 - its own hook must be registered before ours

    register: Callable[[Callable[[], None]], None] | None = getattr(threading, "_register_atexit", None)
    if register is None:
        atexit.register(fn)
        return
    with contextlib.suppress(RuntimeError):  # already exiting: too late to close in order
        register(fn)
