"""Who a worker is, as its heartbeats tell the broker: host, process, version, services."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import socket
import time
from collections.abc import Iterable

from pigeon.job import ServiceInfo, WorkerInfo
from pigeon.services import ServiceState
from pigeon.worker.config import WorkerConfig


def new_worker_id() -> str:
    """A worker id unique across hosts and processes: ``host-pid-random``."""
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"


def worker_info(
    worker_id: str, config: WorkerConfig, started_at: float, services: Iterable[ServiceState]
) -> WorkerInfo:
    """The record a heartbeat carries (``pigeon status``, ``pigeon workers``, the dashboard)."""
    return WorkerInfo(
        id=worker_id,
        hostname=socket.gethostname(),
        pid=os.getpid(),
        queues=config.queues,
        concurrency=config.concurrency,
        started_at=started_at,
        last_seen=time.time(),
        version=_version(),
        services=tuple(_service_info(s) for s in services),
    )


def _service_info(s: ServiceState) -> ServiceInfo:
    return ServiceInfo(
        name=s.label, running=s.running, starts=s.starts, crashes=s.crashes, last_error=s.last_error
    )


@functools.cache
def _version() -> str:
    try:
        return importlib.metadata.version("pigeon")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a source tree without metadata
        return ""
