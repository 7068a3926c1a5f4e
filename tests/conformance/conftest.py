"""The app every end-to-end conformance test runs on: one per broker, its schema created."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from pigeon import App
from tests.conftest import open_broker


@pytest.fixture
async def app(broker_url: str) -> AsyncIterator[App]:
    migrated = await open_broker(broker_url, {})  # creates the schema where a broker needs migrating
    await migrated.__aexit__(None, None, None)
    app = App(broker_url)
    yield app
    await app.aclose()
    await asyncio.to_thread(app.close)  # what synchronous calls opened on the app's own loop
