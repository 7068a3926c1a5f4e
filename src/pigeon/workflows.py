"""Workflows: chains, groups and chords of tasks, built from ordinary jobs.

- ``chain(a.s(1), b.s(), c.s())``: each step's result is the first free
  argument of the next. The remaining steps ride in the running job's envelope
  (``Job.then``); the worker enqueues the next step before it settles the
  current one. A failed step fails the chain; later steps never run.
- ``group(a.s(1), a.s(2))``: the jobs run in parallel; results come back in order.
- ``chord(members, callback.s())``: a group, then the callback with the list of
  results. A failed or cancelled member's slot holds ``{"error": {"type", "message"}}``.

Every job of a workflow has an id derived from the workflow's id and its place
in it, and brokers store an id once. So a step that runs twice (at-least-once)
enqueues its successor once, and a cancelled workflow leaves cancelled
placeholders under the ids of steps not yet enqueued, which keeps them from ever
running. A chord's callback is fired by a waiter job (``pigeon.chord``) that
checks the members and defers itself until all are final: it is recovered like
any job if its worker dies, so a chord never silently stays unfired.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, Generic, TypeVar

import msgspec

from pigeon.client import Client
from pigeon.errors import Defer, JobCancelled, JobFailed, JobNotFound
from pigeon.handle import JobHandle
from pigeon.job import Job, JobRecord, JobState, Step, Then, new_id
from pigeon.task import JobContext, Signature, Task
from pigeon.waiters import wait_a_while

Resolve = Callable[[str], Task[Any, Any] | None]
"""The task a job names (``App.resolve_task``)."""

R = TypeVar("R")

CHORD_TASK = "pigeon.chord"


def step_id(root: str, key: object) -> str:
    """The id of a workflow's job at ``key``: the same in every process."""
    return hashlib.sha256(f"{root}:{key}".encode()).hexdigest()[:32]


def fill(task: Task[Any, Any], step: Step, result: bytes) -> bytes:
    """A step's payload with ``result`` as its first unbound argument."""
    bound: dict[str, Any] = msgspec.json.decode(step.args)
    free = task.codec.first_unbound(bound)
    if free is None:
        raise TypeError(f"{task.name}: no parameter left for the previous step's result")
    bound[free] = msgspec.Raw(result)
    payload = msgspec.json.encode(bound)
    task.codec.decoder().decode(payload)  # the result must fit the parameter
    return payload


def next_job(resolve: Resolve, job: Job, result: bytes) -> Job | None:
    """The chain's next job after ``job`` succeeded with ``result``, if any."""
    if job.then is None:
        return None
    then = job.then
    step, rest = then.steps[0], then.steps[1:]
    task = _task(resolve, step.task)
    following = Then(then.root, then.index + 1, rest) if rest else None
    sig = Signature(task)
    return sig.job(step_id(then.root, then.index), following, fill(task, step, result))


def _task(resolve: Resolve, name: str) -> Task[Any, Any]:
    task = resolve(name)
    if task is None:
        raise KeyError(f"no task named {name!r} for the workflow's next step")
    return task


class _Base:
    def __init__(self, client: Client, root: str, ids: Sequence[str]) -> None:
        self.client = client
        self.id = root
        self.ids = list(ids)

    async def _records(self) -> list[JobRecord | None]:
        broker = await self.client.connection()
        return [await broker.get(i) for i in self.ids]

    async def acancel(self) -> int:
        """Cancel every job of the workflow that has not finished (running ones are stopped,
        see :meth:`JobHandle.cancel`) and every step not yet enqueued; return how many."""
        broker = await self.client.connection()
        cancelled = 0
        expires = time.time() + self.client.failed_ttl
        for job_id in self.ids:
            if await broker.get(job_id) is None:  # not enqueued yet: leave a cancelled placeholder
                await broker.enqueue([Job(id=job_id, task="pigeon.cancelled", run_at=time.time() + 3e8)])
            cancelled += await broker.cancel(job_id, expires)
        self.client.result_waiters.done(self.ids)
        return cancelled

    def cancel(self) -> int:
        """Synchronous :meth:`acancel`."""
        return self.client.portal_call(self.acancel())


def _raise_for(rec: JobRecord) -> None:
    if rec.state is JobState.CANCELLED:
        raise JobCancelled(f"job {rec.job.id} of the workflow was cancelled")
    if rec.state is JobState.FAILED:
        e = rec.error
        raise JobFailed(
            rec.job.id, e.type if e else "unknown", e.message if e else "", e.traceback if e else ""
        )


async def _wait(deadline: float | None, pause: float, settled: asyncio.Event) -> float:
    if deadline is not None and time.monotonic() >= deadline:
        raise TimeoutError("the workflow did not finish in time")
    return await wait_a_while(settled, pause, deadline)


class ChainHandle(_Base, Generic[R]):
    """A chain's jobs, step by step; ``result()`` is the last step's result."""

    async def aresult(self, timeout: float | None = None) -> R:
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.001
        with self.client.result_waiters.watching(self.ids) as settled:
            while True:
                for rec in await self._records():
                    if rec is None or not rec.state.is_final:
                        break
                    _raise_for(rec)
                else:
                    return await JobHandle[R](self.client, self.ids[-1]).aresult(0)
                pause = await _wait(deadline, pause, settled)

    def result(self, timeout: float | None = None) -> R:
        return self.client.portal_call(self.aresult(timeout))


class GroupHandle(_Base):
    """A group's jobs; ``result()`` is their results in order (raising the first failure)."""

    async def aresult(self, timeout: float | None = None) -> list[Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.001
        with self.client.result_waiters.watching(self.ids) as settled:
            while True:
                records = await self._records()
                if all(r is not None and r.state.is_final for r in records):
                    return [await JobHandle[Any](self.client, i).aresult(0) for i in self.ids]
                for r in records:
                    if r is not None and r.state.is_final:
                        _raise_for(r)
                pause = await _wait(deadline, pause, settled)

    def result(self, timeout: float | None = None) -> list[Any]:
        return self.client.portal_call(self.aresult(timeout))


class ChordHandle(_Base, Generic[R]):
    """A chord's members, waiter and callback; ``result()`` is the callback's result."""

    async def aresult(self, timeout: float | None = None) -> R:
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.001
        callback = JobHandle[R](self.client, self.ids[-1])
        with self.client.result_waiters.watching(self.ids) as settled:
            while True:
                try:
                    rec = await callback.arecord()
                except JobNotFound:
                    waiter = (await self._records())[-2]
                    if waiter is not None and waiter.state.is_final:
                        _raise_for(waiter)
                else:
                    if rec.state.is_final:
                        return await callback.aresult(0)
                pause = await _wait(deadline, pause, settled)

    def result(self, timeout: float | None = None) -> R:
        return self.client.portal_call(self.aresult(timeout))


class _Workflow:
    def __init__(self, client: Client, jobs: list[Job], handle: _Base) -> None:
        self._client, self._jobs, self._handle = client, jobs, handle

    def send(self) -> Any:
        """Enqueue the workflow's first jobs in one round trip; return its handle."""
        self._client.enqueue(self._jobs)
        return self._handle

    async def asend(self) -> Any:
        """Asynchronous :meth:`send`."""
        await self._client.aenqueue(self._jobs)
        return self._handle


def _signatures(given: tuple[Signature | Iterable[Signature], ...], what: str) -> list[Signature]:
    """Signatures given one by one, or as one iterable (a list, a generator), as Celery takes them.

    Raises:
        TypeError: an item is not a signature (``task.s(...)``).
    """
    items: Iterable[Any] = given[0] if len(given) == 1 and not isinstance(given[0], Signature) else given
    if not isinstance(items, Iterable):
        raise TypeError(f"a {what} takes signatures (task.s(...)) or one iterable of them")
    sigs = list(items)
    for s in sigs:
        if not isinstance(s, Signature):
            raise TypeError(f"a {what} takes signatures (task.s(...)), not {type(s).__name__}")
    return sigs


def chain(*given: Signature | Iterable[Signature]) -> _Workflow:
    """Run signatures one after another, each result feeding the next (``chain(a.s(), b.s())``)."""
    sigs = _signatures(given, "chain")
    if not sigs:
        raise ValueError("a chain needs at least one step")
    client, root = sigs[0].task.client, new_id()
    rest = tuple(s.step() for s in sigs[1:])
    first = sigs[0].job(step_id(root, 0), Then(root, 1, rest) if rest else None)
    handle = ChainHandle[Any](client, root, [step_id(root, i) for i in range(len(sigs))])
    return _Workflow(client, [first], handle)


def group(*given: Signature | Iterable[Signature]) -> _Workflow:
    """Run signatures in parallel (``group(a.s(1), a.s(2))`` or ``group(a.s(i) for i in …)``);
    the handle collects their results in order."""
    sigs = _signatures(given, "group")
    if not sigs:
        raise ValueError("a group needs at least one member")
    client, root = sigs[0].task.client, new_id()
    jobs = [s.job(step_id(root, i)) for i, s in enumerate(sigs)]
    return _Workflow(client, jobs, GroupHandle(client, root, [j.id for j in jobs]))


def chord(members: Iterable[Signature], callback: Signature) -> _Workflow:
    """Run ``members`` (any iterable of signatures) in parallel, then ``callback`` with their results."""
    sigs = _signatures((members,), "chord")
    if not sigs:
        raise ValueError("a chord needs at least one member")
    client, root = callback.task.client, new_id()
    jobs = [s.job(step_id(root, i)) for i, s in enumerate(sigs)]
    waiter_task = client.resolve(CHORD_TASK)
    assert isinstance(waiter_task, Task)  # every app registers it (App.__init__)
    spec = msgspec.json.encode(callback.step()).decode()
    waiter = waiter_task.make_job((root, len(sigs), spec), {})
    waiter = msgspec.structs.replace(waiter, id=step_id(root, "waiter"), queue=callback.task.defaults.queue)
    ids = [j.id for j in jobs] + [waiter.id, step_id(root, "callback")]
    return _Workflow(client, [*jobs, waiter], ChordHandle[Any](client, root, ids))


CHORD_ATTEMPTS = 5


def chord_waiter(
    client: Client, resolve: Resolve
) -> Callable[[JobContext, str, int, str], Coroutine[Any, Any, None]]:
    """The ``pigeon.chord`` task's function for one app (registered by ``App``)."""

    async def chord_waiter(ctx: JobContext, root: str, size: int, callback: str) -> None:
        broker = await client.connection()
        records = [await broker.get(step_id(root, i)) for i in range(size)]
        if not all(r is not None and r.state.is_final for r in records):
            waited = time.time() - (records[0].job.enqueued_at if records[0] else time.time())
            raise Defer(min(1.0, max(0.02, waited / 20)))
        results: list[Any] = []
        for r in records:
            assert r is not None
            if r.state is JobState.SUCCEEDED:
                results.append(msgspec.Raw(r.result or b"null"))
            else:
                err = r.error
                kind = err.type if err else "pigeon.errors.JobCancelled"
                results.append({"error": {"type": kind, "message": err.message if err else "cancelled"}})
        step = msgspec.json.decode(callback, type=Step)
        task = _task(resolve, step.task)
        payload = fill(task, step, msgspec.json.encode(results))
        job = Signature(task).job(step_id(root, "callback"), None, payload)
        if step.queue is not None:
            job = msgspec.structs.replace(job, queue=step.queue)
        await client.aenqueue([job])

    return chord_waiter
