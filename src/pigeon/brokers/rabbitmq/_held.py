"""The deliveries one consumer holds, between their arrival and the claim that settles them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from pigeon.brokers.rabbitmq._arrivals import Arrivals
from pigeon.job import Claim

HOLD = 60.0
"""Seconds a delivery may wait for a claim before it is acknowledged anyway."""
ACK_DEADLINE = 10.0
"""Seconds a batch of acknowledgements may take before it is given up (the store has the jobs)."""
_REMEMBER = 10_000
"""Claimed ids kept to recognise deliveries that arrive after their job was claimed."""


def _job_id(message: AbstractIncomingMessage) -> str:
    return message.body.decode(errors="replace")


async def ack(messages: Sequence[AbstractIncomingMessage]) -> None:
    """Acknowledge deliveries, together; one of a channel lost since is not an error."""
    # A delivery of a channel lost since is redelivered by the server, and its job is in the
    # store: whatever a dead channel raises here (aiormq re-raises its close reason, which may
    # be a bare Exception) costs nothing, so the results are dropped.
    # Bounded as well: an ack waits on the channel's writer, which a dying connection may never
    # drain, and a claim must not wait on it for ever.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(ACK_DEADLINE):
            await asyncio.gather(*(m.ack() for m in messages), return_exceptions=True)


class Held:
    """Deliveries received per queue, not yet acknowledged; wake-ups for ``wait()``."""

    def __init__(self) -> None:
        self.ready: dict[str, list[AbstractIncomingMessage]] = {}
        self.deliveries = 0
        """Deliveries received, for diagnostics and tests."""
        self._arrivals = Arrivals()
        self._acking: set[asyncio.Future[None]] = set()
        self._claimed: dict[str, None] = {}
        """Ids claimed here lately (oldest first): their late deliveries are dropped."""

    def receiver(self, queue: str) -> Callable[[AbstractIncomingMessage], Coroutine[Any, Any, None]]:
        """The consumer callback for ``queue``."""
        loop = asyncio.get_running_loop()

        async def arrived(message: AbstractIncomingMessage) -> None:
            if _job_id(message) in self._claimed:
                await ack([message])  # published after its job was claimed here: nothing to do
                self.deliveries += 1
                return
            self.deliveries += 1
            self.ready.setdefault(queue, []).append(message)
            loop.call_later(HOLD, self._release, queue, message)
            self._arrivals.note(queue)

        return arrived

    def forget(self, queue: str) -> None:
        """Drop a lost consumer's deliveries unacknowledged: their tags died with it."""
        self.ready.pop(queue, None)

    def _release(self, queue: str, message: AbstractIncomingMessage) -> None:
        """Acknowledge a delivery no claim took in time: its job stays in the store."""
        held = self.ready.get(queue, [])
        if message in held:
            held.remove(message)
            acking = asyncio.ensure_future(ack([message]))
            self._acking.add(acking)
            acking.add_done_callback(self._acking.discard)

    def snapshot(self, queues: Sequence[str]) -> dict[str, list[AbstractIncomingMessage]]:
        """The deliveries held now for ``queues``, taken before a claim."""
        return {q: list(self.ready.get(q, ())) for q in queues}

    async def settle(
        self, before: dict[str, list[AbstractIncomingMessage]], claims: Sequence[Claim], limit: int
    ) -> None:
        """Acknowledge the deliveries a claim settled.

        Those are the claimed jobs' deliveries and, when the store had fewer
        ready jobs than asked for, every delivery held before the claim began:
        their jobs were claimed elsewhere, cancelled, finished or are not due.

        Only deliveries still held are taken, and taking one removes it before
        any await: claims overlap (the workers of one app share its broker) and
        ``_release`` runs meanwhile, and whoever takes a delivery is its only
        acknowledger. Two acknowledgements of one delivery tag make RabbitMQ close
        the consuming channel ("unknown delivery tag").
        """
        ids = {c.job.id for c in claims}
        self._claimed.update(dict.fromkeys(ids))
        while len(self._claimed) > _REMEMBER:
            del self._claimed[next(iter(self._claimed))]
        drained = len(claims) < limit
        done: list[AbstractIncomingMessage] = []
        for q, held in before.items():
            earlier = {id(m) for m in held} if drained else set()
            kept: list[AbstractIncomingMessage] = []
            for m in self.ready.get(q, ()):
                (done if id(m) in earlier or _job_id(m) in ids else kept).append(m)
            self.ready[q] = kept
        await ack(done)

    async def wait(self, queues: Sequence[str], timeout: float) -> None:
        """Return when a delivery for ``queues`` arrived since the last wait, or after ``timeout``."""
        await self._arrivals.wait(queues, timeout)

    async def close(self) -> None:
        """Let the acknowledgements under way finish (briefly); forget the rest."""
        if self._acking:
            await asyncio.wait(self._acking, timeout=5)
        self.ready.clear()
