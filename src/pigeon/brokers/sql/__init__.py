"""SQL kept as data: versioned migrations and named queries, read lazily from package files.

A dialect folder holds ``NNNN_name.sql`` migrations, applied in order, and a
``queries.sql`` whose statements are introduced by ``-- name: <query>`` lines.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from importlib.resources import files
from typing import Any

import msgspec

from pigeon.brokers.inspection import JobFilter, purged
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
    """The reads both SQL brokers share: ``get``, ``list_jobs``, ``stats``, ``workers``, and ``purge``.

    Each dialect's ``queries.sql`` names them alike and takes named parameters;
    a broker supplies :meth:`_select`, which runs one and returns its rows, and
    :meth:`_change`, which runs a write and counts the rows it changed.
    """

    async def _select(self, name: str, params: dict[str, Any]) -> list[Any]:
        raise NotImplementedError

    async def _change(self, name: str, params: dict[str, Any]) -> int:
        """Run a named write; return how many rows it changed."""
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

    async def purge(self, *, queue: str | None = None, states: Sequence[JobState] = ()) -> int:
        # The states go as one JSON array, which both dialects read as a set of rows.
        wanted = msgspec.json.encode([s.value for s in purged(states)]).decode()
        return await self._change("purge", {"states": wanted, "queue": queue})

    async def workers(self) -> list[WorkerInfo]:
        rows = await self._select("workers", {})
        return [msgspec.structs.replace(_worker_decoder.decode(info), last_seen=seen) for info, seen in rows]


def filter_clause(
    where: JobFilter, before: str | None, *, dialect: str, table: str, in_state: bool = False
) -> tuple[str, dict[str, Any]]:
    """The ``WHERE`` conditions and parameters for a :class:`JobFilter` (``TRUE`` when empty).

    ``before`` pages by enqueue order (``seq``): only jobs older than that job.
    ``in_state``: the conditions go next to one state's (``find_sql``'s walks).
    """
    pg = dialect == "postgres"

    def p(name: str) -> str:
        return f"%({name})s" if pg else f":{name}"

    terms: list[str] = []
    params: dict[str, Any] = {}
    if where.queue is not None:
        terms.append(f"queue = {p('queue')}")
        params["queue"] = where.queue
    states = where.states
    if pg and where.newest is not None and not states:  # every state: the (state, seq) index serves
        states = tuple(JobState)
    if states:
        names = [f"st{i}" for i in range(len(states))]
        terms.append(f"state IN ({', '.join(p(n) for n in names)})")
        params.update({n: s.value for n, s in zip(names, states, strict=True)})
    if where.task is not None:
        # SQLite's (task, state) index (migration 0005) would walk every job of the task where
        # `newest` over every state reads a range of the rowid: `+task` keeps it off the index.
        hint = "+" if not pg and where.newest is not None and not states and not in_state else ""
        terms.append(f"{hint}task = {p('task')}")
        params["task"] = where.task
    if where.since is not None:
        terms.append(f"enqueued_at >= {p('since')}")
        params["since"] = where.since
    if where.until is not None:
        terms.append(f"enqueued_at < {p('until')}")
        params["until"] = where.until
    for i, (a, b) in enumerate(where.needles()):
        a_, b_ = p(f"a{i}"), p(f"b{i}")
        if pg:
            terms.append(f"(position({a_}::bytea in envelope) > 0 OR position({b_}::bytea in envelope) > 0)")
        else:
            terms.append(f"(instr(envelope, {a_}) > 0 OR instr(envelope, {b_}) > 0)")
        params[f"a{i}"], params[f"b{i}"] = a, b
    if where.newest is not None:
        # The last enqueue position: PostgreSQL's sequence, SQLite's largest rowid (both O(1)).
        last = f"(SELECT last_value FROM {table}_seq_seq)" if pg else f"(SELECT max(seq) FROM {table})"
        terms.append(f"seq > {last} - {p('newest')}")
        params["newest"] = where.newest
    if before is not None:
        terms.append(f"seq < (SELECT seq FROM {table} WHERE id = {p('before')})")
        params["before"] = before
    return " AND ".join(terms) or "TRUE", params


def find_sql(
    template: str, where: JobFilter, before: str | None, *, dialect: str, table: str
) -> tuple[str, dict[str, Any]]:
    """A newest-first page of ``where``: the dialect's ``find_in_state`` once per state, merged.

    Each part walks the ``(state, seq)`` index backwards for at most ``limit`` rows, so
    no page sorts more than ``limit`` rows per state, however many jobs match. The rows
    end with ``seq``.
    """
    rest = JobFilter(
        queue=where.queue,
        task=where.task,
        since=where.since,
        until=where.until,
        args=where.args,
        newest=where.newest,
    )
    clause, params = filter_clause(rest, before, dialect=dialect, table=table, in_state=True)
    mark = "%({})s" if dialect == "postgres" else ":{}"
    parts = []
    for i, state in enumerate(where.states or tuple(JobState)):
        params[f"in_state{i}"] = state.value
        parts.append(template.replace("{where}", clause).replace("{state}", mark.format(f"in_state{i}")))
    limit = mark.format("limit")
    return f"SELECT * FROM ({' UNION ALL '.join(parts)}) AS page ORDER BY seq DESC LIMIT {limit}", params
