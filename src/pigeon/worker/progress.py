"""Progress reports from running jobs: stored on the job and published as events.

``JobContext.progress()`` may be called from the event loop or from a job's
thread; it never waits. The report is written (fenced by the claim's token) and
published as a ``pigeon.progress`` event in the background.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec

from pigeon.errors import BrokerError
from pigeon.job import Claim
from pigeon.task import Progress
from pigeon.worker.seam import InstrumentedBroker

if TYPE_CHECKING:
    from pigeon.app import App

log = logging.getLogger("pigeon.worker")

TOPIC = "pigeon.progress"


class ProgressReporter:
    """Hands each job a reporter bound to its claim; keeps the sends it started."""

    def __init__(self, app: App, broker: InstrumentedBroker) -> None:
        self._app = app
        self._broker = broker
        self._loop = asyncio.get_running_loop()
        self._sending: set[asyncio.Task[None]] = set()

    def reporter(self, claim: Claim) -> Callable[[float, str], None]:
        def report(fraction: float, message: str) -> None:
            self._loop.call_soon_threadsafe(self._start, claim, fraction, message)

        return report

    def _start(self, claim: Claim, fraction: float, message: str) -> None:
        task = self._loop.create_task(self._send(claim, fraction, message))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, claim: Claim, fraction: float, message: str) -> None:
        report = Progress(fraction, message, time.time())
        try:
            await self._broker.progress(claim.job.id, claim.token, msgspec.json.encode(report))
            event = {"job_id": claim.job.id, "task": claim.job.task, "fraction": fraction, "message": message}
            await self._app.apublish(TOPIC, event)
        except BrokerError as exc:
            log.warning("progress report lost: %s", exc, extra={"job_id": claim.job.id})
