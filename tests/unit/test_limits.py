"""What cannot be sent is refused at send, as TypeError naming the limit; what can, a worker decodes."""

from __future__ import annotations

from typing import Any

import pytest

from pigeon import App, ConfigurationError, PayloadTooLarge, chain
from pigeon.limits import MAX_BYTES, MAX_DEPTH
from pigeon.testing import drain


def nested(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


@pytest.fixture
def app() -> Any:
    app = App("memory://")
    yield app
    app.close()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (float("nan"), "argument 'x' holds nan, which JSON cannot carry"),
        (float("inf"), "argument 'x' holds inf"),
        ({"deep": [1.0, float("-inf")]}, "argument 'x' holds -inf"),
        ("\ud800", "argument 'x' cannot be encoded: a string cannot be written as UTF-8"),
        (nested(MAX_DEPTH + 1), f"argument 'x' nests deeper than the limit of {MAX_DEPTH} levels"),
        (nested(1_000), "argument 'x' nests deeper than the limit"),
        (nested(50_000), "argument 'x' cannot be encoded: nested deeper than the limit"),
        (object(), "argument 'x' cannot be encoded: objects of type object"),
    ],
    ids=["nan", "inf", "inf inside", "surrogate", "too deep", "1000 deep", "50000 deep", "object"],
)
def test_unsendable_arguments_are_type_errors_naming_the_limit(app: App, value: Any, message: str) -> None:
    @app.task
    def untyped(x) -> None:  # type: ignore[no-untyped-def]  # no annotation: anything JSON goes
        pass

    with pytest.raises(TypeError) as info:
        untyped.send(value)
    assert message in str(info.value)
    with pytest.raises(TypeError):  # a workflow step checks the same
        untyped.s(value)
    assert drain(app) == 0  # nothing was stored


def test_an_event_payload_has_the_same_limits(app: App) -> None:
    with pytest.raises(TypeError, match="holds nan"):
        app.publish("t", {"x": float("nan")})
    with pytest.raises(TypeError, match="nests deeper than the limit"):
        app.publish("t", nested(MAX_DEPTH + 1))


def test_the_deepest_sendable_arguments_run_even_as_a_chain_step(app: App) -> None:
    @app.task
    def depth(x: Any, y: Any = None) -> int:
        n = 0
        while isinstance(x, tuple) and x:
            x, n = x[0], n + 1
        return n + 1

    deepest = nested(MAX_DEPTH)
    direct = depth.send(deepest)
    # The envelope carries a chain's next step, arguments included, a few levels further in.
    flow = chain(depth.s(1), depth.s(deepest)).send()
    drain(app)
    assert direct.result(timeout=1) == MAX_DEPTH
    assert flow.result(timeout=1) == MAX_DEPTH


def test_arguments_over_max_payload_are_a_type_error_and_nothing_is_stored(app: App) -> None:
    @app.task
    def untyped(x) -> None:  # type: ignore[no-untyped-def]
        pass

    with pytest.raises(PayloadTooLarge, match=f"over the limit of {MAX_BYTES}") as info:
        untyped.send("x" * MAX_BYTES)
    assert isinstance(info.value, TypeError)
    small = App("memory://", max_payload=100)
    small.tasks.update(app.tasks)
    with pytest.raises(TypeError, match="over the limit of 100"):
        small.client.enqueue([untyped.job_with_payload(b'{"x":"' + b"y" * 100 + b'"}')])
    assert drain(app) == 0
    small.close()


def test_max_payload_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="max_payload must be at least 1 byte"):
        App("memory://", max_payload=0)
