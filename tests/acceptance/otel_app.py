"""The app the tracing test runs in a worker process, with the SDK's in-memory exporter.

With PIGEON_TEST_SPANS set, this process traces into an in-memory exporter and
writes the finished spans to that file as JSON lines when it exits.
"""

from __future__ import annotations

import atexit
import json
import os

from pigeon import App, Fixed

app = App(os.environ.get("PIGEON_URL", "sqlite:///otel.db"))


@app.task
def checkout(order_id: int) -> int:
    app.publish("orders.paid", {"order_id": order_id})  # the handler's trace is this one
    return order_id


@app.task(max_attempts=1, backoff=Fixed(0))
def explode(order_id: int) -> None:
    raise ValueError(f"order {order_id} exploded")


@app.on("orders.paid")
def email(event: dict[str, int]) -> None:
    del event


def _trace_to_file(path: str) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from pigeon.otel import instrument

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrument(app, tracer_provider=provider)

    def dump() -> None:
        with open(path, "w") as f:
            for span in exporter.get_finished_spans():
                f.write(json.dumps(json.loads(span.to_json())) + "\n")

    atexit.register(dump)


if os.environ.get("PIGEON_TEST_SPANS"):
    _trace_to_file(os.environ["PIGEON_TEST_SPANS"])
