"""pigeon's topic patterns as AMQP topic binding keys: the same topics match, or a clear error."""

from __future__ import annotations

import re

import pytest

from pigeon.brokers.rabbitmq._events import binding_key
from pigeon.errors import ConfigurationError
from pigeon.events import pattern_regex

TOPICS = ["nfc", "nfc.tag_read", "nfc.tag_read.late", "door.opened", "a.nfc.x", "x-y.nfc"]
PATTERNS = ["nfc", "nfc.*", "nfc.**", "**", "**.nfc", "*.nfc", "a.**.x", "**.nfc.**", "nfc.*.late"]


def amqp_matches(key: str, topic: str) -> bool:
    """RabbitMQ's topic matching, as its documentation states it: ``*`` one word, ``#`` zero or more."""
    words = [r"[^.]+" if w == "*" else "#" if w == "#" else re.escape(w) for w in key.split(".")]
    regex = ""
    for i, word in enumerate(words):
        if word == "#":
            regex += r"(?:[^.]+(?:\.[^.]+)*)?" if i == 0 else r"(?:\.[^.]+)*"
        else:
            regex += word if i == 0 else r"\." + word
    regex = regex.replace(r"(?:[^.]+(?:\.[^.]+)*)?\.", r"(?:[^.]+\.)*")
    return re.fullmatch(regex, topic) is not None


@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_binding_key_matches_what_its_pattern_matches(pattern: str) -> None:
    key = binding_key(pattern)
    for topic in TOPICS:
        assert amqp_matches(key, topic) == bool(pattern_regex(pattern).match(topic)), (pattern, key, topic)


def test_the_keys_are_spelled_as_rabbitmq_expects() -> None:
    assert binding_key("nfc.*") == "nfc.*"
    assert binding_key("**") == "#"
    assert binding_key("**.nfc") == "#.nfc"
    assert binding_key("nfc.**") == "nfc.*.#"


def test_a_pattern_too_long_for_a_binding_key_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="255"):
        binding_key(".".join(["segment"] * 40))


def test_a_malformed_pattern_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="bad topic pattern"):
        binding_key("nfc.#")
