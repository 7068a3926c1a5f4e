"""What pyproject promises: extras the hints name, a description that is true, a license file."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from pigeon.brokers.base import _BUILTIN, broker_class
from pigeon.errors import ConfigurationError

ROOT = Path(__file__).parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS: dict[str, list[str]] = PROJECT["optional-dependencies"]
DRIVERS = {"pigeon.brokers.postgres": "psycopg", "pigeon.brokers.redis": "redis"}


@pytest.mark.parametrize("scheme", sorted(s for s, t in _BUILTIN.items() if t.partition(":")[0] in DRIVERS))
def test_a_missing_driver_names_an_extra_that_exists(scheme: str, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _BUILTIN[scheme].partition(":")[0]
    monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.setitem(sys.modules, DRIVERS[module], None)  # as if it were not installed
    with pytest.raises(ConfigurationError, match=r"pip install 'pigeon\[(\w+)\]'") as info:
        broker_class(f"{scheme}://localhost/x")
    extra = str(info.value).split("pigeon[", 1)[1].split("]", 1)[0]
    assert extra in EXTRAS, f"{scheme}: the hint names pigeon[{extra}], which pyproject does not define"


def test_the_extras_a_user_would_type_exist_and_all_installs_every_broker() -> None:
    assert EXTRAS["postgresql"] == EXTRAS["postgres"]
    every = {dep for name in ("postgres", "redis") for dep in EXTRAS[name]}
    assert every <= set(EXTRAS["all"])


SCHEMES = [("RabbitMQ", {"amqp", "amqps", "rabbitmq"}), ("Kafka", {"kafka"}), ("SQS", {"sqs"})]


@pytest.mark.parametrize(("broker", "schemes"), SCHEMES)
def test_the_description_names_only_brokers_that_ship(broker: str, schemes: set[str]) -> None:
    if not schemes & set(_BUILTIN):
        assert broker not in PROJECT["description"]


def test_the_license_file_matches_pyproject() -> None:
    assert PROJECT["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Permission is hereby granted, free of charge" in text


def test_the_changelog_has_an_unreleased_section() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in text and "keepachangelog.com" in text
