"""SQL kept as data: versioned migrations and named queries, read lazily from package files.

A dialect folder holds ``NNNN_name.sql`` migrations, applied in order, and a
``queries.sql`` whose statements are introduced by ``-- name: <query>`` lines.
"""

from __future__ import annotations

import functools
import re
from importlib.resources import files
from typing import Any

import msgspec

from pigeon.job import ErrorInfo, JobRecord, JobState, QueueStats, WorkerInfo, decode_stored

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@functools.cache
def queries(dialect: str) -> dict[str, str]:
    """The named queries of a dialect."""
    text = files(__package__).joinpath(dialect, "queries.sql").read_text()
    parts = _NAME.split(text)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


@functools.cache
def migrations(dialect: str) -> tuple[tuple[int, str, str], ...]:
    """``(version, name, sql)`` for every migration of a dialect, oldest first."""
    found = []
    for entry in files(__package__).joinpath(dialect).iterdir():
        m = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if m:
            found.append((int(m.group(1)), m.group(2), entry.read_text()))
    return tuple(sorted(found))


_error_decoder = msgspec.json.Decoder(ErrorInfo)
_errors_decoder = msgspec.json.Decoder(tuple[ErrorInfo, ...])
_worker_decoder = msgspec.json.Decoder(WorkerInfo)


def record_from_row(row: tuple[Any, ...]) -> JobRecord:
    """A JobRecord from the columns every SQL dialect's ``get`` and ``list`` queries select:
    envelope, state, attempts, result, error, errors, worker_id, started_at, finished_at,
    lease_until, progress, id."""
    envelope, state, attempts, result, error, errors, worker_id, started, finished, lease, progress, jid = row
    job, malformed = decode_stored(jid, bytes(envelope))
    return JobRecord(
        job=job,
        raw=None if malformed is None else bytes(envelope),
        state=JobState(state),
        attempts=attempts,
        result=result,
        error=None if error is None else _error_decoder.decode(error),
        errors=() if errors is None else _errors_decoder.decode(errors),
        worker_id=worker_id,
        started_at=started,
        finished_at=finished,
        lease_until=lease,
        progress=progress,
    )


class SqlReads:
    """The reads both SQL brokers share: ``get``, ``list_jobs``, ``stats``, ``workers``.

    Each dialect's ``queries.sql`` names them alike and takes named parameters;
    a broker supplies :meth:`_select`, which runs one and returns its rows.
    """

    async def _select(self, name: str, params: dict[str, Any]) -> list[Any]:
        raise NotImplementedError

    async def get(self, job_id: str) -> JobRecord | None:
        rows = await self._select("get", {"id": job_id})
        return record_from_row(rows[0]) if rows else None

    async def list_jobs(
        self,
        *,
        queue: str | None = None,
        state: JobState | None = None,
        task: str | None = None,
        limit: int = 100,
    ) -> list[JobRecord]:
        value = None if state is None else state.value
        params = {"queue": queue, "state": value, "task": task, "limit": limit}
        return [record_from_row(r) for r in await self._select("list", params)]

    async def stats(self) -> list[QueueStats]:
        counts: dict[str, dict[str, int]] = {}
        for queue, state, n in await self._select("stats", {}):
            counts.setdefault(queue, {})[state] = n
        return [QueueStats(q, c) for q, c in counts.items()]

    async def workers(self) -> list[WorkerInfo]:
        rows = await self._select("workers", {})
        return [msgspec.structs.replace(_worker_decoder.decode(info), last_seen=seen) for info, seen in rows]
