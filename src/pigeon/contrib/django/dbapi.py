"""Writing jobs with Django's own database connection, inside its transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from pigeon.app import App
from pigeon.job import Job


def raw_connection(conn: BaseDatabaseWrapper) -> Any:
    """The DB-API connection under a Django connection, as pigeon's brokers take it."""
    conn.ensure_connection()
    return conn.connection


def enqueue_in_django(app: App, conn: BaseDatabaseWrapper, jobs: Sequence[Job]) -> list[str]:
    """Write jobs in the Django connection's current transaction; wake local workers on commit.

    Raises:
        BrokerError: the insert failed (the transaction is then aborted, as any failed query).
    """
    ids = [h.id for h in app.enqueue_in(raw_connection(conn), jobs)]
    transaction.on_commit(app.notifier.notify, using=conn.alias)
    return ids
