"""A worker whose settles lag stops claiming: results wait in memory for at most 2 × concurrency jobs."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pigeon import App
from pigeon.brokers.base import Broker
from pigeon.brokers.memory import MemoryBroker
from pigeon.job import Outcome, WorkerInfo
from tests.helpers import eventually


class StalledSettles(MemoryBroker):
    """A real broker whose settles wait for a gate (a slow store), and which counts heartbeats."""

    gate: asyncio.Event
    beats: int = 0

    async def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
        await self.gate.wait()
        return await super().settle(outcomes)

    async def heartbeat(
        self, worker: WorkerInfo, leases: Sequence[tuple[str, str]], lease: float
    ) -> list[str]:
        self.beats += 1
        return await super().heartbeat(worker, leases, lease)


async def test_a_worker_whose_settles_lag_stops_claiming() -> None:
    app = App("memory://")
    gate = asyncio.Event()
    made: list[StalledSettles] = []

    def broker() -> Broker:
        b = StalledSettles.from_url("memory://", {})
        b.gate = gate
        made.append(b)
        return b

    app.client.create_broker = broker  # type: ignore[method-assign]
    ran: list[int] = []

    @app.task
    async def quick(n: int) -> bytes:
        ran.append(n)
        return b"x" * 1000

    concurrency = 4
    handles = await quick.asend_many([(n,) for n in range(40)])
    async with app.worker(concurrency=concurrency, poll=0.05, heartbeat=0.05, lease=5.0):

        async def count() -> int:
            return len(ran)

        await eventually(count, lambda n: n >= 2 * concurrency, what="a first round of jobs")
        beats = made[0].beats

        async def beats_since() -> int:
            return made[0].beats - beats

        # Ten heartbeats: the worker had every chance to claim more, and did not.
        await eventually(beats_since, lambda n: n >= 10, what="heartbeats while settles stall")
        assert len(ran) == 2 * concurrency  # the old worker ran all 40 and held their results
        gate.set()
        assert [await h.aresult(timeout=10) for h in handles] == [b"x" * 1000] * 40
    app.close()
