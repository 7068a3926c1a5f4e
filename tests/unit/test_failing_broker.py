"""The worker outlives any single broker call failing, whatever the failure is."""

from __future__ import annotations

import logging
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
