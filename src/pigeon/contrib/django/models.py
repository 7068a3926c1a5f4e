"""``Job``: an unmanaged, read-only model over pigeon's jobs table, for the admin.

Only meaningful when the queue lives in the Django database. Its state changes
go through the broker (retry, cancel), never through the ORM, so the state
machine stays in one place.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from django.db import models

from pigeon import codec
from pigeon.contrib.django.conf import jobs_table
from pigeon.contrib.django.results import to_datetime
from pigeon.job import ErrorInfo, JobState
from pigeon.job import Job as Envelope

_error_decoder = msgspec.json.Decoder(ErrorInfo)
_errors_decoder = msgspec.json.Decoder(tuple[ErrorInfo, ...])


def _raw(value: Any) -> bytes | str:
    # SQLite stores errors as text, PostgreSQL as bytea (a memoryview through Django).
    return value if isinstance(value, str | bytes) else bytes(value)


class Job(models.Model):
    id: models.CharField[Any, Any] = models.CharField(primary_key=True, max_length=32)
    task: models.TextField[Any, Any] = models.TextField()
    queue: models.TextField[Any, Any] = models.TextField()
    priority: models.IntegerField[Any, Any] = models.IntegerField()
    state: models.TextField[Any, Any] = models.TextField(choices=[(s.value, s.value) for s in JobState])
    envelope: models.BinaryField[Any, Any] = models.BinaryField()
    max_attempts: models.IntegerField[Any, Any] = models.IntegerField()
    attempts: models.IntegerField[Any, Any] = models.IntegerField()
    unique_key: models.TextField[Any, Any] = models.TextField(null=True)
    run_at: models.FloatField[Any, Any] = models.FloatField()
    enqueued_at: models.FloatField[Any, Any] = models.FloatField()
    worker_id: models.TextField[Any, Any] = models.TextField(null=True)
    started_at: models.FloatField[Any, Any] = models.FloatField(null=True)
    finished_at: models.FloatField[Any, Any] = models.FloatField(null=True)
    result: models.BinaryField[Any, Any] = models.BinaryField(null=True)
    error: models.BinaryField[Any, Any] = models.BinaryField(null=True)
    errors: models.TextField[Any, Any] = models.TextField(null=True)

    class Meta:
        managed = False
        db_table = jobs_table()
        ordering = ("-id",)  # ids are time-ordered
        verbose_name = "job"

    def __str__(self) -> str:
        return f"{self.task} {self.id}"

    def arguments(self) -> Any:
        """The job's arguments, by parameter name."""
        return codec.decode_any(bytes(Envelope.decode(bytes(self.envelope)).payload))

    def result_value(self) -> Any:
        return None if self.result is None else codec.decode_any(bytes(self.result))

    def error_info(self) -> ErrorInfo | None:
        return None if self.error is None else _error_decoder.decode(_raw(self.error))

    def error_history(self) -> tuple[ErrorInfo, ...]:
        return () if self.errors is None else _errors_decoder.decode(self.errors)

    def when(self, field: str) -> datetime | None:
        value: float | None = getattr(self, field)
        return to_datetime(value)
