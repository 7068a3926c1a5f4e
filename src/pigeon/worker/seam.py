"""The one seam every worker → broker call passes through: timed and counted.

Brokers stay free of logging and metrics; this facade records, per method, how
many calls were made, how long they took and how many failed, and logs slow
calls at DEBUG.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pigeon.brokers.base import Broker

log = logging.getLogger("pigeon.broker")

_SLOW = 0.25


@dataclass(slots=True)
class CallStats:
    calls: int = 0
    errors: int = 0
    seconds: float = 0.0


class InstrumentedBroker:
    """Wraps a broker; ``stats`` maps method names to :class:`CallStats`."""

    def __init__(self, broker: Broker) -> None:
        self.inner = broker
        self.stats: dict[str, CallStats] = {}

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.inner, name)
        stats = self.stats.setdefault(name, CallStats())

        async def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            stats.calls += 1
            try:
                return await method(*args, **kwargs)
            except BaseException:
                stats.errors += 1
                raise
            finally:
                spent = time.perf_counter() - start
                stats.seconds += spent
                if spent > _SLOW:
                    log.debug("broker %s took %.3f s", name, spent)

        setattr(self, name, timed)  # later calls skip __getattr__
        return timed
