"""A worker stops while its scheduler is enqueueing, whatever the broker makes of the cancel."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import pytest

from pigeon import App, BrokerError
from pigeon.brokers.base import Broker
from pigeon.brokers.memory import MemoryBroker
from pigeon.job import Job


class CancelBecomesError(MemoryBroker):
    """A real broker whose enqueue, once cancelled, raises its own error, as a driver may."""

    entered: asyncio.Event

    async def enqueue(self, jobs: Sequence[Job]) -> list[str]:
        self.entered.set()
        try:
            await asyncio.Event().wait()  # a reply that never comes before the stop
        except asyncio.CancelledError:
            raise BrokerError("channel closed: the call was cancelled") from None
        return []


class CancelSwallowed(CancelBecomesError):
    """A real broker whose enqueue, once cancelled, swallows the cancel and returns."""

    async def enqueue(self, jobs: Sequence[Job]) -> list[str]:
        self.entered.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        return [j.id for j in jobs]


@pytest.mark.parametrize("kind", [CancelBecomesError, CancelSwallowed])
async def test_a_stop_mid_enqueue_of_a_missed_tick_ends_the_worker(kind: type[CancelBecomesError]) -> None:
    app = App("memory://")
    entered = asyncio.Event()

    def broker() -> Broker:
        made = kind.from_url("memory://", {})
        made.entered = entered
        return made

    app.client.create_broker = broker  # type: ignore[method-assign]

    @app.periodic(every=3600, missed="once")
    async def hourly() -> None: ...

    w = app.make_worker(poll=0.05)
    runner = asyncio.create_task(w.run(install_signals=False))
    async with asyncio.timeout(10):
        await entered.wait()  # the scheduler is enqueueing the missed tick
    w.stop()
    async with asyncio.timeout(10):  # before the fix: the scheduler slept to the next tick
        await runner
    await app.aclose()


class WaitSwallowsCancel(MemoryBroker):
    """A real broker whose wake-up wait, once cancelled, swallows the cancel and returns."""

    entered: asyncio.Event

    async def wait(self, queues: Sequence[str], timeout: float) -> None:
        self.entered.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()


async def test_a_stop_during_a_wake_up_wait_that_swallows_it_ends_the_worker() -> None:
    app = App("memory://")
    entered = asyncio.Event()

    def broker() -> Broker:
        made = WaitSwallowsCancel.from_url("memory://", {})
        made.entered = entered
        return made

    app.client.create_broker = broker  # type: ignore[method-assign]
    w = app.make_worker(poll=0.05)
    runner = asyncio.create_task(w.run(install_signals=False))
    async with asyncio.timeout(10):
        await entered.wait()  # the watch waits for a wake-up
    w.stop()
    async with asyncio.timeout(10):  # before the fix: the watch waited again, for ever
        await runner
    await app.aclose()
