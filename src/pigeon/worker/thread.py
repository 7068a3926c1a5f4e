"""A worker in a background thread of a host program (a WSGI server, a script)."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pigeon.worker.loop import Worker

log = logging.getLogger("pigeon.worker")

EXIT_MARGIN = 5.0
"""Seconds past its grace an in-process worker gets at interpreter exit to hand jobs back and settle."""


class WorkerThread:
    """Owns one worker running on its own event loop in a daemon thread."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="pigeon-worker", daemon=True)

    def _main(self) -> None:
        async def main() -> None:
            try:
                await self.worker.run(install_signals=False)
            finally:
                await self.worker.client.aclose()  # this loop's broker connection dies with the loop

        try:
            asyncio.run(main())
        except BaseException as exc:
            self.error = exc
            log.exception("the worker thread stopped on an error")
            self.worker.stopped.set()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = None, *, hard: bool = False) -> None:
        """Stop gracefully and wait up to ``timeout`` seconds for the thread to end."""
        if not self._thread.is_alive():
            return
        self.worker.stop(hard=hard)
        self._thread.join(timeout)

    def stop_at_exit(self) -> None:
        """Stop at interpreter exit: the worker's grace, and a margin to hand jobs back and settle."""
        self.stop(timeout=self.worker.config.grace + EXIT_MARGIN)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> WorkerThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
