"""The broker contract: a core protocol of ten methods, optional protocols beside it.

``CoreOnly`` is a broker implementing the core protocol and nothing else, on the
memory broker's store: what a new transport (RabbitMQ) starts as. Through the
seam, what it lacks is a clear ``UnsupportedFeature`` and its capabilities say so.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, Self

import pytest

from pigeon import App, JobContext, JobFailed, UnsupportedFeature
from pigeon.brokers import base
from pigeon.brokers.base import (
    Broker,
    Capabilities,
    Inspecting,
    Limiting,
    Migrating,
    Reporting,
    TransactionalBroker,
    broker_class,
)
from pigeon.brokers.memory import MemoryBroker
from pigeon.job import Claim, Job, JobRecord, Outcome, WorkerInfo
from pigeon.testing import adrain


def _members(protocol: type) -> set[str]:
    return {n for n, v in vars(protocol).items() if callable(v) or isinstance(v, classmethod)} - {
        "__aenter__",
        "__aexit__",
        "__init__",
        "__subclasshook__",
        "_proto_hook",
    }


def test_the_core_protocol_fits_on_a_screen() -> None:
    core = {n for n in _members(Broker) if not n.startswith("_")}
    assert core == {
        "from_url",
        "enqueue",
        "claim",
        "settle",
        "heartbeat",
        "wait",
        "recover",
        "prune",
        "get",
        "cancel",
    }
    optional = [Inspecting, Limiting, Reporting, Migrating, TransactionalBroker]
    for protocol in optional:
        assert not (_members(protocol) & core), protocol


def test_broker_class_is_typed_and_builds_from_a_url() -> None:
    cls = broker_class("memory://")
    assert cls is MemoryBroker
    assert isinstance(cls.from_url("memory://", {}), Broker)


class CoreOnly:
    """The core protocol, delegated to a memory broker; no optional protocol."""

    capabilities = Capabilities(cross_process=False)

    def __init__(self, inner: MemoryBroker) -> None:
        self._inner = inner
        self.url = "coreonly://"

    @classmethod
    def from_url(cls, url: str, shared: dict[str, Any]) -> Self:
        return cls(MemoryBroker.from_url(url, shared))

    async def __aenter__(self) -> Self:
        await self._inner.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._inner.__aexit__(*exc)

    async def enqueue(self, jobs: Sequence[Job]) -> list[str]:
        return await self._inner.enqueue(jobs)

    async def claim(self, worker_id: str, queues: Sequence[str], limit: int, lease: float) -> list[Claim]:
        return await self._inner.claim(worker_id, queues, limit, lease)

    async def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
        return await self._inner.settle(outcomes)

    async def heartbeat(
        self, worker: WorkerInfo, leases: Sequence[tuple[str, str]], lease: float
    ) -> list[str]:
        return await self._inner.heartbeat(worker, leases, lease)

    async def wait(self, queues: Sequence[str], timeout: float) -> None:
        await self._inner.wait(queues, timeout)

    async def recover(self, dead_after: float, expires_at: float | None = None) -> int:
        return await self._inner.recover(dead_after, expires_at)

    async def prune(self) -> int:
        return await self._inner.prune()

    async def get(self, job_id: str) -> JobRecord | None:
        return await self._inner.get(job_id)

    async def cancel(self, job_id: str, expires_at: float) -> bool:
        return await self._inner.cancel(job_id, expires_at)


@pytest.fixture
def core_app(monkeypatch: pytest.MonkeyPatch) -> App:
    # As a third-party broker registers under the pigeon.brokers entry-point group.
    monkeypatch.setitem(base._BUILTIN, "coreonly", f"{__name__}:CoreOnly")
    return App("coreonly://")


def test_core_only_is_a_broker_and_nothing_more() -> None:
    broker = CoreOnly.from_url("coreonly://", {})
    assert isinstance(broker, Broker)
    for protocol in (Inspecting, Limiting, Reporting, Migrating, TransactionalBroker):
        assert not isinstance(broker, protocol)
    caps = base.capabilities_of(broker)
    assert not (caps.inspect or caps.limits or caps.progress or caps.transactional_enqueue)
    assert base.capabilities_of(MemoryBroker.from_url("memory://", {})).inspect


async def test_what_a_broker_lacks_is_a_clear_error(core_app: App) -> None:
    broker = await core_app.connection()
    for call in (broker.stats, broker.workers, lambda: broker.list_jobs()):
        with pytest.raises(UnsupportedFeature, match="the coreonly broker cannot list"):
            await call()
    with pytest.raises(UnsupportedFeature, match="cannot limit a task's rate"):
        await broker.take("k", 1.0, 1.0)
    with pytest.raises(UnsupportedFeature, match="cannot keep progress reports"):
        await broker.progress("j", "t", b"{}")
    with pytest.raises(UnsupportedFeature, match="cannot enqueue inside your database transaction"):
        broker.enqueue_in_sync(object(), [])
    assert await core_app.amigrate() == []  # no schema: nothing to do
    await core_app.aclose()


async def test_a_worker_runs_on_the_core_protocol_alone(core_app: App) -> None:
    reported: list[bool] = []

    @core_app.task
    async def work(ctx: JobContext, n: int) -> int:
        ctx.progress(0.5)  # nowhere to keep it: does nothing
        reported.append(True)
        return n * 2

    @core_app.task(rate="10/s", max_attempts=1)
    async def limited() -> None: ...

    done, refused = await work.asend(21), await limited.asend()
    assert await adrain(core_app) == 2
    assert await done.aresult(timeout=5) == 42 and reported == [True]
    with pytest.raises(JobFailed, match="cannot limit a task's rate"):
        await refused.aresult(timeout=5)
    assert "heartbeat" in core_app.metrics()  # the worker registered with a heartbeat
    await core_app.aclose()


def test_the_seam_covers_every_protocol() -> None:
    from pigeon.seam import InstrumentedBroker

    own = set(vars(InstrumentedBroker))
    for protocol in (Broker, Inspecting, Limiting, Reporting, Migrating, TransactionalBroker):
        missing = {n for n in _members(protocol) if not n.startswith("_")} - own
        assert not missing, (protocol, missing)
    assert inspect.iscoroutinefunction(InstrumentedBroker.stats)
