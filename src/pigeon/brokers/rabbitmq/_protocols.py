"""The optional protocols a RabbitMQ broker offers: those of its store, answered by it.

Each is a mixin :meth:`RabbitBroker.offering` adds only when the store
implements the protocol, so the capabilities the seam derives are the store's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pigeon.brokers.base import Broker, Limiting, Reporting
from pigeon.brokers.inspection import Inspecting, JobFilter
from pigeon.job import Job, JobRecord, JobState, QueueStats, WorkerInfo


class _Store:
    _store: Broker
    _publish: Callable[[Sequence[Job]], Awaitable[None]]


class InspectingStore(_Store):
    """:class:`Inspecting`, answered by the store; a job requeued gets a delivery."""

    @property
    def _inspecting(self) -> Inspecting:
        assert isinstance(self._store, Inspecting)  # only mixed in when it is
        return self._store

    async def list_jobs(
        self,
        *,
        queue: str | None = None,
        state: JobState | None = None,
        task: str | None = None,
        limit: int = 100,
    ) -> list[JobRecord]:
        return await self._inspecting.list_jobs(queue=queue, state=state, task=task, limit=limit)

    async def stats(self) -> list[QueueStats]:
        return await self._inspecting.stats()

    async def workers(self) -> list[WorkerInfo]:
        return await self._inspecting.workers()

    async def unregister_worker(self, worker_id: str) -> None:
        await self._inspecting.unregister_worker(worker_id)

    async def requeue(self, job_id: str) -> bool:
        """FAILED/CANCELLED → QUEUED in the store, and a delivery for it."""
        if not await self._inspecting.requeue(job_id):
            return False
        record = await self._store.get(job_id)
        if record is not None and record.state is JobState.QUEUED:
            await self._publish([record.job])
        return True

    async def requeue_jobs(self, job_ids: Sequence[str]) -> int:
        """One store call, then a delivery for each job it made QUEUED."""
        moved = await self._inspecting.requeue_jobs(job_ids)
        if moved:
            records = [await self._store.get(job_id) for job_id in job_ids]
            await self._publish([r.job for r in records if r is not None and r.state is JobState.QUEUED])
        return moved

    async def cancel_jobs(self, job_ids: Sequence[str], expires_at: float) -> int:
        return await self._inspecting.cancel_jobs(job_ids, expires_at)

    async def purge(self, *, queue: str | None = None, states: Sequence[JobState] = ()) -> int:
        return await self._inspecting.purge(queue=queue, states=states)

    async def find_jobs(
        self, where: JobFilter, *, limit: int = 50, before: str | None = None
    ) -> list[JobRecord]:
        return await self._inspecting.find_jobs(where, limit=limit, before=before)

    async def count_jobs(self, where: JobFilter) -> int:
        return await self._inspecting.count_jobs(where)

    async def delete_jobs(self, job_ids: Sequence[str]) -> int:
        return await self._inspecting.delete_jobs(job_ids)

    async def oldest_ready(self) -> dict[str, float]:
        return await self._inspecting.oldest_ready()

    async def pause_queue(self, queue: str) -> None:
        await self._inspecting.pause_queue(queue)

    async def resume_queue(self, queue: str) -> None:
        await self._inspecting.resume_queue(queue)  # its jobs are claimed from the store again

    async def paused_queues(self) -> list[str]:
        return await self._inspecting.paused_queues()


class LimitingStore(_Store):
    """:class:`Limiting`, answered by the store."""

    async def take(self, key: str, rate: float, burst: float) -> float:
        assert isinstance(self._store, Limiting)  # only mixed in when it is
        return await self._store.take(key, rate, burst)


class ReportingStore(_Store):
    """:class:`Reporting`, answered by the store."""

    async def progress(self, job_id: str, token: str, data: bytes) -> bool:
        assert isinstance(self._store, Reporting)  # only mixed in when it is
        return await self._store.progress(job_id, token, data)


def offered(store: Broker) -> tuple[type[Any], ...]:
    """The mixins for the optional protocols ``store`` implements."""
    pairs: tuple[tuple[type[Any], type[Any]], ...] = (
        (Inspecting, InspectingStore),
        (Limiting, LimitingStore),
        (Reporting, ReportingStore),
    )
    return tuple(mixin for protocol, mixin in pairs if isinstance(store, protocol))
