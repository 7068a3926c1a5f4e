"""A "lease lost" answer about an old claim never touches the same job's new claim.

The order of events is forced, not waited for: the settle of the first attempt is held
back until the job's lease has expired and the job was recovered; the heartbeat that
carries the old token is held until the worker has claimed the job again, so its
"lost" answer lands after the new claim is registered and before its attempt starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

from pigeon import App, JobState
from pigeon.brokers.base import Broker
from pigeon.job import Claim, Outcome, WorkerInfo
from tests.helpers import eventually


class Choreography:
    """A real broker whose settle and heartbeat wait for the test's cues."""

    def __init__(self, inner: Broker) -> None:
        self.inner = inner
        self.job_id = ""
        self.first_token = ""
        self.first_claimed = asyncio.Event()
        self.recovered = asyncio.Event()
        self.reclaimed = asyncio.Event()
        self.answered_old = asyncio.Event()
        self.settle_free = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def claim(self, worker_id: str, queues: Sequence[str], limit: int, lease: float) -> list[Claim]:
        claims = await self.inner.claim(worker_id, queues, limit, lease)
        for c in claims:
            if c.job.id == self.job_id and not self.first_token:
                self.first_token = c.token
                self.first_claimed.set()
            elif c.job.id == self.job_id:
                self.reclaimed.set()
        return claims

    async def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
        if any(o.token == self.first_token for o in outcomes):
            await self.settle_free.wait()  # a settle delayed past the lease (a write lock, a stall)
        return await self.inner.settle(outcomes)

    async def heartbeat(
        self, worker: WorkerInfo, leases: Sequence[tuple[str, str]], lease: float
    ) -> list[str]:
        if (self.job_id, self.first_token) not in leases or self.answered_old.is_set():
            return await self.inner.heartbeat(worker, leases, lease)
        await self.recovered.wait()  # no renewal: the first claim's lease runs out
        lost = await self.inner.heartbeat(worker, leases, lease)
        assert lost == [self.job_id], lost  # the broker's true answer about the old token
        await self.reclaimed.wait()  # ...delivered once the job is claimed again
        self.answered_old.set()
        return lost


class ChoreographedApp(App):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.broker: Choreography | None = None
        create = self.client.create_broker

        def choreographed() -> Broker:  # the broker behind the seam
            self.broker = Choreography(create())
            return cast(Broker, self.broker)

        self.client.create_broker = choreographed  # type: ignore[method-assign]


async def test_old_claims_lease_lost_answer_spares_the_new_claim() -> None:
    app = ChoreographedApp("memory://")
    runs: list[int] = []

    @app.task
    async def count(n: int) -> int:
        runs.append(n)
        return len(runs)

    config: dict[str, Any] = {
        "poll": 0.02,
        "heartbeat": 0.02,
        "lease": 0.3,
        "recover_every": 3600.0,
        "dead_after": 3600.0,
    }
    async with app.worker(**config, concurrency=4):
        await app.connection()
        chor = app.broker
        assert chor is not None
        handle = await count.asend(1)
        chor.job_id = handle.id
        await chor.first_claimed.wait()
        recover = chor.inner.recover
        await eventually(lambda: recover(3600.0), lambda n: n == 1, what="the expired lease recovered")
        chor.recovered.set()
        await chor.answered_old.wait()
        chor.settle_free.set()  # the old outcome lands now, and is refused
        assert await handle.aresult(timeout=10) == 2
    assert runs == [1, 1]
    assert (await handle.arecord()).state is JobState.SUCCEEDED
    await app.aclose()
