"""Traces across processes: a request here sends jobs; a worker process runs them in the same trace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from pigeon import App, JobState
from pigeon.otel import instrument
from tests.acceptance.test_cli import ROOT


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[tuple[App, Any, InMemorySpanExporter]]:
    from tests.acceptance import otel_app

    otel_app.app.url = f"sqlite:///{tmp_path}/jobs.db"
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrument(otel_app.app, tracer_provider=provider)
    yield otel_app.app, provider.get_tracer("web"), exporter
    otel_app.app.enqueue_hooks.clear()
    otel_app.app.job_hooks.clear()
    otel_app.app.close()


def hexid(value: int) -> str:
    return f"0x{value:032x}" if value > 2**64 else f"0x{value:016x}"


def test_a_request_trace_continues_into_the_worker_and_the_events_it_publishes(
    traced: tuple[App, Any, InMemorySpanExporter], tmp_path: Path
) -> None:
    app, web, exporter = traced
    from tests.acceptance.otel_app import checkout, explode

    with web.start_as_current_span("POST /checkout") as request:
        ok = checkout.send(42)  # synchronous: through pigeon's own loop thread, context kept
        bad = explode.send(7)
    sent = {s.name: s for s in exporter.get_finished_spans()}
    send = sent["send tests.acceptance.otel_app.checkout"]
    assert send.kind is SpanKind.PRODUCER
    assert send.parent is not None and send.parent.span_id == request.get_span_context().span_id
    assert send.attributes is not None
    assert send.attributes["messaging.system"] == "pigeon"
    assert send.attributes["messaging.operation.type"] == "send"
    assert send.attributes["messaging.destination.name"] == "default"
    assert send.attributes["messaging.message.id"] == ok.id
    assert dict(ok.record().job.headers)["traceparent"].split("-")[2] == f"{send.context.span_id:016x}"

    spans_file = tmp_path / "spans.jsonl"
    env = {**os.environ, "PIGEON_URL": app.url, "PYTHONPATH": str(ROOT), "PIGEON_TEST_SPANS": str(spans_file)}
    worker = [sys.executable, "-m", "pigeon", "worker", "tests.acceptance.otel_app:app", "--burst"]
    subprocess.run(worker, env=env, cwd=ROOT, check=True, timeout=120, capture_output=True)
    assert ok.status is JobState.SUCCEEDED and bad.status is JobState.FAILED

    spans = [json.loads(line) for line in spans_file.read_text().splitlines()]
    by_name = {s["name"]: s for s in spans}
    trace_id = hexid(request.get_span_context().trace_id)
    run = by_name["run tests.acceptance.otel_app.checkout"]
    assert run["kind"] == "SpanKind.CONSUMER"
    assert run["context"]["trace_id"] == trace_id
    assert run["parent_id"] == hexid(send.context.span_id)
    assert run["attributes"]["messaging.operation.type"] == "process"
    assert run["attributes"]["messaging.message.id"] == ok.id
    assert run["attributes"]["pigeon.attempt"] == 1
    # The event the job published: sent inside the run span, handled in the same trace.
    publish = by_name["send tests.acceptance.otel_app.email@orders.paid"]
    assert publish["parent_id"] == run["context"]["span_id"]
    handled = by_name["run tests.acceptance.otel_app.email@orders.paid"]
    assert (
        handled["context"]["trace_id"] == trace_id and handled["parent_id"] == publish["context"]["span_id"]
    )
    # A failed attempt: its exception recorded, the span marked as an error.
    failed = by_name["run tests.acceptance.otel_app.explode"]
    assert failed["context"]["trace_id"] == trace_id
    assert failed["status"]["status_code"] == StatusCode.ERROR.name
    assert failed["events"][0]["name"] == "exception"
    assert "order 7 exploded" in failed["events"][0]["attributes"]["exception.message"]
