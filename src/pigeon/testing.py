"""Testing your own tasks without a server.

>>> from pigeon import App
>>> from pigeon.testing import drain
>>> app = App("memory://")
>>> @app.task
... def add(a: int, b: int) -> int:
...     return a + b
>>> h = add.send(1, 2)
>>> drain(app)
1
>>> h.result(timeout=1)
3
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pigeon.app import App
from pigeon.job import JobRecord, JobState

_FAST = {"poll": 0.01, "heartbeat": 0.5, "lease": 30.0}


async def adrain(app: App, *, queues: tuple[str, ...] = ("default",), **config: Any) -> int:
    """Run a burst worker on this loop until no job is due or running; return how many ran."""
    worker = app.make_worker(queues=queues, burst=True, **{**_FAST, **config})
    await worker.run(install_signals=False)
    return worker.processed


async def _drain_and_close(app: App, queues: tuple[str, ...], config: dict[str, Any]) -> int:
    try:
        return await adrain(app, queues=queues, **config)
    finally:
        await app.aclose()


def drain(app: App, *, queues: tuple[str, ...] = ("default",), **config: Any) -> int:
    """Synchronous :func:`adrain`, in a thread of its own (safe to call from any test)."""
    result: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(asyncio.run(_drain_and_close(app, queues, config)))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            errors.append(exc)

    t = threading.Thread(target=run, name="pigeon-drain")
    t.start()
    t.join()
    if errors:
        raise errors[0]
    return result[0]


def jobs(app: App, *, task: str | None = None, state: JobState | None = None) -> list[JobRecord]:
    """Jobs the app's broker holds, oldest first (for assertions on what was sent)."""

    async def fetch() -> list[JobRecord]:
        broker = await app.connection()
        return list(reversed(await broker.list_jobs(task=task, state=state, limit=10_000)))

    return app.portal_call(fetch())


@contextmanager
def use_memory(app: App) -> Iterator[App]:
    """Point ``app`` at a fresh in-memory broker for the block, then back.

    For tests of a project's own tasks, with no server and no file::

        @pytest.fixture(autouse=True)
        def jobs_in_memory():
            with use_memory(app):
                yield

    Connections the app had are closed first; each block starts empty.
    """
    previous = app.client.url_source
    app.close()
    app.swap_broker("memory://")
    try:
        yield app
    finally:
        app.close()
        app.swap_broker(previous)
