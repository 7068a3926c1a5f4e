"""Enqueue inside the caller's own transaction (the outbox pattern), or a clear refusal."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from pigeon import App, JobState, UnsupportedFeature


@contextmanager
def own_connection(url: str) -> Iterator[Any]:
    """The application's own connection to the broker's database, as an ORM would hold it."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        conn: Any = sqlite3.connect(parts.path[1:])
    else:
        import psycopg

        query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "namespace"])
        conn = psycopg.connect(urlunsplit(parts._replace(query=query)))
    try:
        yield conn
    finally:
        conn.close()


async def test_job_is_part_of_the_callers_transaction(app: App, broker_url: str) -> None:
    @app.task
    def charge(order: int) -> int:
        return order

    broker = await app.connection()
    if not broker.capabilities.transactional_enqueue:
        with pytest.raises(UnsupportedFeature, match="cannot enqueue inside your database transaction"):
            charge.options(connection=object()).send(1)
        return

    with own_connection(broker_url) as conn:
        rolled_back = charge.options(connection=conn).send(1)
        # Not committed: invisible. (A claim would wait here on SQLite, whose one writer is the caller.)
        assert await broker.get(rolled_back.id) is None
        assert await broker.list_jobs() == []
        conn.rollback()
        assert await broker.get(rolled_back.id) is None  # rolled back: gone

        committed = charge.options(connection=conn).send(2)
        assert await broker.get(committed.id) is None
        conn.commit()
        rec = await broker.get(committed.id)
        assert rec is not None and rec.state is JobState.QUEUED
        (claim,) = await broker.claim("w", ("default",), 10, 30)
        assert claim.job.id == committed.id
