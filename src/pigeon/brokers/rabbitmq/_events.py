"""Events on RabbitMQ alone: pigeon's topic patterns as AMQP topic binding keys.

A pattern's ``*`` is AMQP's ``*`` (one word) and ``**`` is ``#`` (any number of
words), except a trailing ``**`` after other segments: pigeon's ``nfc.**``
needs at least one segment after ``nfc`` while AMQP's ``nfc.#`` also matches
``nfc`` alone, so it becomes ``nfc.*.#``.
"""

from __future__ import annotations

from pigeon.errors import ConfigurationError
from pigeon.events import pattern_regex

_KEY_BYTES = 255
"""An AMQP binding key is a short string: at most 255 bytes of UTF-8."""


def binding_key(pattern: str) -> str:
    """The AMQP topic binding key that matches the topics ``pattern`` matches.

    Raises:
        ConfigurationError: the pattern is malformed, or too long for a binding key.
    """
    try:
        pattern_regex(pattern)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc
    words = ["#" if segment == "**" else segment for segment in pattern.split(".")]
    if len(words) > 1 and words[-1] == "#":
        words[-1:] = ["*", "#"]
    key = ".".join(words)
    if len(key.encode()) > _KEY_BYTES:
        raise ConfigurationError(
            f"topic pattern {pattern!r} is {len(key.encode())} bytes as an AMQP binding key; "
            f"RabbitMQ allows {_KEY_BYTES}: shorten it"
        )
    return key
