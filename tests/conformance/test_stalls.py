"""A worker outlives its own event loop stalling, and any single broker call failing."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pigeon import App

STALL_CONFIG: dict[str, Any] = {
    "poll": 0.05,
    "heartbeat": 0.2,
    "lease": 30.0,
    "recover_every": 0.5,
    "dead_after": 30.0,
}


async def test_worker_survives_an_event_loop_stall_past_poll_plus_5_s(app: App) -> None:
    @app.task
    async def stall(seconds: float) -> str:
        await asyncio.sleep(0.3)  # the watcher is inside the broker's wait() again
        # Blocks the worker's event loop, as a careless task or a paused process does.
        time.sleep(seconds)  # noqa: ASYNC251
        return "woke"

    @app.task
    async def ping() -> str:
        return "pong"

    async with app.worker(**STALL_CONFIG, concurrency=4) as worker:
        assert await (await ping.asend()).aresult(timeout=10) == "pong"
        # One job of four slots: the worker is starved, so its watcher is inside a broker wait.
        stalled = await stall.asend(STALL_CONFIG["poll"] + 5.5)
        assert await stalled.aresult(timeout=30) == "woke"
        assert await (await ping.asend()).aresult(timeout=10) == "pong"
        await asyncio.sleep(0)  # let a loop that failed on resuming end the worker, if one did
        assert not worker.stopped.is_set(), "the worker stopped after the stall"
