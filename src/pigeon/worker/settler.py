"""The worker's outbox: attempts' outcomes, settled in batches and kept until the broker takes them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from pigeon.client import Client
from pigeon.errors import BrokerError
from pigeon.job import Outcome, OutcomeKind
from pigeon.seam import InstrumentedBroker

log = logging.getLogger("pigeon.worker")

_FINAL = frozenset({OutcomeKind.COMPLETE, OutcomeKind.FAIL})
"""Outcomes that end a job: its result waiters in this process are woken."""
LAST_SETTLE = 1.5  # seconds a stopping worker gives its last outcomes (of the 2 s promised past grace)


class Settler:
    """Outcomes waiting to be settled, the batch on its way, and the loop that sends them.

    ``wake`` is called each time the outbox has been emptied (a burst worker waits for its
    outcomes before deciding it is idle).
    """

    def __init__(self, client: Client, wake: Callable[[], None]) -> None:
        self._client = client
        self._wake = wake
        self.outbox: list[Outcome] = []
        self.settling: list[Outcome] = []  # the batch the broker is taking now
        self.rounds = 0  # times the outbox has been emptied
        self._ready = asyncio.Event()

    def put(self, outcome: Outcome) -> None:
        self.outbox.append(outcome)
        self._ready.set()

    @property
    def pending(self) -> int:
        """Outcomes not landed yet (each holds its result in memory)."""
        return len(self.outbox) + len(self.settling)

    def idle_since(self, rounds: int) -> bool:
        """Whether no outcome is waiting and none landed since the round count was ``rounds``."""
        return not self.outbox and not self.settling and self.rounds == rounds

    def tokens(self) -> dict[str, str]:
        """The token of each job whose outcome has not landed yet (its lease must be kept)."""
        return {o.job_id: o.token for o in (*self.settling, *self.outbox)}

    async def last(self, task: asyncio.Task[None]) -> None:
        """Flush within the stop's margin; what cannot land comes back as leases expire."""
        self._ready.set()
        try:
            await asyncio.wait_for(task, LAST_SETTLE)
        except TimeoutError:
            log.error("stopping with %d outcomes unsettled", len(self.outbox) + len(self.settling))

    async def run(
        self,
        broker: InstrumentedBroker,
        stopping: Callable[[], bool],
        busy: Callable[[], bool],
        hard: asyncio.Event,
    ) -> None:
        """Flush outcomes in batches, retrying what fails, until stopping with no job running."""
        pause = 0.05
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self.outbox:
                batch, self.outbox = self.outbox, []
                self.settling = batch
                try:
                    accepted = await broker.settle(batch)
                except BrokerError as exc:
                    log.error("settle failed, will retry: %s", exc)
                    self.outbox = batch + self.outbox
                    self.settling = []
                    if hard.is_set() and stopping():
                        log.error("stopping with %d unsettled outcomes; their leases will expire", len(batch))
                        return
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 5.0)
                    continue
                self.settling = []
                pause = 0.05
                self._client.result_waiters.done(
                    o.job_id for o, ok in zip(batch, accepted, strict=True) if ok and o.kind in _FINAL
                )
                for o in (o for o, ok in zip(batch, accepted, strict=True) if not ok):
                    log.warning("job %s no longer ours to %s (cancelled, or lease lost)", o.job_id, o.kind)
            self.rounds += 1
            self._wake()
            if stopping() and not busy():
                return
