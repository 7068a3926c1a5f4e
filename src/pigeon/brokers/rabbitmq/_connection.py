"""What both RabbitMQ brokers share: the server's version, where it is, and its errors in pigeon's words."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiormq

from pigeon.errors import BrokerConnectionError, BrokerError, ConfigurationError

CALL = 10.0
"""Seconds any one call to RabbitMQ may take: a stuck server is an error, not a hang."""
AGAIN = (0.0, 0.1, 0.3, 0.9)
"""Pauses before publishing again what did not land (see :func:`worth_again`)."""


def worth_again(exc: Exception) -> bool:
    """Whether a publish that failed with ``exc`` may land if sent again shortly.

    Nacked or returned (a quorum queue starting its leader, a queue being deleted), or
    caught by its channel closing: a robust channel reopens by itself, and failing the
    send for that would fail a job that only published its next step.
    """
    return isinstance(exc, (aiormq.exceptions.DeliveryError, aiormq.exceptions.ChannelInvalidStateError))


ALONE_OPTIONS = ("namespace", "queue_type", "prefetch", "delivery_limit")
"""RabbitMQ alone's URL parameters."""


def alone_options(url: str) -> dict[str, Any]:
    """RabbitMQ alone's keyword arguments from ``amqp://…?namespace=…&queue_type=…&prefetch=…&delivery_limit=…``.

    Raises:
        ConfigurationError: a bad parameter.
    """
    query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    namespace = query.get("namespace", "pigeon")
    if not re.fullmatch(r"[\w.-]+", namespace):
        raise ConfigurationError(f"{url!r}: namespace must be a plain word")
    queue_type = query.get("queue_type", "quorum")
    if queue_type not in ("quorum", "classic"):
        raise ConfigurationError(f"{url!r}: queue_type must be one of quorum, classic")
    options: dict[str, Any] = {"namespace": namespace, "queue_type": queue_type}
    for name, default, top in (("prefetch", 64, 65535), ("delivery_limit", 10, 1_000_000)):
        try:
            options[name] = int(query.get(name, str(default)))
        except ValueError:
            options[name] = 0
        if not 1 <= options[name] <= top:
            raise ConfigurationError(f"{url!r}: {name} must be a whole number from 1 to {top}")
    return options


def server_of(url: str) -> str:
    """RabbitMQ alone's URL without pigeon's parameters: what to connect to."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ALONE_OPTIONS]
    return urlunsplit(parts._replace(query=urlencode(query)))


def version_of(text: str) -> tuple[int, ...]:
    """The leading numbers of a version string: ``"3.10.7"`` → ``(3, 10, 7)``."""
    return tuple(int(n) for n in re.findall(r"\d+", text)[:3])


def check_server(
    properties: Any, place: str, queue_type: str, quorum_since: tuple[int, ...], why: str
) -> tuple[int, ...]:
    """The server's version, from its connection properties; refuse what cannot work.

    Args:
        properties: the server properties of the connection's handshake.
        place: the server, as :func:`where` gives it.
        queue_type: ``quorum`` or ``classic``.
        quorum_since: the oldest version whose quorum queues have what the broker uses.
        why: what that version brings, for the error.

    Raises:
        ConfigurationError: no publisher confirms, or quorum queues older than ``quorum_since``.
    """
    raw = properties.get("version", "0")
    version = version_of(raw.decode() if isinstance(raw, bytes) else str(raw))
    if not (properties.get("capabilities") or {}).get("publisher_confirms"):
        raise ConfigurationError(f"RabbitMQ ({place}) has no publisher confirms; pigeon needs them")
    if queue_type == "quorum" and version < quorum_since:
        since = ".".join(map(str, quorum_since))
        raise ConfigurationError(
            f"RabbitMQ {'.'.join(map(str, version))} ({place}): {why} need {since}+; "
            "upgrade, or add ?queue_type=classic to the URL"
        )
    return version


def where(server: str, namespace: str) -> str:
    """The server and namespace, for error messages (no password)."""
    parts = urlsplit(server)
    return f"{parts.hostname}:{parts.port or 5672}{parts.path or '/'}, namespace {namespace!r}"


@contextlib.contextmanager
def translated(place: str, refused: str) -> Iterator[None]:
    """Raise aiormq's and the socket's errors as pigeon's, naming ``place``.

    Args:
        place: the server, as :func:`where` gives it.
        refused: what to say after a refused declaration (how to resolve it).
    """
    try:
        yield
    except aiormq.exceptions.ChannelPreconditionFailed as exc:
        raise ConfigurationError(f"RabbitMQ ({place}) refused a declaration: {exc}. {refused}") from exc
    except TimeoutError as exc:
        raise BrokerConnectionError(f"RabbitMQ ({place}) did not answer within {CALL:.0f} s") from exc
    except (aiormq.exceptions.AMQPConnectionError, ConnectionError, OSError) as exc:
        raise BrokerConnectionError(f"RabbitMQ ({place}): {exc}") from exc
    except aiormq.exceptions.AMQPError as exc:
        raise BrokerError(f"RabbitMQ ({place}): {exc}") from exc
