"""OpenTelemetry tracing (the ``otel`` extra: opentelemetry-api).

``pigeon.otel.instrument(app)`` adds, through the app's enqueue hooks and job hooks:

- a ``send <task>`` PRODUCER span for each job enqueued, whose W3C trace context
  (``traceparent``, ``tracestate``) rides in the job's ``headers``, so a web request's
  trace continues into the jobs it sends and into the events those jobs publish;
- a ``run <task>`` CONSUMER span for each attempt, a child of that context, current
  while the task runs, with the exception recorded and the status set to ERROR when
  the attempt fails.

Attributes follow OpenTelemetry's messaging semantic conventions
(``messaging.system``, ``messaging.operation.type``, ``messaging.destination.name``,
``messaging.message.id``), plus ``pigeon.task`` and ``pigeon.attempt``. The API does
nothing until the application installs an SDK (a TracerProvider and an exporter).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import msgspec

from pigeon.hooks import JobHook
from pigeon.job import Job

if TYPE_CHECKING:
    from pigeon.app import App

SYSTEM = "pigeon"
_CARRIED = ("traceparent", "tracestate")


def instrument(app: App, tracer_provider: Any = None) -> None:
    """Trace the jobs ``app`` sends and runs (with the global TracerProvider unless one is given).

    Raises:
        ConfigurationError: opentelemetry-api is not installed.
    """
    try:
        from opentelemetry import trace
    except ImportError as exc:
        from pigeon.errors import ConfigurationError

        raise ConfigurationError(f"tracing needs an extra: pip install 'pigeon[otel]' ({exc})") from exc
    try:
        pigeon_version = version("pigeon")
    except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
        pigeon_version = "0"
    tracer = trace.get_tracer("pigeon", pigeon_version, tracer_provider=tracer_provider)
    app.enqueue_hooks.append(_Producer(tracer).hook)
    app.job_hooks.append(_Consumer(tracer))


def _attributes(job: Job, operation: str) -> dict[str, Any]:
    return {
        "messaging.system": SYSTEM,
        "messaging.operation.type": operation,
        "messaging.operation.name": "send" if operation == "send" else "run",
        "messaging.destination.name": job.queue,
        "messaging.message.id": job.id,
        "pigeon.task": job.task,
    }


class _Producer:
    def __init__(self, tracer: Any) -> None:
        self.tracer = tracer

    def hook(self, jobs: Sequence[Job]) -> Sequence[Job]:
        from opentelemetry import propagate
        from opentelemetry.trace import SpanKind

        out = []
        for job in jobs:
            with self.tracer.start_as_current_span(
                f"send {job.task}", kind=SpanKind.PRODUCER, attributes=_attributes(job, "send")
            ):
                carrier: dict[str, str] = {}
                propagate.inject(carrier)
            kept = tuple((k, v) for k, v in job.headers if k not in _CARRIED)
            out.append(msgspec.structs.replace(job, headers=kept + tuple(sorted(carrier.items()))))
        return out


class _Consumer(JobHook):
    def __init__(self, tracer: Any) -> None:
        self.tracer = tracer

    @contextlib.contextmanager
    def _span(self, job: Job, attempt: int) -> Iterator[None]:
        from opentelemetry import propagate
        from opentelemetry.trace import SpanKind

        parent = propagate.extract(dict(job.headers))
        attributes = {**_attributes(job, "process"), "pigeon.attempt": attempt}
        with self.tracer.start_as_current_span(
            f"run {job.task}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            record_exception=False,  # the worker turns exceptions into outcomes: on_failure records them
            set_status_on_exception=False,
        ):
            yield

    def around(self, job: Job, attempt: int) -> contextlib.AbstractContextManager[Any]:
        return self._span(job, attempt)

    def on_failure(self, job: Job, attempt: int, error: BaseException | None) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import Status, StatusCode

        span = trace.get_current_span()
        if error is not None:
            span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}" if error else "failed"))
