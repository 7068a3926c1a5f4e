"""SQLite connections: WAL mode, a busy timeout, the tables made; one write transaction."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pigeon.brokers.sql import migrations
from pigeon.errors import ConfigurationError

T = TypeVar("T")
log = logging.getLogger("pigeon.sqlite")
_WAL_WAIT = 1.0  # seconds to wait for the lock that switching to WAL needs, once per file


def connect(path: str, busy_timeout: float, lock: threading.Lock) -> tuple[sqlite3.Connection, list[str]]:
    """A connection in WAL mode to the file, with its tables made; and the migrations applied."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout, check_same_thread=False)
    try:
        # Switching to WAL needs an exclusive lock and does not wait for one: do it only
        # when the file is not in WAL mode yet (once, ever), not while others hold it open.
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            _to_wal(db, path, min(busy_timeout, _WAL_WAIT))
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        # A schema already current needs no write: opening must not wait for the write lock,
        # which a Django transaction on the same file may hold until its request ends.
        if db.execute("PRAGMA user_version").fetchone()[0] == _latest():
            return db, []
        with lock:
            return db, write(db, migrate_connection)
    except BaseException:
        db.close()
        raise


def _to_wal(db: sqlite3.Connection, path: str, within: float) -> None:
    try:
        retry_busy(lambda: db.execute("PRAGMA journal_mode=WAL"), within)
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc):
            raise
        # Another connection holds the file (a Django transaction, say): work in its journal mode
        # now rather than wait for the transaction; the next connection switches it.
        log.warning("%s is in use: staying in its journal mode until a later connection makes it WAL", path)


def _latest() -> int:
    known = migrations("sqlite")
    return known[-1][0] if known else 0


def write(db: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """``fn(db)`` in one write transaction."""
    db.execute("BEGIN IMMEDIATE")
    try:
        out = fn(db)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return out


def retry_busy(fn: Callable[[], object], within: float) -> None:
    """Run ``fn``, retrying while SQLite answers "database is locked", for up to ``within`` s."""
    deadline = time.monotonic() + within
    pause = 0.005
    while True:
        try:
            fn()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(pause)  # on the broker's own thread, waiting for another process's lock
            pause = min(pause * 2, 0.2)


def migrate_connection(db: sqlite3.Connection) -> list[str]:
    """Create or upgrade pigeon's tables on a connection, in its current transaction.

    For frameworks that run schema changes themselves (Django migrations).
    Returns the migrations applied.
    """
    current = db.execute("PRAGMA user_version").fetchone()[0]
    known = migrations("sqlite")
    latest = _latest()
    if current > latest:
        raise ConfigurationError(
            f"the database schema is version {current}, newer than this pigeon knows ({latest}): "
            "upgrade pigeon"
        )
    applied = []
    for version, name, sql in known:
        if version > current:
            for statement in _statements(sql):
                db.execute(statement)
            db.execute(f"PRAGMA user_version={version}")
            applied.append(f"{version:04d}_{name}")
    return applied


def _statements(sql: str) -> list[str]:
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]
