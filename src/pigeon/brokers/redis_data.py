"""What the Redis broker writes and reads: script arguments and job hashes, encoded once here."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib.resources import files
from typing import Any

import msgspec

from pigeon.job import ErrorInfo, Job, JobRecord, JobState, WorkerInfo, decode_stored
from pigeon.transitions import Transition, arriving

FIELDS = ("env", "state", "att", "res", "err", "errs", "wid", "start", "fin", "lease", "prog")
_error_decoder = msgspec.json.Decoder(ErrorInfo)
_errors_decoder = msgspec.json.Decoder(tuple[ErrorInfo, ...])
worker_decoder = msgspec.json.Decoder(WorkerInfo)


@functools.cache
def script_source(name: str) -> str:
    """A Lua script with the shared library in front (``lib.lua``)."""
    lua = files("pigeon.brokers.lua")
    return lua.joinpath("lib.lua").read_text() + lua.joinpath(f"{name}.lua").read_text()


def text(value: object) -> str:
    """A reply value as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def time_arg(t: float | None) -> str:
    """A time as a script argument (``''`` for none)."""
    return "" if t is None else repr(t)


def enqueue_args(jobs: Sequence[Job], now: float) -> list[list[Any]]:
    """Jobs as enqueue.lua's arguments, one list per job; each job's first state decided here."""
    rows = []
    for j in jobs:
        state, run_at = arriving(j, now)
        rows.append(
            [
                j.id,
                j.task,
                j.queue,
                j.priority,
                j.max_attempts,
                j.unique_key or "",
                repr(run_at),
                j.encode(),
                j.limit_key or "",
                j.limit,
                state.value,
            ]
        )
    return rows


def settle_args(t: Transition) -> list[Any]:
    """A transition as settle.lua's arguments for one outcome."""
    return [
        t.job_id,
        t.token,
        t.state.value,
        "0" if t.result is None else "1",
        t.result or b"",
        t.error or b"",
        "1" if t.keep_error else "0",
        "1" if t.release else "0",
        time_arg(t.run_at),
        time_arg(t.expires_at),
    ]


def record(job_id: str, values: list[bytes | None]) -> JobRecord | None:
    """A JobRecord from a job hash's :data:`FIELDS`, or None when the job is gone."""
    env, state, attempts, result, error, errors, worker_id, started, finished, lease, progress = values
    if env is None or state is None:
        return None
    job, malformed = decode_stored(job_id, env)
    return JobRecord(
        job=job,
        raw=None if malformed is None else env,
        state=JobState(state.decode()),
        attempts=int(attempts or 0),
        result=result,
        error=None if error is None else _error_decoder.decode(error),
        errors=() if errors is None else _errors_decoder.decode(errors),
        worker_id=None if worker_id is None else worker_id.decode(),
        started_at=None if started is None else float(started),
        finished_at=None if finished is None else float(finished),
        lease_until=None if lease is None else float(lease),
        progress=progress,
    )
