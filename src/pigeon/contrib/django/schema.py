"""pigeon's tables in the Django database, created by this app's migration.

The SQL is pigeon's own (``pigeon/brokers/sql``), applied as the brokers do:
SQLite tracks its version in ``PRAGMA user_version``, PostgreSQL in
``<namespace>.schema_version`` under an advisory lock. Run on the schema
editor's connection, test databases get the tables too.
"""

from __future__ import annotations

from typing import Any

from django.db.backends.base.schema import BaseDatabaseSchemaEditor

from pigeon.brokers.sql import migrations
from pigeon.contrib.django.conf import backend_configs


def _namespaces(alias: str) -> list[str]:
    """The PostgreSQL schemas the pigeon backends kept in database ``alias`` use."""
    return sorted({c.namespace for c in backend_configs() if c.in_django_db and c.database == alias})


def create(apps: Any, schema_editor: BaseDatabaseSchemaEditor) -> None:
    conn = schema_editor.connection
    namespaces = _namespaces(conn.alias)
    if not namespaces:
        return
    if conn.vendor == "sqlite":
        from pigeon.brokers.sqlite import _migrate  # the broker's own migration code

        conn.ensure_connection()
        _migrate(conn.connection)
    elif conn.vendor == "postgresql":
        with conn.cursor() as cur:
            for ns in namespaces:
                _migrate_postgres(cur, ns)


def _migrate_postgres(cur: Any, ns: str) -> None:
    """What ``PostgresBroker.migrate()`` does, on Django's cursor and in its transaction."""
    cur.execute("SELECT pg_advisory_xact_lock(hashtext('pigeon.migrate:' || %s))", [ns])
    cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{ns}"')
    cur.execute(
        f'CREATE TABLE IF NOT EXISTS "{ns}".schema_version (version integer PRIMARY KEY, '
        "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    cur.execute(f'SELECT version FROM "{ns}".schema_version')
    done = {v for (v,) in cur.fetchall()}
    for version, name, text in migrations("postgres"):
        if version not in done:
            cur.execute(text.replace("{ns}", ns))
            cur.execute(f'INSERT INTO "{ns}".schema_version (version, name) VALUES (%s, %s)', [version, name])


def drop(apps: Any, schema_editor: BaseDatabaseSchemaEditor) -> None:
    conn = schema_editor.connection
    namespaces = _namespaces(conn.alias)
    if not namespaces:
        return
    with conn.cursor() as cur:
        if conn.vendor == "sqlite":
            cur.execute("DROP TABLE IF EXISTS pigeon_jobs")
            cur.execute("DROP TABLE IF EXISTS pigeon_workers")
            cur.execute("PRAGMA user_version=0")
        elif conn.vendor == "postgresql":
            for ns in namespaces:
                cur.execute(f'DROP SCHEMA IF EXISTS "{ns}" CASCADE')
