"""Back-off policies: how long a failed attempt waits before the next one."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol


class BackoffPolicy(Protocol):
    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        ...


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential back-off with jitter: ``base * factor**(attempt-1)``, capped at ``cap``.

    With ``jitter`` the delay is drawn from its upper half ("equal jitter"), so
    retries of jobs that failed together spread out but never retry at once.
    """

    base: float = 1.0
    factor: float = 2.0
    cap: float = 600.0
    jitter: bool = True

    def delay(self, attempt: int) -> float:
        d = min(self.cap, self.base * self.factor ** max(0, attempt - 1))
        if self.jitter:
            d = d / 2 + random.uniform(0, d / 2)
        return d


@dataclass(frozen=True, slots=True)
class Fixed:
    """The same delay after every attempt."""

    seconds: float

    def delay(self, attempt: int) -> float:
        return self.seconds
