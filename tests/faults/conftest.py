"""Fault scenarios: one run per broker they apply to, on a broker of the test's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import url_for


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.server),
        pytest.param("redis", marks=pytest.mark.server),
        pytest.param("amqp+sqlite", marks=pytest.mark.server),
    ]
)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return url_for(request.param, tmp_path)
