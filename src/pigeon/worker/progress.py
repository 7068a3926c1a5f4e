"""Progress reports from running jobs: stored on the job and published as events.

``JobContext.progress()`` may be called from the event loop or from a job's
thread; it never waits. The report is written (fenced by the claim's token) and
published as a ``pigeon.progress`` event in the background.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from pigeon.client import Client
from pigeon.errors import BrokerError
from pigeon.events import pattern_regex, publish
from pigeon.job import Claim, Progress
from pigeon.seam import InstrumentedBroker
from pigeon.task import Task

log = logging.getLogger("pigeon.worker")

TOPIC = "pigeon.progress"


class ProgressReporter:
    """Hands each job a reporter bound to its claim; keeps the sends it started."""

    def __init__(
        self, client: Client, broker: InstrumentedBroker, handlers: Sequence[tuple[str, Task[Any, Any]]]
    ) -> None:
        self._client = client
        self._broker = broker
        self._handlers = handlers
        self._loop = asyncio.get_running_loop()
        self._sending: dict[str, set[asyncio.Task[None]]] = {}
        self._listened = any(pattern_regex(pattern).match(TOPIC) for pattern, _ in handlers)

    def reporter(self, claim: Claim) -> Callable[[float, str], None] | None:
        """The job's ``ctx.progress`` sink; None (reports do nothing) on a broker without progress."""
        if not self._broker.capabilities.progress:
            return None

        def report(fraction: float, message: str) -> None:
            if _on_loop(self._loop):
                self._start(claim, fraction, message)
            else:
                self._loop.call_soon_threadsafe(self._start, claim, fraction, message)

        return report

    def _start(self, claim: Claim, fraction: float, message: str) -> None:
        task = self._loop.create_task(self._send(claim, fraction, message))
        pending = self._sending.setdefault(claim.job.id, set())
        pending.add(task)
        task.add_done_callback(pending.discard)

    def reporting(self, job_id: str) -> bool:
        """Whether a job has reports on their way."""
        return job_id in self._sending

    async def flush(self, job_id: str) -> None:
        """Wait for a job's reports to be written, before its settle ends what they can change."""
        pending = self._sending.pop(job_id, set())
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def _send(self, claim: Claim, fraction: float, message: str) -> None:
        report = Progress(fraction, message, time.time())
        try:
            await self._broker.progress(claim.job.id, claim.token, msgspec.json.encode(report))
            if self._listened:  # unheard reports would each leave an unrouted-event record
                event = {
                    "job_id": claim.job.id,
                    "task": claim.job.task,
                    "fraction": fraction,
                    "message": message,
                }
                await publish(self._client, self._handlers, TOPIC, event)
        except BrokerError as exc:
            log.warning("progress report lost: %s", exc, extra={"job_id": claim.job.id})


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
