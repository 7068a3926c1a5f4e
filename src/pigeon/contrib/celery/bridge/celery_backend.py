"""Any result backend Celery knows (``django-db``, ``db+postgresql://…``, …), written by Celery's own code.

During a migration Celery is installed, so rather than copy each backend's storage format
the bridge hands the final state of a job to Celery's backend class for that URL: what
``AsyncResult.get()`` reads is exactly what a Celery worker would have written. Its calls
are blocking; they run in a thread.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pigeon import codec
from pigeon.errors import ConfigurationError
from pigeon.job import JobRecord, JobState


class CeleryBackendResults:
    """Writes results through ``celery.Celery(backend=url).backend``."""

    def __init__(self, url: str) -> None:
        try:
            from celery import Celery
        except ImportError:
            raise ConfigurationError(
                f"--result-backend {url}: writing to this backend uses Celery's own code; install celery"
            ) from None
        app = Celery("pigeon-bridge", backend=url, set_as_current=False)
        app.conf.update(result_serializer="json", accept_content=["json"], result_accept_content=["json"])
        self.backend: Any = app.backend

    async def write(self, rec: JobRecord) -> None:
        await asyncio.to_thread(self._store, rec)

    def _store(self, rec: JobRecord) -> None:
        from celery.utils.serialization import create_exception_cls

        result: Any
        traceback = None
        if rec.state is JobState.SUCCEEDED:
            state, result = "SUCCESS", codec.decode_any(rec.result or b"null")
        elif rec.state is JobState.FAILED:
            kind = rec.error.type if rec.error else "builtins.Exception"
            module, _, name = kind.rpartition(".")
            state = "FAILURE"
            result = create_exception_cls(name, module or "builtins")(rec.error.message if rec.error else "")
            traceback = rec.error.traceback if rec.error else None
        else:
            from celery.exceptions import TaskRevokedError

            state, result = "REVOKED", TaskRevokedError("cancelled")
        self.backend.store_result(rec.job.id, result, state, traceback=traceback)

    async def aclose(self) -> None:
        """Nothing to close: Celery's backends manage their own connections."""
