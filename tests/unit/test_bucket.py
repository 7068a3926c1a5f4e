"""The token bucket's rule (pigeon/bucket.py), by table."""

from __future__ import annotations

import math

import pytest

from pigeon.bucket import Bucket, take

CASES = [
    # bucket, now, rate, burst -> stored, wait
    pytest.param(None, 100.0, 10.0, 3.0, Bucket(2.0, 100.0), 0.0, id="absent: full, one taken"),
    pytest.param(Bucket(0.0, 100.0), 100.0, 10.0, 3.0, Bucket(0.0, 100.0), 0.1, id="empty: wait for one"),
    pytest.param(Bucket(0.5, 100.0), 100.0, 10.0, 3.0, Bucket(0.5, 100.0), 0.05, id="half a token"),
    pytest.param(Bucket(0.0, 100.0), 100.2, 10.0, 3.0, Bucket(1.0, 100.2), 0.0, id="refilled two, one taken"),
    pytest.param(Bucket(2.0, 100.0), 200.0, 10.0, 3.0, Bucket(2.0, 200.0), 0.0, id="refill capped at burst"),
    pytest.param(Bucket(1.0, 100.0), 99.0, 10.0, 3.0, Bucket(0.0, 100.0), 0.0, id="clock behind: no refill"),
    pytest.param(Bucket(0.0, 100.0), 99.0, 10.0, 3.0, Bucket(0.0, 100.0), 0.1, id="clock behind: clock kept"),
    pytest.param(Bucket(0.0, 100.0), 150.0, 0.0, 3.0, Bucket(0.0, 150.0), math.inf, id="rate 0"),
    pytest.param(None, 100.0, 1.0, 0.5, Bucket(0.5, 100.0), 0.5, id="burst under one token"),
]


@pytest.mark.parametrize(("bucket", "now", "rate", "burst", "stored", "wait"), CASES)
def test_take(
    bucket: Bucket | None, now: float, rate: float, burst: float, stored: Bucket, wait: float
) -> None:
    got, waited = take(bucket, now, rate, burst)
    assert got == pytest.approx(stored)
    assert waited == pytest.approx(wait)


def test_a_burst_then_one_token_per_interval() -> None:
    bucket: Bucket | None = None
    waits = []
    for now in (0.0, 0.0, 0.0, 0.0, 0.1001, 0.1001):
        bucket, wait = take(bucket, now, 10.0, 3)
        waits.append(wait)
    assert waits == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.0, 0.1], abs=1e-3)
