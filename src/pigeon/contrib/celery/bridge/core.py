"""The bridge: Celery task messages in, pigeon jobs out, results back where Celery reads them.

For each message: parse it (JSON only), find the pigeon task with the message's
Celery name, build its job under the message's id, store it, and only then let
the transport acknowledge the message. A redelivered message finds the job
already stored (ids are stored once), so it never makes a second one.

- An unknown task name is *held*: the message is kept aside by the transport and
  a placeholder job ``held-<id>`` waits, QUEUED, in the ``celery.held`` queue
  (``pigeon jobs list APP --queue celery.held``). Each bridge start tries held
  messages again, so deploying the task and restarting the bridge releases them.
- A message that cannot become a job (pickle, bad arguments) is *rejected*: kept
  aside by the transport with the reason logged, never deserialized.

Jobs with a result backend or a chain to continue are *tracked*: a watcher
writes each one's final state where Celery's ``AsyncResult.get()`` reads it, and
sends a chain's next step (as a Celery worker would) when a step succeeds.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Sequence
from typing import Any, Protocol

import msgspec

from pigeon.app import App
from pigeon.contrib.celery.bridge.protocol import (
    JSON,
    CeleryMessage,
    Rejected,
    next_step,
    parse_body,
    parse_message,
)
from pigeon.errors import PigeonError
from pigeon.job import Job, JobRecord, JobState

log = logging.getLogger("pigeon.celery.bridge")

HELD_QUEUE = "celery.held"


class Disposition(enum.StrEnum):
    STORED = "stored"
    HELD = "held"
    REJECTED = "rejected"


class ResultBackend(Protocol):
    """Where Celery reads results: writes one job's final state under its id."""

    async def write(self, rec: JobRecord) -> None: ...

    async def aclose(self) -> None: ...


class PendingStore(Protocol):
    """Tracked jobs by id, with what the watcher needs (durable across bridge restarts)."""

    async def add_many(self, items: dict[str, bytes]) -> None: ...

    async def all(self) -> dict[str, bytes]: ...

    async def remove(self, job_id: str) -> None: ...


class Tracked(msgspec.Struct, frozen=True):
    """What the watcher keeps about a tracked job: its task and the chain after it."""

    task: str
    chain: tuple[dict[str, Any], ...] = ()


class Bridge:
    """Turns Celery messages into pigeon jobs of one app; see the module docstring."""

    def __init__(self, app: App, pending: PendingStore, backend: ResultBackend | None = None) -> None:
        self.app = app
        self.pending = pending
        self.backend = backend

    async def handle(self, raw: bytes, *, released: bool = False) -> Disposition:
        """Store the job a raw kombu message asks for; say what the transport does with it."""
        return (await self.handle_many([raw], released=released))[0]

    async def handle_many(self, raws: Sequence[bytes], *, released: bool = False) -> list[Disposition]:
        """:meth:`handle` for a batch of messages, their jobs stored in one enqueue."""
        messages: list[CeleryMessage | None] = []
        for raw in raws:
            try:
                messages.append(parse_message(raw))
            except Rejected as exc:
                log.error("message rejected, kept aside: %s", exc)
                messages.append(None)
        return await self.submit_many(messages, released=released)

    async def handle_body(
        self, content_type: str | None, headers: dict[str, Any], body: bytes, *, released: bool = False
    ) -> Disposition:
        """As :meth:`handle`, for a message whose headers and body come apart (AMQP)."""
        try:
            if content_type != JSON:
                raise Rejected(
                    f"content-type {content_type!r}: only JSON messages are bridged (pickle is never "
                    "deserialized); send with task_serializer='json'"
                )
            message = parse_body(headers, body)
        except Rejected as exc:
            log.error("message rejected, kept aside: %s", exc)
            return Disposition.REJECTED
        return (await self.submit_many([message], released=released))[0]

    async def submit_many(
        self, messages: Sequence[CeleryMessage | None], *, released: bool = False
    ) -> list[Disposition]:
        """Store parsed messages' jobs (or held placeholders); ``None`` stands for a rejected one.

        ``released``: the messages were held before; a stored one's placeholder is cancelled.
        """
        out: list[Disposition] = []
        jobs: list[Job] = []
        tracked: dict[str, bytes] = {}
        for m in messages:
            disposition, job = (Disposition.REJECTED, None) if m is None else self._prepare(m)
            out.append(disposition)
            if job is not None:
                jobs.append(job)
            if m is not None and disposition is Disposition.STORED and (self.backend is not None or m.chain):
                tracked[m.id] = msgspec.json.encode(Tracked(m.task, m.chain))
        if tracked:
            await self.pending.add_many(tracked)
        if jobs:
            await self.app.aenqueue(jobs)
        if released:
            for m, disposition in zip(messages, out, strict=True):
                if m is not None and disposition is Disposition.STORED:
                    await self.app.acancel(f"held-{m.id}")
        return out

    async def submit(self, message: CeleryMessage) -> Disposition:
        """Store one parsed message's job (or its held placeholder)."""
        return (await self.submit_many([message]))[0]

    def _prepare(self, message: CeleryMessage) -> tuple[Disposition, Job | None]:
        task = self.app.resolve_task(message.task)
        if task is None:
            log.warning("unknown task %r: message %s held", message.task, message.id)
            return Disposition.HELD, _held(message)
        try:
            job = task.make_job(message.args, message.kwargs)
        except TypeError as exc:
            log.error("message %s rejected, kept aside: %s", message.id, exc)
            return Disposition.REJECTED, None
        job = msgspec.structs.replace(job, id=message.id, run_at=message.eta, expires_at=message.expires)
        return Disposition.STORED, job

    async def watch(self, interval: float = 0.2) -> None:
        """Settle tracked jobs that ended: write results, continue chains. Runs until cancelled.

        A failing read or write is logged and tried again on the next round.
        """
        pause = interval
        while True:
            try:
                broker = await self.app.connection()
                for job_id, meta in (await self.pending.all()).items():
                    rec = await broker.get(job_id)
                    if rec is not None and rec.state.is_final:
                        await self.finish(rec, msgspec.json.decode(meta, type=Tracked))
                pause = interval
            except (PigeonError, OSError) as exc:
                pause = min(pause * 2, 5.0)
                log.warning("tracking results failed (%s); trying again in %.1f s", exc, pause)
            await asyncio.sleep(pause)

    async def finish(self, rec: JobRecord, tracked: Tracked) -> None:
        """One tracked job ended: its chain goes on first, then its result is written."""
        if rec.state is JobState.SUCCEEDED and tracked.chain:
            result = msgspec.json.decode(rec.result or b"null")
            after = CeleryMessage(rec.job.id, tracked.task, (), {}, chain=tracked.chain)
            step = next_step(after, result)
            if step is not None and await self.submit(step) is Disposition.REJECTED:
                log.error("the chain after %s cannot go on: step %s rejected", rec.job.id, step.id)
        if self.backend is not None:
            await self.backend.write(rec)
        await self.pending.remove(rec.job.id)


class MemoryPending:
    """Tracked jobs in this process only: a bridge restart forgets them (their results are
    not written, their chains stop). Used when no Redis is at hand."""

    def __init__(self) -> None:
        self._items: dict[str, bytes] = {}

    async def add_many(self, items: dict[str, bytes]) -> None:
        self._items.update(items)

    async def all(self) -> dict[str, bytes]:
        return dict(self._items)

    async def remove(self, job_id: str) -> None:
        self._items.pop(job_id, None)


def _held(message: CeleryMessage) -> Job:
    payload = msgspec.json.encode({"args": message.args, "kwargs": message.kwargs})
    return Job(id=f"held-{message.id}", task=message.task, queue=HELD_QUEUE, payload=msgspec.Raw(payload))


def split_queues(queues: str | Sequence[str]) -> list[str]:
    items = queues.split(",") if isinstance(queues, str) else list(queues)
    return [q.strip() for q in items if q.strip()]
