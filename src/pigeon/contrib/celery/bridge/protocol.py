"""Celery's message protocol 2 as kombu's transports carry it: parsed, never unpickled.

A message is a JSON envelope (``body``, ``content-type``, ``headers``,
``properties``); with ``content-type: application/json`` its body (base64 on
Redis) is ``[args, kwargs, embed]``, ``embed`` holding the chain still to run.
Anything else (pickle, yaml, protocol 1) is rejected with a reason and left
undecoded.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

JSON = "application/json"


class Rejected(Exception):
    """A message the bridge will not turn into a job; ``str()`` says why."""


@dataclass(frozen=True)
class CeleryMessage:
    """One task message, decoded."""

    id: str
    task: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    eta: float | None = None
    expires: float | None = None
    chain: tuple[dict[str, Any], ...] = ()
    """Steps still to run after this one, as Celery keeps them: the next one last."""
    group: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def parse_envelope(raw: bytes) -> tuple[dict[str, Any], bytes]:
    """The envelope and the body's bytes of one kombu message.

    Raises:
        Rejected: not a kombu JSON envelope, or a body that is not JSON.
    """
    try:
        envelope = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise Rejected(f"not a kombu message (not JSON): {exc}") from None
    if not isinstance(envelope, dict) or "body" not in envelope:
        raise Rejected("not a kombu message (no body)")
    content_type = envelope.get("content-type")
    if content_type != JSON:
        raise Rejected(
            f"content-type {content_type!r}: only JSON messages are bridged (pickle is never "
            "deserialized); send with task_serializer='json'"
        )
    body = envelope["body"]
    encoding = (envelope.get("properties") or {}).get("body_encoding")
    if encoding == "base64":
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, TypeError, ValueError) as exc:
            raise Rejected(f"body is not base64: {exc}") from None
    elif isinstance(body, str):
        data = body.encode()
    else:
        data = msgspec.json.encode(body)
    return envelope, data


def parse_message(raw: bytes) -> CeleryMessage:
    """A protocol-2 JSON task message from its raw kombu envelope.

    Raises:
        Rejected: see :func:`parse_envelope`; also protocol 1 and malformed bodies.
    """
    envelope, data = parse_envelope(raw)
    return parse_body(envelope.get("headers") or {}, data)


def parse_body(headers: dict[str, Any], data: bytes) -> CeleryMessage:
    """A message from protocol-2 headers and its JSON body (as RabbitMQ delivers them)."""
    if "task" not in headers or "id" not in headers:
        raise Rejected("not a protocol-2 task message (no task/id headers); Celery 4+ sends protocol 2")
    try:
        body = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise Rejected(f"body is not JSON: {exc}") from None
    if not (
        isinstance(body, list) and len(body) == 3 and isinstance(body[0], list) and isinstance(body[1], dict)
    ):
        raise Rejected("body is not [args, kwargs, embed]")
    embed = body[2] or {}
    if embed.get("chord"):
        raise Rejected(
            "chords are not bridged (their counter lives in Celery's result backend); "
            "send them from pigeon.contrib.celery once their tasks have moved"
        )
    if embed.get("callbacks") or embed.get("errbacks"):
        raise Rejected("link/link_error callbacks are not bridged; use a chain")
    return CeleryMessage(
        id=str(headers["id"]),
        task=str(headers["task"]),
        args=tuple(body[0]),
        kwargs=dict(body[1]),
        eta=_timestamp(headers.get("eta")),
        expires=_timestamp(headers.get("expires")),
        chain=tuple(embed.get("chain") or ()),
        group=headers.get("group"),
    )


def _timestamp(value: Any) -> float | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        raise Rejected(f"bad date {value!r} in the message headers") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def next_step(message: CeleryMessage, result: Any) -> CeleryMessage | None:
    """The chain's next step after ``message`` returned ``result`` (as a Celery worker sends it)."""
    if not message.chain:
        return None
    *rest, step = message.chain
    options = step.get("options") or {}
    args = tuple(step.get("args") or ())
    if not step.get("immutable"):
        args = (result, *args)
    return CeleryMessage(
        id=str(options.get("task_id")),
        task=str(step["task"]),
        args=args,
        kwargs=dict(step.get("kwargs") or {}),
        chain=tuple(rest),
    )
