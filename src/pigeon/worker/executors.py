"""Where a job's function runs: the event loop, a thread pool, or a process pool.

Timeouts differ by executor. A coroutine is cancelled. A process is killed and
replaced. A thread cannot be stopped in Python: its job is failed on time and
the thread is left to finish on its own, holding its pool slot until it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import importlib
import multiprocessing
import multiprocessing.connection
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pigeon import codec
from pigeon.errors import InvalidTask, ProcessDied
from pigeon.job import ErrorInfo
from pigeon.task import JobContext, Task


class RemoteError(Exception):
    """An exception raised in a pool process, carried back as its ErrorInfo."""

    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(info.message)
        self.info = info


def error_info(exc: BaseException) -> ErrorInfo:
    """How an attempt's error is recorded: its class's dotted path, message and traceback."""
    if isinstance(exc, RemoteError):
        return exc.info
    if isinstance(exc, ProcessDied):  # under its public name, as records have always had it
        return ErrorInfo("pigeon.ProcessDied", str(exc))
    cls = type(exc)
    return ErrorInfo(
        type=f"{cls.__module__}.{cls.__qualname__}",
        message=str(exc),
        traceback="".join(traceback.format_exception(exc)),
    )


class Executors:
    """The three executors of one worker; pools start on first use."""

    def __init__(self, threads: int, processes: int) -> None:
        self._thread_count = threads
        self._threads: ThreadPoolExecutor | None = None
        self._busy = 0  # threads running a job's function now
        self._busy_lock = threading.Lock()
        self._processes = _ProcessPool(processes)

    @property
    def busy_threads(self) -> int:
        """Job threads still running a function (a timed-out or handed-back job's included)."""
        return self._busy

    def _in_thread(self, call: Callable[[], Any]) -> Any:
        with self._busy_lock:
            self._busy += 1
        try:
            return call()
        finally:
            with self._busy_lock:
                self._busy -= 1

    async def run(
        self, task: Task[Any, Any], ctx: JobContext | None, payload: bytes, timeout: float | None
    ) -> bytes:
        """Run one attempt; return the encoded result or raise what the task raised.

        ``ctx`` is None when the task takes no context.
        """
        kind = task.defaults.executor
        if kind == "process":
            return await self._processes.run(task, ctx, payload, timeout)
        args, kwargs = task.codec.decode_args(payload)
        if task.takes_context:
            args = (ctx, *args)
        if kind == "async":
            if timeout is None:  # no timeout context: it costs a tenth of a no-op job
                value = await task.fn(*args, **kwargs)
            else:
                async with asyncio.timeout(timeout):
                    value = await task.fn(*args, **kwargs)
        else:
            if self._threads is None:
                self._threads = ThreadPoolExecutor(self._thread_count, thread_name_prefix="pigeon-job")
            call = functools.partial(contextvars.copy_context().run, task.fn, *args, **kwargs)
            future = asyncio.get_running_loop().run_in_executor(self._threads, self._in_thread, call)
            async with asyncio.timeout(timeout):
                value = await future
        return codec.encode(value)

    async def close(self) -> None:
        if self._threads is not None:
            # Threads cannot be stopped; don't wait for a runaway one.
            self._threads.shutdown(wait=False, cancel_futures=True)
            if self._busy:
                _forget_at_exit(self._threads)
        await self._processes.close()


def _forget_at_exit(pool: ThreadPoolExecutor) -> None:
    """Keep the interpreter from joining ``pool``'s threads at exit: their jobs were handed back.

    ``concurrent.futures`` joins every pool thread at exit, so a web server's
    process would wait for a runaway thread job long past the worker's grace.
    """
    from concurrent.futures import thread as futures_thread

    queues = getattr(futures_thread, "_threads_queues", None)
    for t in getattr(pool, "_threads", ()):
        if queues is not None:
            queues.pop(t, None)


class _ProcessPool:
    """Spawned processes, one job each at a time; a process that overruns is killed and replaced.

    Only bytes and strings cross the pipe: the child imports the task by module
    and name, decodes the payload itself and sends back the encoded result.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._idle: list[_Child] = []
        self._free: asyncio.Semaphore | None = None

    async def run(
        self, task: Task[Any, Any], ctx: JobContext | None, payload: bytes, timeout: float | None
    ) -> bytes:
        if self._free is None:
            self._free = asyncio.Semaphore(self._size)
        async with self._free:
            child = self._idle.pop() if self._idle else _Child()
            try:
                async with asyncio.timeout(timeout):
                    reply = await child.call(
                        (task.fn.__module__, task.fn.__qualname__, payload, _ctx_tuple(ctx))
                    )
            except BaseException:
                child.kill()  # overran, or the worker is stopping: a fresh process next time
                raise
            self._idle.append(child)
        status, body = reply
        if status == "ok":
            assert isinstance(body, bytes)
            return body
        assert isinstance(body, tuple)
        raise RemoteError(ErrorInfo(*body))

    async def close(self) -> None:
        for child in self._idle:
            child.stop()
        self._idle.clear()


def _ctx_tuple(ctx: JobContext | None) -> tuple[Any, ...] | None:
    if ctx is None:
        return None
    return (ctx.job_id, ctx.task, ctx.queue, ctx.attempt, ctx.max_attempts, ctx.worker_id)


class _Child:
    def __init__(self) -> None:
        mp = multiprocessing.get_context("spawn")
        self._conn, child_conn = mp.Pipe()
        self._proc = mp.Process(target=_child_main, args=(child_conn,), daemon=True, name="pigeon-process")
        self._proc.start()
        child_conn.close()

    async def call(self, message: tuple[Any, ...]) -> tuple[str, Any]:
        loop = asyncio.get_running_loop()
        self._conn.send(message)
        ready: asyncio.Future[None] = loop.create_future()
        fd = self._conn.fileno()

        def readable() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, readable)
        try:
            await ready
        finally:
            loop.remove_reader(fd)
        try:
            reply: tuple[str, Any] = self._conn.recv()
        except EOFError:
            self._proc.join(1)
            raise ProcessDied(f"the pool process died (exit code {self._proc.exitcode})") from None
        return reply

    def kill(self) -> None:
        self._proc.kill()
        self._proc.join(5)
        self._conn.close()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send(None)
        self._proc.join(2)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(2)
        self._conn.close()


def _resolve(module: str, qualname: str) -> tuple[Callable[..., Any], codec.ArgCodec, bool]:
    mod = (
        sys.modules["__main__"] if module in ("__main__", "__mp_main__") else importlib.import_module(module)
    )
    obj: Any = mod
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if isinstance(obj, Task):
        return obj.fn, obj.codec, obj.takes_context
    if callable(obj):
        return obj, codec.ArgCodec(obj), False
    raise InvalidTask(f"{module}.{qualname} is not callable")


def _child_main(conn: multiprocessing.connection.Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent worker decides when to stop
    cache: dict[tuple[str, str], tuple[Callable[..., Any], codec.ArgCodec, bool]] = {}
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        module, qualname, payload, ctx = message
        try:
            key = (module, qualname)
            if key not in cache:
                cache[key] = _resolve(module, qualname)
            fn, sig, takes_context = cache[key]
            args, kwargs = sig.decode_args(payload)
            if takes_context:
                args = (JobContext(*ctx), *args)
            reply: tuple[str, Any] = ("ok", codec.encode(fn(*args, **kwargs)))
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
            info = error_info(exc)
            reply = ("error", (info.type, info.message, info.traceback))
        conn.send(reply)
