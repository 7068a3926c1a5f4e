"""The app fault scenarios run in real `pigeon worker` processes.

Every execution of ``work`` is written to a side channel that survives ``kill -9``:
an append-only file per worker process under ``PIGEON_FAULTS_LOG``, one line per
event, fsynced before the task goes on.
"""

from __future__ import annotations

import asyncio
import os
import time

from pigeon import App, JobContext

app = App(os.environ.get("PIGEON_URL", "sqlite:///faults.db"))


def _note(event: str, ctx: JobContext) -> None:
    line = f"{event} {ctx.job_id} {os.getpid()} {ctx.attempt} {time.time():.6f}\n".encode()
    path = os.path.join(os.environ["PIGEON_FAULTS_LOG"], f"{os.getpid()}.log")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


@app.task(max_attempts=50)
async def work(ctx: JobContext, n: int, hold: float = 0.0, stall: float = 0.0) -> str:
    """One unit of work: noted when it starts and when it is done; returns who did it."""
    _note("start", ctx)
    if hold:
        await asyncio.sleep(hold)
    if stall and ctx.attempt == 1:
        time.sleep(stall)  # noqa: ASYNC251 - blocks the worker's event loop on purpose
    _note("done", ctx)
    return f"{os.getpid()}:{ctx.attempt}"
