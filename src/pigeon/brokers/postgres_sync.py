"""PostgreSQL connections: how the synchronous producer connects, how the pool checks an idle one."""

from __future__ import annotations

import selectors
import time
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from pigeon.brokers.postgres_schema import check_current, schema_version


def connect_producer(
    conninfo: str, kwargs: dict[str, Any], namespace: str, where: str, patience: float
) -> psycopg.Connection[Any]:
    """A blocking connection whose schema is current, trying again for up to ``patience`` s.

    The first connection is made with no patience: an unreachable server at the first
    send is an error at once, as opening the broker is. Once connected, a server that
    restarts is waited for, as the async pool waits for a connection (its timeout),
    so a send during a restart is late rather than lost.

    Raises:
        ConfigurationError: the schema is missing, behind or newer.
        psycopg.OperationalError: no connection within ``patience``.
    """
    deadline = time.monotonic() + patience
    pause = 0.05
    while True:
        try:
            conn = psycopg.connect(conninfo, autocommit=True, **kwargs)
            break
        except psycopg.OperationalError:
            if time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)  # back-off between connection attempts, on the sending thread
            pause = min(pause * 2, 1.0)
    try:
        check_current(namespace, schema_version(conn, namespace), where)
    except BaseException:
        conn.close()
        raise
    return conn


async def check_idle(conn: psycopg.AsyncConnection[Any]) -> None:
    """Refuse a pooled connection the server has closed (a restart, pg_terminate_backend).

    An idle connection's socket only turns readable when the server says goodbye,
    so the round trip of a real check is paid only then.
    """
    with selectors.DefaultSelector() as sel:  # not select.select: descriptors may exceed 1024
        sel.register(conn.fileno(), selectors.EVENT_READ)
        readable = sel.select(0)
    if readable:
        await AsyncConnectionPool.check_connection(conn)
