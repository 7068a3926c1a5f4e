"""PostgreSQL's schema: the statements of a migration run, for the broker and for Django.

:func:`migrate_connection` runs them on the caller's connection, in its
transaction (a Django migration); :meth:`PostgresBroker.migrate` on its own.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from pigeon.brokers.sql import migrations
from pigeon.errors import ConfigurationError


def check_not_newer(namespace: str, version: int) -> None:
    latest = migrations("postgres")[-1][0]
    if version > latest:
        raise ConfigurationError(
            f"the pigeon schema {namespace!r} is at version {version}, newer than this pigeon knows"
            f" ({latest}): upgrade pigeon"
        )


def check_current(namespace: str, version: int, where: str) -> None:
    """Refuse a schema behind or ahead of this pigeon's (ConfigurationError)."""
    latest = migrations("postgres")[-1][0]
    check_not_newer(namespace, version)
    if version < latest:
        raise ConfigurationError(
            f"the pigeon schema {namespace!r} on {where} is at version {version}, this pigeon"
            f" needs {latest}: run `pigeon migrate`"
        )


SCHEMA_EXISTS = "SELECT to_regclass(format('%%I.schema_version', %s::text)) IS NOT NULL"


def schema_version_query(namespace: str) -> sql.Composed:
    """The statement reading the namespace's schema version (once SCHEMA_EXISTS says it has one)."""
    return sql.SQL("SELECT coalesce(max(version), 0) FROM {}.schema_version").format(
        sql.Identifier(namespace)
    )


def schema_version(conn: psycopg.Connection[Any], namespace: str) -> int:
    """The namespace's schema version (0: none), on a synchronous connection."""
    row = conn.execute(SCHEMA_EXISTS, [namespace]).fetchone()
    if not (row and row[0]):
        return 0
    row = conn.execute(schema_version_query(namespace)).fetchone()
    return int(row[0]) if row else 0


class MigrationPlan:
    """The statements of a migration run, shared by the async broker and :func:`migrate_connection`."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        ns = sql.Identifier(namespace)
        self._versions = sql.SQL("{}.schema_version").format(ns)
        self._ns = ns
        self.select_done = sql.SQL("SELECT version FROM {}").format(self._versions)
        self.applied: list[str] = []

    def prepare(self) -> list[tuple[Any, list[Any] | None]]:
        return [
            ("SELECT pg_advisory_xact_lock(hashtext('pigeon.migrate:' || %s))", [self.namespace]),
            (sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(self._ns), None),
            (
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (version integer PRIMARY KEY, name text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                ).format(self._versions),
                None,
            ),
        ]

    def steps(self, done: set[int]) -> list[tuple[Any, list[Any] | None]]:
        check_not_newer(self.namespace, max(done, default=0))
        insert = sql.SQL("INSERT INTO {} (version, name) VALUES (%s, %s)").format(self._versions)
        out: list[tuple[Any, list[Any] | None]] = []
        for version, name, text in migrations("postgres"):
            if version not in done:
                out += [(text.replace("{ns}", self.namespace).encode(), None), (insert, [version, name])]
                self.applied.append(f"{version:04d}_{name}")
        return out


def migrate_connection(connection: psycopg.Connection[Any], namespace: str = "pigeon") -> list[str]:
    """Create or upgrade pigeon's schema with the caller's connection, in its transaction.

    For frameworks that run schema changes themselves (Django migrations).
    Returns the migrations applied.

    Raises:
        ConfigurationError: the schema is newer than this pigeon knows.
    """
    plan = MigrationPlan(namespace)
    cur = psycopg.Cursor(connection)  # server-side binding, whatever the connection's cursor factory
    for statement, params in plan.prepare():
        cur.execute(statement, params)
    cur.execute(plan.select_done)
    for statement, params in plan.steps({v for (v,) in cur.fetchall()}):
        cur.execute(statement, params)
    return plan.applied
