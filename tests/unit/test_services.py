"""Services are started, restarted with back-off after a crash, and stopped at shutdown."""

from __future__ import annotations

import asyncio
from typing import TypeVar

import pytest

from pigeon import App, ConfigurationError
from tests.helpers import eventually

T = TypeVar("T")


async def _value(x: T) -> T:
    return x


async def test_crashing_service_restarts_and_others_keep_running() -> None:
    app = App("memory://")
    runs = {"crashy": 0, "steady": 0}
    stopped = asyncio.Event()

    @app.service(backoff=(0.01, 0.05))
    async def crashy() -> None:
        runs["crashy"] += 1
        raise RuntimeError("reader unplugged")

    @app.service
    async def steady(station: str) -> None:
        runs["steady"] += 1
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    app.service_group(steady, ["door-1", "door-2"])
    async with app.worker(poll=0.05) as worker:
        await eventually(lambda: _value(runs["crashy"]), lambda n: n >= 4, what="crashy restarted")
        assert runs["steady"] == 2
        by_label = {label.rsplit(".", 1)[-1]: st for label, st in worker.services.items()}
        assert by_label["crashy"].crashes >= 3
        assert by_label["crashy"].last_error == "RuntimeError: reader unplugged"
        assert by_label["steady('door-1',)"].running
    assert stopped.is_set()  # cancelled and awaited at shutdown


async def test_restart_never_and_on_failure() -> None:
    app = App("memory://")
    runs = {"never": 0, "done": 0}

    @app.service(restart="never")
    async def never() -> None:
        runs["never"] += 1
        raise RuntimeError("once")

    @app.service(restart="on-failure", backoff=(0.01, 0.01))
    async def done() -> None:
        runs["done"] += 1

    async with app.worker(poll=0.05) as worker:
        await eventually(
            lambda: _value(worker.services),
            lambda s: len(s) == 2 and not any(st.running for st in s.values()),
            what="both services ended",
        )
    assert runs == {"never": 1, "done": 1}


def test_a_service_is_async() -> None:
    app = App("memory://")
    with pytest.raises(ConfigurationError):
        app.service(lambda: None)  # type: ignore[arg-type, return-value]
