"""What a job's arguments and result must stay within, checked before anything is stored.

The limits hold for every broker. Whatever breaks one is refused with ``TypeError`` naming
the limit, before anything is stored, so a worker never meets a job it cannot decode:

- ``MAX_DEPTH``: containers nested in an argument (a list in a dict is two levels).
  The stored envelope wraps arguments in a few more (a chain step's, an event's);
  the worker's decoder takes thousands, strictly more than a sender can reach.
- ``MAX_BYTES``: the default of ``App(max_payload=…)``, the most a job's encoded arguments
  (its chain's later steps' included) or its encoded result may take. Checked by the
  client on every enqueue path (:func:`check_sizes`) and by the worker on each result
  (:func:`result_too_large`). Each broker's own ceiling is far above it (SQLite 1 GB a value,
  PostgreSQL 1 GB a ``bytea``/``jsonb``, Redis 512 MB a string; RabbitMQ carries job ids
  only, its 16 MiB message limit on 4.x never meets a payload), so a larger setting works
  too, at the memory it costs: a worker holds each running job's payload and result.
- JSON has no NaN or infinity (``float("nan")``, ``float("inf")``): refused rather
  than stored as ``null``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from pigeon.errors import PayloadTooLarge

if TYPE_CHECKING:
    from pigeon.job import Job

MAX_DEPTH = 100
MAX_BYTES = 16 * 2**20

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def check(name: str, data: bytes, arguments: Mapping[str, Any], *, wrapped: int = 1) -> None:
    """Refuse encoded ``arguments`` (as ``data``) that break a limit.

    Args:
        name: how the caller names what is sent, for the message (``"resize()"``).
        data: the encoded arguments.
        arguments: the values, by argument name.
        wrapped: levels ``data`` adds around the values (an arguments object is one).

    Raises:
        TypeError: a limit is broken; the message names the limit and the argument.
    """
    if too_deep(data, MAX_DEPTH + wrapped):
        key = next((k for k, v in arguments.items() if too_deep(msgspec.json.encode(v), MAX_DEPTH)), None)
        which = "the arguments nest" if key is None else f"argument {key!r} nests"
        raise TypeError(f"{name}: {which} deeper than the limit of {MAX_DEPTH} levels")
    if b"null" in data:  # msgspec writes NaN and infinity as null: look for them only then
        for key, value in arguments.items():
            bad = _non_finite(value, MAX_DEPTH)
            if bad is not None:
                raise TypeError(f"{name}: argument {key!r} holds {bad!r}, which JSON cannot carry")


def check_sizes(jobs: Sequence[Job], max_bytes: int) -> None:
    """Refuse a batch in which a job's arguments, its chain's included, exceed ``max_bytes``.

    Raises:
        PayloadTooLarge: the first such job; the message names its task and the setting.
    """
    for job in jobs:
        size = len(job.payload)
        if job.then is not None:
            size += sum(len(step.args) for step in job.then.steps)
        if size > max_bytes:
            raise PayloadTooLarge(
                f"{job.task}(): the arguments encode to {size} bytes, over the limit of {max_bytes} "
                "(App(max_payload=…)); nothing of this batch was stored"
            )


def result_too_large(task: str, size: int, max_bytes: int) -> PayloadTooLarge:
    """The error a job fails with when its encoded result (``size`` bytes) exceeds ``max_bytes``."""
    return PayloadTooLarge(
        f"{task}(): the result encodes to {size} bytes, over the limit of {max_bytes} "
        "(App(max_payload=…)); the job fails and its result is not stored"
    )


def too_deep(data: bytes, limit: int) -> bool:
    """Whether JSON ``data`` nests containers more than ``limit`` levels deep."""
    if data.count(b"[") + data.count(b"{") <= limit:  # no parsing for the usual shallow data
        return False
    depth = 0
    for c in _STRING.sub(b"", data).translate(None, _NOT_BRACKETS):
        if c in b"[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _non_finite(value: Any, budget: int) -> float | None:
    if isinstance(value, float):
        return None if math.isfinite(value) else value
    if budget <= 0 or isinstance(value, str | bytes | int):
        return None
    if isinstance(value, Mapping):
        items: Any = value.values()
    elif isinstance(value, list | tuple | set | frozenset):
        items = value
    elif isinstance(value, msgspec.Struct):
        items = msgspec.structs.astuple(value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        items = (getattr(value, f.name) for f in dataclasses.fields(value))
    else:
        return None
    for item in items:
        bad = _non_finite(item, budget - 1)
        if bad is not None:
            return bad
    return None
