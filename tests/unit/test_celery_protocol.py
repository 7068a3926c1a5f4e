"""Celery's protocol-2 messages as the bridge reads them, built by the real kombu/Celery."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from pigeon.contrib.celery.bridge.protocol import CeleryMessage, Rejected, next_step, parse_message


def envelope(body: Any, headers: dict[str, Any], content_type: str = "application/json") -> bytes:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return json.dumps(
        {
            "body": base64.b64encode(data).decode(),
            "content-encoding": "utf-8",
            "content-type": content_type,
            "headers": headers,
            "properties": {"body_encoding": "base64", "delivery_tag": "x"},
        }
    ).encode()


def test_a_task_message_with_eta_expires_and_chain() -> None:
    chain = [{"task": "t.last", "args": [], "kwargs": {}, "options": {"task_id": "id-3"}, "immutable": True}]
    raw = envelope(
        [[1, 2], {"k": "v"}, {"chain": chain, "callbacks": None, "errbacks": None, "chord": None}],
        {"task": "t.add", "id": "id-1", "eta": "2030-01-01T00:00:00+00:00", "expires": "2030-01-02T00:00:00"},
    )
    m = parse_message(raw)
    assert (m.id, m.task, m.args, m.kwargs) == ("id-1", "t.add", (1, 2), {"k": "v"})
    assert m.eta == 1893456000.0 and m.expires == 1893456000.0 + 86400  # a naive date is UTC
    step = next_step(m, 3)
    assert step is not None and (step.id, step.task, step.args) == ("id-3", "t.last", ())  # immutable


def test_chain_steps_take_the_result_first_and_run_in_celery_order() -> None:
    steps = (
        {"task": "t.third", "args": [], "kwargs": {}, "options": {"task_id": "c"}},
        {"task": "t.second", "args": [10], "kwargs": {}, "options": {"task_id": "b"}},
    )
    m = CeleryMessage("a", "t.first", (), {}, chain=steps)
    second = next_step(m, 5)
    assert second is not None and (second.id, second.args, len(second.chain)) == ("b", (5, 10), 1)
    third = next_step(second, 50)
    assert third is not None and (third.id, third.args, third.chain) == ("c", (50,), ())
    assert next_step(third, 0) is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (envelope(b"\x80\x04K\x01.", {"task": "t", "id": "1"}, "application/x-python-serialize"), "pickle"),
        (envelope([[1], {}, {}], {}), "protocol-2"),
        (envelope([[1], {}, {"chord": {"task": "cb"}}], {"task": "t", "id": "1"}), "chords are not bridged"),
        (envelope([[1], {}, {"callbacks": [{"task": "cb"}]}], {"task": "t", "id": "1"}), "use a chain"),
        (envelope({"not": "a list"}, {"task": "t", "id": "1"}), r"\[args, kwargs, embed\]"),
        (b"not json", "not a kombu message"),
    ],
)
def test_what_is_not_bridged_is_rejected_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(Rejected, match=reason):
        parse_message(raw)


def test_the_real_celery_message_parses() -> None:
    celery = pytest.importorskip("celery")
    app = celery.Celery("p", broker="memory://")
    app.conf.task_serializer = "json"
    sent: list[bytes] = []

    with app.connection_for_write() as conn:
        channel = conn.default_channel
        original = channel._put

        def capture(queue: str, message: dict[str, Any], **kwargs: Any) -> None:
            sent.append(json.dumps(message).encode())
            original(queue, message, **kwargs)

        channel._put = capture
        app.send_task("p.add", (2, 3), kwargs={"z": 1}, countdown=60, connection=conn)
    m = parse_message(sent[0])
    assert (m.task, m.args, m.kwargs) == ("p.add", (2, 3), {"z": 1}) and m.eta is not None
