"""One attempt of a claimed job: run it and say how it ended.

The worker hands each claim here and gives the :class:`~pigeon.policy.Ending`
to the retry policy; nothing here decides a job's next state.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

from pigeon import limits
from pigeon.client import Client
from pigeon.errors import BrokerError, DecodeError, UnknownTask, UnsupportedFeature
from pigeon.job import Claim, ErrorInfo
from pigeon.policy import Completed, Deferred, Ending, Raised, Unrunnable
from pigeon.registry import Registry
from pigeon.seam import InstrumentedBroker
from pigeon.task import JobContext, Task, parse_rate
from pigeon.worker.executors import Executors, error_info
from pigeon.worker.progress import ProgressReporter
from pigeon.workflows import next_job

log = logging.getLogger("pigeon.worker")


class AttemptRunner:
    """Runs attempts for one worker: executors, progress, a chain's next step, rate limits."""

    def __init__(
        self,
        worker_id: str,
        client: Client,
        registry: Registry,
        broker: InstrumentedBroker,
        executors: Executors,
        progress: ProgressReporter,
    ) -> None:
        self._worker_id = worker_id
        self._client = client
        self._registry = registry
        self._broker = broker
        self._executors = executors
        self._progress = progress

    async def run(self, claim: Claim, task: Task[Any, Any] | None) -> Ending:
        """Run the claimed job; return how it ended (the policy decides what that means)."""
        job = claim.job
        if claim.malformed is not None:  # never retried: the same bytes would fail the same way
            log.error("malformed job: %s", claim.malformed, extra=log_extra(claim))
            return Unrunnable(ErrorInfo("pigeon.MalformedJob", claim.malformed))
        if task is None:
            log.error("unknown task %r", job.task, extra=log_extra(claim))
            exc = UnknownTask(f"no task named {job.task!r} is registered with this worker's app")
            return Unrunnable(error_info(exc))
        if task.defaults.rate is not None:
            throttled = await self._throttle(task.name, task.defaults.rate)
            if throttled is not None:
                return throttled
        ctx = None
        if task.takes_context:  # building one costs a tenth of a no-op job: only when it is read
            report = self._progress.reporter(claim)
            ctx = JobContext(
                job.id, job.task, job.queue, claim.attempt, job.max_attempts, self._worker_id, report
            )
        started = time.perf_counter()
        try:
            result = await self._executors.run(task, ctx, bytes(job.payload), job.timeout)
        except asyncio.CancelledError:
            task_self = asyncio.current_task()
            if task_self is not None and task_self.cancelling():
                raise  # the worker is stopping or lost the lease
            return _raised(asyncio.CancelledError("the task cancelled itself"))
        except DecodeError as exc:
            log.error("undecodable job: %s", exc, extra=log_extra(claim))
            return Unrunnable(error_info(exc), exc)
        except TimeoutError as exc:
            error: BaseException = exc
            if job.timeout is not None and time.perf_counter() - started >= job.timeout * 0.99:
                error = TimeoutError(f"attempt exceeded its timeout of {job.timeout} s")
            return _raised(error)
        except BaseException as exc:  # noqa: BLE001 - a bad job must never kill the worker
            return _raised(exc)
        if len(result) > self._client.max_payload:  # the same call, the same result: no retry
            too_large = limits.result_too_large(job.task, len(result), self._client.max_payload)
            log.error("%s", too_large, extra=log_extra(claim))
            return Unrunnable(ErrorInfo("pigeon.PayloadTooLarge", str(too_large)), too_large)
        if job.then is not None:
            broken = await self._continue_chain(claim, result)
            if broken is not None:
                return broken
        if log.isEnabledFor(logging.INFO):  # the hot path: no dict when nobody listens
            took = time.perf_counter() - started
            log.info("job succeeded in %.3f s", took, extra={**log_extra(claim), "duration": round(took, 6)})
        return Completed(result)

    async def _continue_chain(self, claim: Claim, result: bytes) -> Ending | None:
        """Enqueue a chain's next step before this one settles (its id makes a re-run harmless)."""
        try:
            following = next_job(self._registry.resolve_task, claim.job, result)
            if following is not None:
                await self._client.aenqueue([following])
        except (TypeError, KeyError) as exc:
            log.error("the chain cannot go on: %s", exc, extra=log_extra(claim))
            return Unrunnable(error_info(exc))
        except BrokerError as exc:
            return _raised(exc)
        return None

    async def _throttle(self, task: str, rate: str) -> Ending | None:
        """Over the task's rate: back to the queue later, the attempt given back."""
        try:
            wait = await self._broker.take(f"rate:{task}", parse_rate(rate), 1.0)
        except UnsupportedFeature as exc:
            return Unrunnable(error_info(exc))
        except BrokerError as exc:
            log.warning("rate limit check failed (%s); trying again shortly", exc)
            wait = 1.0
        return Deferred(wait * random.uniform(1.0, 2.0)) if wait > 0 else None


def log_extra(claim: Claim) -> dict[str, Any]:
    """A job's fields on a log record, built only when one is logged (not per job)."""
    return {"job_id": claim.job.id, "task": claim.job.task, "attempt": claim.attempt}


def _raised(exc: BaseException) -> Raised:
    return Raised(exc, error_info(exc))
