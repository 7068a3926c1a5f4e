"""pigeon: background jobs and message passing, from one SQLite file to a cluster.

>>> from pigeon import App
>>> app = App("memory://")
>>> @app.task
... async def add(a: int, b: int) -> int:
...     return a + b
"""

from pigeon.app import App
from pigeon.errors import (
    BrokerConnectionError,
    BrokerError,
    ConfigurationError,
    DecodeError,
    Defer,
    InvalidTask,
    JobCancelled,
    JobError,
    JobFailed,
    JobNotFound,
    MalformedJob,
    PayloadTooLarge,
    PigeonError,
    ProcessDied,
    Retry,
    UnknownTask,
    UnsupportedFeature,
)
from pigeon.handle import JobHandle
from pigeon.job import Job, JobRecord, JobState
from pigeon.retry import Backoff, Fixed
from pigeon.task import JobContext, Signature, Task
from pigeon.worker.config import WorkerConfig
from pigeon.workflows import chain, chord, group

__all__ = [
    "App",
    "Backoff",
    "BrokerConnectionError",
    "BrokerError",
    "ConfigurationError",
    "DecodeError",
    "Defer",
    "Fixed",
    "InvalidTask",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobError",
    "JobFailed",
    "JobHandle",
    "JobNotFound",
    "JobRecord",
    "JobState",
    "MalformedJob",
    "PayloadTooLarge",
    "PigeonError",
    "ProcessDied",
    "Retry",
    "Signature",
    "Task",
    "UnknownTask",
    "UnsupportedFeature",
    "WorkerConfig",
    "chain",
    "chord",
    "group",
]
