"""The token bucket behind task rate limits, computed once, in Python.

A bucket holds at most ``burst`` tokens and refills at ``rate`` per second; a take
spends one token or says how long until one is there. :func:`take` is the rule:
the memory and SQLite brokers apply it inside their lock or write transaction.
PostgreSQL (``take`` in its queries.sql) and Redis (``take.lua``) repeat its
arithmetic in their one statement or script, because the read, the refill and the
write must be one atomic step across processes, and a transaction around a read and
a write would cost two more round trips per rate-limited job.

Workers' clocks differ a little: a bucket never refills backwards and its clock
never moves back, so a caller whose clock is behind takes only what is there.
"""

from __future__ import annotations

import math
from typing import NamedTuple


class Bucket(NamedTuple):
    """A bucket as stored: its tokens at ``at`` (Unix seconds)."""

    tokens: float
    at: float


def take(bucket: Bucket | None, now: float, rate: float, burst: float) -> tuple[Bucket, float]:
    """Refill ``bucket`` (None: full) up to ``now``, at most to ``burst``, and take one token.

    Returns:
        The bucket to store, and 0.0 when a token was taken, else :func:`wait`.
    """
    tokens, at = (float(burst), now) if bucket is None else bucket
    tokens, at = min(float(burst), tokens + max(0.0, now - at) * rate), max(at, now)
    if tokens >= 1:
        return Bucket(tokens - 1, at), 0.0
    return Bucket(tokens, at), wait(tokens, rate)


def wait(tokens: float, rate: float) -> float:
    """The seconds until a bucket holding ``tokens`` (under one) holds one; infinite at rate 0."""
    return (1 - tokens) / rate if rate > 0 else math.inf
