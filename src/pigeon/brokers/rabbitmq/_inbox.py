"""RabbitMQ alone: the deliveries a consumer received and no claim took yet."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from pigeon.brokers.rabbitmq._arrivals import Arrivals


@dataclass(slots=True)
class Arrival:
    """One delivery, in arrival order; ``route`` names the event handler it is for, if any."""

    seq: int
    queue: str
    message: AbstractIncomingMessage
    route: Any = None
    sort: tuple[int, int] = field(init=False)

    def __post_init__(self) -> None:
        self.sort = (-(self.message.priority or 0), self.seq)


class Inbox:
    """Deliveries per pigeon queue, taken by claims highest AMQP priority first; wake-ups for ``wait()``.

    Prefetch bounds how many a consumer holds. Deliveries held here are
    unacknowledged: a worker that dies hands them back to RabbitMQ.
    """

    def __init__(self) -> None:
        self.ready: dict[str, list[Arrival]] = {}
        self.deliveries = 0
        """Deliveries received, for diagnostics and tests."""
        self._seq = itertools.count()
        self._arrivals = Arrivals()

    def receiver(
        self, queue: str, route: Any = None
    ) -> Callable[[AbstractIncomingMessage], Coroutine[Any, Any, None]]:
        """The consumer callback of a RabbitMQ queue that feeds pigeon queue ``queue``."""

        async def arrived(message: AbstractIncomingMessage) -> None:
            self.deliveries += 1
            self.ready.setdefault(queue, []).append(Arrival(next(self._seq), queue, message, route))
            self._arrivals.note(queue)

        return arrived

    def held(self, queues: Sequence[str]) -> int:
        return sum(len(self.ready.get(q, ())) for q in queues)

    def take(self, queues: Sequence[str], limit: int) -> list[Arrival]:
        """Up to ``limit`` deliveries of ``queues``: highest priority first, then in arrival order."""
        pool = sorted((a for q in queues for a in self.ready.get(q, ())), key=lambda a: a.sort)[:limit]
        taken = {id(a) for a in pool}
        for q in queues:
            if q in self.ready:
                self.ready[q] = [a for a in self.ready[q] if id(a) not in taken]
        return pool

    def forget(self, queue: str) -> None:
        """Drop a lost consumer's deliveries: their tags died with its channel, RabbitMQ redelivers."""
        self.ready.pop(queue, None)

    async def wait(self, queues: Sequence[str], timeout: float) -> None:
        """Return when a delivery for ``queues`` arrived since the last wait, or after ``timeout``."""
        await self._arrivals.wait(queues, timeout)

    async def until(self, queues: Sequence[str], count: int, timeout: float) -> None:
        """Wait (up to ``timeout``) until ``count`` deliveries of ``queues`` are held."""
        await self._arrivals.until(lambda: self.held(queues) >= count, timeout)
