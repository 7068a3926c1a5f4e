"""The worker outlives any single broker call failing, whatever the failure is."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any, cast

import pytest

from pigeon import App
from pigeon.brokers.base import Broker
from tests.helpers import eventually

FAILURES: dict[str, BaseException] = {
    "claim": RuntimeError("a bug in the broker"),
    "heartbeat": TimeoutError(),  # the built-in one, as asyncio.timeout raises it
    "settle": OSError("connection reset"),
    "wait": ValueError("bad reply"),
    "recover": KeyError("missing"),
    "prune": ConnectionResetError("gone"),
}


class FailingFirst:
    """A real broker whose listed methods each fail their first two calls."""

    def __init__(self, inner: Broker) -> None:
        self.inner = inner
        self.failed: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if name not in FAILURES:
            return method

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.failed[name] < 2:
                self.failed[name] += 1
                raise FAILURES[name]
            return await method(*args, **kwargs)

        return call


class FailingApp(App):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.wrapper: FailingFirst | None = None
        create = self.client.create_broker

        def failing() -> Broker:  # the broker behind the seam, as a real one would fail
            self.wrapper = FailingFirst(create())
            return cast(Broker, self.wrapper)

        self.client.create_broker = failing  # type: ignore[method-assign]


async def test_every_worker_loop_survives_a_failing_broker_call(caplog: pytest.LogCaptureFixture) -> None:
    app = FailingApp("memory://")

    @app.task
    async def double(n: int) -> int:
        return n * 2

    fast: dict[str, Any] = {
        "poll": 0.02,
        "heartbeat": 0.02,
        "recover_every": 0.02,
        "prune_every": 0.02,
        "lease": 30.0,
    }
    with caplog.at_level(logging.WARNING, logger="pigeon"):
        async with app.worker(**fast, dead_after=30.0) as worker:
            handles = [await double.asend(i) for i in range(10)]
            assert [await h.aresult(timeout=10) for h in handles] == [i * 2 for i in range(10)]
            wrapper = app.wrapper
            assert wrapper is not None
            await eventually(lambda: _completed(wrapper), what="every listed broker call failed twice")
            assert await (await double.asend(21)).aresult(timeout=10) == 42
            assert not worker.stopped.is_set()
    text = caplog.text
    for loop in ("claim", "heartbeat", "settle", "wake-up watch", "lifeline sweep"):
        assert f"{loop} failed" in text, loop
    await app.aclose()


async def _completed(wrapper: FailingFirst) -> bool:
    return all(wrapper.failed[name] == 2 for name in FAILURES)


class SettlesNeverLand:
    """A real broker whose settles all fail, as on a full disk."""

    def __init__(self, inner: Broker) -> None:
        self.inner = inner
        self.failed = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def settle(self, outcomes: Any) -> Any:
        self.failed += 1
        raise OSError("No space left on device")


async def test_a_worker_stops_within_its_margin_when_nothing_can_be_settled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App("memory://")
    wrappers: list[SettlesNeverLand] = []
    create = app.client.create_broker

    def failing() -> Broker:
        wrappers.append(SettlesNeverLand(create()))
        return cast(Broker, wrappers[-1])

    app.client.create_broker = failing  # type: ignore[method-assign]
    ran = asyncio.Event()

    @app.task
    async def noop() -> None:
        ran.set()

    grace = 1.0
    worker = app.make_worker(grace=grace, poll=0.02, heartbeat=0.05, lease=30.0)
    run = asyncio.create_task(worker.run(install_signals=False))
    await noop.asend()
    await asyncio.wait_for(ran.wait(), 10)
    await eventually(lambda: _settle_failed(wrappers), what="a settle failed")
    stopping = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="pigeon"):
        worker.stop()
        await asyncio.wait_for(run, 10)  # before: the settler retried for ever
    assert time.monotonic() - stopping < grace + 2
    assert "stopping with 1 outcomes unsettled" in caplog.text
    await app.aclose()


async def _settle_failed(wrappers: list[SettlesNeverLand]) -> bool:
    return bool(wrappers) and wrappers[-1].failed > 0
