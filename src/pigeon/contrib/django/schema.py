"""pigeon's tables in the Django database, created by this app's migration.

The SQL is pigeon's own (``pigeon/brokers/sql``), applied as the brokers do:
SQLite tracks its version in ``PRAGMA user_version``, PostgreSQL in
``<namespace>.schema_version`` under an advisory lock. Run on the schema
editor's connection, test databases get the tables too.
"""

from __future__ import annotations

from typing import Any

from django.db.backends.base.schema import BaseDatabaseSchemaEditor

from pigeon.contrib.django.conf import backend_configs


def _namespaces(alias: str) -> list[str]:
    """The PostgreSQL schemas the pigeon backends kept in database ``alias`` use."""
    return sorted({c.namespace for c in backend_configs() if c.record_in_django_db and c.database == alias})


def create(apps: Any, schema_editor: BaseDatabaseSchemaEditor) -> None:
    conn = schema_editor.connection
    namespaces = _namespaces(conn.alias)
    if not namespaces:
        return
    conn.ensure_connection()
    if conn.vendor == "sqlite":
        from pigeon.brokers.sqlite_schema import migrate_connection

        migrate_connection(conn.connection)
    elif conn.vendor == "postgresql":
        from pigeon.brokers.postgres_schema import migrate_connection as migrate_postgres

        for ns in namespaces:
            migrate_postgres(conn.connection, ns)


def drop(apps: Any, schema_editor: BaseDatabaseSchemaEditor) -> None:
    conn = schema_editor.connection
    namespaces = _namespaces(conn.alias)
    if not namespaces:
        return
    with conn.cursor() as cur:
        if conn.vendor == "sqlite":
            cur.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'pigeon\\_%' ESCAPE '\\'"
            )
            for (table,) in cur.fetchall():
                cur.execute(f'DROP TABLE IF EXISTS "{table}"')
            cur.execute("PRAGMA user_version=0")
        elif conn.vendor == "postgresql":
            for ns in namespaces:
                cur.execute(f'DROP SCHEMA IF EXISTS "{ns}" CASCADE')
