"""WorkerConfig: every knob of a worker, in one frozen value."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from pigeon.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """How a worker claims and runs jobs.

    Attributes:
        queues: the queues to take jobs from.
        queue_limits: ``(queue, n)`` pairs: at most n jobs of that queue in flight on this
            worker (``--queues default,images=2`` on the command line).
        concurrency: jobs in flight at once, across all executors.
        threads: the thread pool for plain-function tasks (default: up to ``concurrency``, at most 64).
        processes: the process pool for ``executor="process"`` tasks (default: CPU count).
        batch: the most jobs one claim takes.
        lease: seconds a claim is valid without a heartbeat.
        heartbeat: seconds between heartbeats (lease extension, liveness).
        dead_after: seconds of silence after which a worker's jobs are recovered.
        grace: seconds running jobs get to finish at shutdown before they are handed back.
        poll: the longest an idle worker waits before looking for due jobs again.
        recover_every: seconds between lease-recovery sweeps.
        prune_every: seconds between prunes of expired finished jobs.
        burst: exit when nothing is left to do.
        services: run the app's services (one process of a ``--processes`` group does).
    """

    queues: tuple[str, ...] = ("default",)
    queue_limits: tuple[tuple[str, int], ...] = ()
    concurrency: int = 32
    threads: int | None = None
    processes: int | None = None
    batch: int = 200
    lease: float = 30.0
    heartbeat: float = 2.0
    dead_after: float = 10.0
    grace: float = 10.0
    poll: float = 0.5
    recover_every: float = 5.0
    prune_every: float = 60.0
    burst: bool = False
    services: bool = True

    def __post_init__(self) -> None:
        if not self.queues:
            raise ConfigurationError("a worker needs at least one queue")
        if self.concurrency < 1:
            raise ConfigurationError(f"concurrency must be at least 1, not {self.concurrency}")
        if self.heartbeat >= self.lease:
            raise ConfigurationError("heartbeat must be shorter than the lease")
        if self.dead_after <= self.heartbeat:
            raise ConfigurationError("dead_after must be longer than the heartbeat")
        for queue, limit in self.queue_limits:
            if queue not in self.queues or limit < 1:
                raise ConfigurationError(
                    f"queue limit {queue}={limit}: name a queue of this worker, limit >= 1"
                )

    @property
    def thread_count(self) -> int:
        return self.threads or min(self.concurrency, 64)

    @property
    def process_count(self) -> int:
        return self.processes or os.cpu_count() or 1

    def replace(self, **changes: Any) -> Self:
        if "queues" in changes and isinstance(changes["queues"], str):
            queues, limits = _parse_queues(changes["queues"])
            changes["queues"] = queues
            if limits:
                changes["queue_limits"] = limits
        elif "queues" in changes:
            changes["queues"] = tuple(changes["queues"])
        try:
            return dataclasses.replace(self, **changes)
        except TypeError as exc:
            raise ConfigurationError(f"unknown worker option: {exc}") from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, base: Self | None = None) -> Self:
        """A config from ``PIGEON_<FIELD>`` variables (e.g. ``PIGEON_CONCURRENCY=64``) over ``base``."""
        changes: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(f"PIGEON_{f.name.upper()}")
            if raw is None:
                continue
            try:
                if f.name == "queues":
                    changes[f.name] = raw
                elif f.name == "queue_limits":
                    changes[f.name] = _parse_limits(raw)
                elif f.name in ("burst", "services"):
                    changes[f.name] = _parse_flag(raw)
                elif f.name in ("concurrency", "threads", "processes", "batch"):
                    changes[f.name] = int(raw)
                else:
                    changes[f.name] = float(raw)
            except ValueError:
                raise ConfigurationError(f"PIGEON_{f.name.upper()}={raw!r} is not a valid value") from None
        return (base or cls()).replace(**changes)


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def _parse_flag(raw: str) -> bool:
    # A typo must not silently mean "off": the variable was set for a reason.
    if raw.strip().lower() in _TRUE:
        return True
    if raw.strip().lower() in _FALSE:
        return False
    raise ValueError(raw)


def _parse_limits(raw: str) -> tuple[tuple[str, int], ...]:
    """``"images=2,video=1"`` → the per-worker caps (``PIGEON_QUEUE_LIMITS``)."""
    queues, limits = _parse_queues(raw)
    if len(limits) != len(queues):
        raise ValueError(raw)
    return limits


def _parse_queues(text: str) -> tuple[tuple[str, ...], tuple[tuple[str, int], ...]]:
    """``"default,images=2"`` → the queues, and the per-worker limits given with ``=``."""
    queues: list[str] = []
    limits: list[tuple[str, int]] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, limit = item.partition("=")
        queues.append(name.strip())
        if sep:
            try:
                limits.append((name.strip(), int(limit)))
            except ValueError:
                raise ConfigurationError(f"queue {item!r}: write name=N, N a whole number") from None
    return tuple(queues), tuple(limits)
