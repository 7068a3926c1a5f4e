"""Fault scenarios: one run per broker they apply to, on a broker of the test's own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import delete_rabbitmq_queues, url_for


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.server),
        pytest.param("redis", marks=pytest.mark.server),
        pytest.param("amqp+sqlite", marks=pytest.mark.server),
    ]
)
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    url = url_for(request.param, tmp_path)
    yield url
    await delete_rabbitmq_queues(url, queues=["default"])
