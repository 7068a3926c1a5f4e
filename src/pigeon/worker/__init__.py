"""The worker: claims jobs, runs them, settles them."""

from pigeon.worker.config import WorkerConfig
from pigeon.worker.loop import Worker
from pigeon.worker.thread import WorkerThread

__all__ = ["Worker", "WorkerConfig", "WorkerThread"]
