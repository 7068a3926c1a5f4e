"""What both RabbitMQ brokers share: the server's version, where it is, and its errors in pigeon's words.

A URL may name several nodes of a cluster, ``amqp://user:pass@host1:5672,host2:5673/vhost``
(the comma-separated host list of libpq's and RabbitMQ's Java client's URLs): :func:`connect`
tries them in the order given and keeps the first that answers, and a lost connection
reconnects to the next one in turn (:class:`Failover`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aio_pika
import aiormq
from aio_pika.abc import AbstractRobustConnection
from aio_pika.connection import make_url

from pigeon.errors import BrokerConnectionError, BrokerError, ConfigurationError

CALL = 10.0
"""Seconds any one call to RabbitMQ may take: a stuck server is an error, not a hang."""
SLICE = 1000
"""Messages published before their confirms are awaited. Each publish waits for its confirm
within :data:`CALL`: 20,000 at once overran it on a loaded node (confirms came at about 600 a
second), so a big batch goes in slices, each confirmed before the next."""
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


def hosts_of(server: str) -> list[str]:
    """The one-host URLs of ``amqp://user:pass@host1:5672,host2:5673/vhost?…``, in the order given.

    Each keeps the user, the virtual host and the query. Checked before anything connects.

    Raises:
        ConfigurationError: an empty host in a list, or a port that is not a number from 1 to 65535.
    """
    parts = urlsplit(server)
    user, at, listed = parts.netloc.rpartition("@")
    items = listed.split(",")
    hosts = []
    for item in items:
        one = parts._replace(netloc=f"{user}{at}{item}")
        try:
            port = one.port
        except ValueError:
            port = 0
        if port == 0 or (len(items) > 1 and not one.hostname):
            shown = ", ".join(repr(i) for i in items)
            raise ConfigurationError(
                f"RabbitMQ URL: bad host {item!r} in {shown}; write host[:port] for each, "
                "separated by commas (amqp://user:pass@host1:5672,host2:5672/vhost)"
            )
        hosts.append(urlunsplit(one))
    return hosts


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
    nodes = [urlsplit(h) for h in hosts_of(server)]
    listed = ",".join(f"{n.hostname}:{n.port or 5672}" for n in nodes)
    return f"{listed}{nodes[0].path or '/'}, namespace {namespace!r}"


class Failover(aio_pika.RobustConnection):
    """aio-pika's robust connection, reconnecting to the next host of a list.

    aio-pika reconnects to the URL it was given; this one moves its URL to the next host
    whenever its connection closes or an attempt to open it fails (aio-pika calls
    ``_on_connection_close`` for both), so a node that stopped is left for the next one.

    Args:
        hosts: one-host URLs, as :func:`hosts_of` gives them.
        first: the index of the host to connect to first.
    """

    def __init__(self, hosts: Sequence[str], first: int, **kwargs: Any) -> None:
        self._hosts = [make_url(h) for h in hosts]
        self._at = first
        super().__init__(self._hosts[first], **kwargs)

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        if len(self._hosts) > 1 and not self._close_called:
            self._at = (self._at + 1) % len(self._hosts)
            self.url = self._hosts[self._at]
        await super()._on_connection_close(closing)


_UNANSWERED = (aiormq.exceptions.AMQPConnectionError, ConnectionError, OSError, TimeoutError)


async def connect(hosts: Sequence[str], name: str) -> tuple[AbstractRobustConnection, Any]:
    """A robust connection to the first of ``hosts`` that answers, tried in order, each within :data:`CALL`.

    Returns it with the server properties of its handshake (the server's version and capabilities).

    Args:
        hosts: one-host URLs, as :func:`hosts_of` gives them.
        name: the connection's name, shown by RabbitMQ.

    Raises:
        BrokerConnectionError: no host answered (the error names each one and why).
    """
    failures: list[str] = []
    for first, host in enumerate(hosts):
        connection = Failover(hosts, first, client_properties={"connection_name": name})
        try:
            async with asyncio.timeout(CALL):
                await connection.connect(timeout=CALL)
            if connection.transport is None:
                raise ConnectionError("the connection closed at once")
            return connection, connection.transport.connection.server_properties
        except _UNANSWERED as exc:
            await _quietly_closed(connection)
            if len(hosts) == 1:
                raise
            node = urlsplit(host)
            why = str(exc) or type(exc).__name__
            if isinstance(exc, TimeoutError):
                why = f"no answer within {CALL:.0f} s"
            failures.append(f"{node.hostname}:{node.port or 5672}: {why}")
        except BaseException:
            await _quietly_closed(connection)
            raise
    raise BrokerConnectionError(f"RabbitMQ: no host answered ({'; '.join(failures)})")


async def _quietly_closed(connection: AbstractRobustConnection) -> None:
    # Ends its reconnect loop, which would otherwise go on in the background.
    with contextlib.suppress(*_UNANSWERED, aiormq.exceptions.AMQPError):
        async with asyncio.timeout(CALL):
            await connection.close()


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
