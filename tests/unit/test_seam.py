"""Every broker call crosses one typed seam, whose counters the client returns."""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence

import pytest

from pigeon import App, BrokerConnectionError, JobContext, JobState, chain
from pigeon.brokers.base import Broker, TransactionalBroker
from pigeon.job import Claim, Outcome
from pigeon.seam import CallStats, InstrumentedBroker
from pigeon.testing import adrain


def _methods(protocol: type) -> set[str]:
    return {
        name
        for name, value in vars(protocol).items()
        if inspect.iscoroutinefunction(value) or (callable(value) and not name.startswith("_"))
    } - {"__aenter__", "__aexit__"}


def test_the_seam_spells_out_every_broker_method() -> None:
    # Written on the class, not found by __getattr__: mypy checks each against the protocol.
    assert not hasattr(InstrumentedBroker, "__getattr__")
    own = set(vars(InstrumentedBroker))
    assert _methods(Broker) <= own
    assert _methods(TransactionalBroker) <= own


async def test_producer_and_worker_calls_cross_the_seam() -> None:
    app = App("memory://")

    @app.task
    async def first(ctx: JobContext, n: int) -> int:
        ctx.progress(0.5)
        return n + 1

    @app.task
    async def second(n: int) -> int:
        return n * 2

    assert app.client.metrics() == {}
    handle = await chain(first.s(1), second.s()).asend()
    assert app.client.metrics()["enqueue"].calls == 1
    assert await adrain(app) == 2
    assert await handle.aresult(timeout=5) == 4
    other = await second.asend(1)
    assert await other.acancel()
    seen = app.client.metrics()
    # The chain's next step, the progress write, the handles' reads: once outside the seam, now in.
    assert seen["enqueue"].calls == 3
    assert seen["progress"].calls == 1
    assert seen["claim"].calls >= 1 and seen["settle"].calls >= 1
    assert seen["get"].calls >= 2 and seen["cancel"].calls == 1
    assert all(s.errors == 0 and s.seconds >= 0 for s in seen.values())
    await app.aclose()
    assert app.client.metrics()["close"].calls == 1  # closed brokers' counts are kept


async def test_a_failed_call_is_counted_as_an_error() -> None:
    pytest.importorskip("psycopg")
    app = App("postgresql://postgres@127.0.0.1:1/nowhere?connect_timeout=2")
    start = time.perf_counter()
    with pytest.raises(BrokerConnectionError):
        await app.connection()
    opened = app.client.metrics()["open"]
    assert (opened.calls, opened.errors) == (1, 1)
    assert 0 < opened.seconds <= time.perf_counter() - start
    assert opened.slowest == opened.seconds


async def test_metrics_are_copies() -> None:
    app = App("memory://")
    seam = await app.client.connection()
    taken = seam.metrics()
    taken.setdefault("enqueue", CallStats()).calls += 5
    assert "enqueue" not in seam.metrics()
    await app.aclose()


class _Watcher:
    """A SeamObserver that records, or raises when told to."""

    def __init__(self, broken: bool = False) -> None:
        self.broken = broken
        self.claimed_ids: list[str] = []
        self.settled_ids: list[str] = []

    def claimed(self, claims: Sequence[Claim]) -> None:
        if self.broken:
            raise RuntimeError("broken observer")
        self.claimed_ids += [c.job.id for c in claims]

    def settled(self, outcomes: Sequence[Outcome]) -> None:
        if self.broken:
            raise RuntimeError("broken observer")
        self.settled_ids += [o.job_id for o in outcomes]


async def test_a_workers_observer_sees_its_claims_and_accepted_settles() -> None:
    app = App("memory://")

    @app.task
    async def one() -> None:
        pass

    sent = [(await one.asend()).id for _ in range(3)]
    watcher, broken = _Watcher(), _Watcher(broken=True)
    worker = app.make_worker(burst=True)
    worker.observer = watcher
    seam = await app.client.connection()
    seam.observe(broken)  # a failing observer costs no claim and no settle
    await worker.run(install_signals=False)
    assert sorted(watcher.claimed_ids) == sorted(sent)
    assert sorted(watcher.settled_ids) == sorted(sent)
    records = [await seam.get(i) for i in sent]
    assert [r.state if r else None for r in records] == [JobState.SUCCEEDED] * 3
    seam.unobserve(broken)
    seam.unobserve(watcher)  # the worker stopped observing when it stopped: a no-op
    await app.aclose()
