"""What the CLI's end-to-end tests share: the environment a user's shell would have, the app."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pigeon import App

ROOT = Path(__file__).parents[2]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PIGEON_URL": f"sqlite:///{tmp_path}/jobs.db",
        "PYTHONPATH": str(ROOT),
        "PIGEON_POLL": "0.05",
        "PIGEON_HEARTBEAT": "0.2",
        "PIGEON_DEAD_AFTER": "1",
        "PIGEON_RECOVER_EVERY": "0.3",
    }


@pytest.fixture
def app(env: dict[str, str]) -> Iterator[App]:
    """The jobs app on this test's database, its schema created (inspection verbs never create it)."""
    from tests.acceptance import jobs_app

    jobs_app.app.url = env["PIGEON_URL"]
    jobs_app.app.migrate()
    yield jobs_app.app
    jobs_app.app.close()
