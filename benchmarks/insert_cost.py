"""What one single-row insert costs the PostgreSQL server, table by table and index by index.

    .venv/bin/python -m benchmarks.insert_cost URL [--rows 500] [--rounds 10] [--only RE] [--pgqueuer PY]

One connection, autocommit (each insert its own transaction, as a lone ``send()``), times
``--rows`` inserts per variant by its backend's CPU (``/proc/<pid>/schedstat``: the server
must run on this machine). Variants, alternated over ``--rounds`` rounds (each table emptied
first), the least and the median round printed in µs per statement (on a shared machine
the least is the steadier):

- ``SELECT 1`` and a one-column insert into a table without indexes: the floor of a
  statement and of a write transaction (its commit record, its transaction id).
- pigeon's ``enqueue_one`` statement and a bare insert of the same row into ``jobs``.
- a scratch copy of ``jobs`` (``LIKE … INCLUDING ALL``) without each of its indexes in turn,
  then without any.
- with ``--pgqueuer`` (a Python with pgqueuer and asyncpg: ``benchmarks/.envs/pgqueuer/bin/python``,
  made by ``benchmarks.peers.envs.ensure("pgqueuer")``): pgqueuer's own ``Queries.enqueue("noop",
  None)`` on its own asyncpg connection (after its own install, in the ``public`` schema), and
  a bare insert of one row into that table from this connection.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from pigeon.brokers.postgres_schema import migrate_connection
from pigeon.brokers.sql import queries
from pigeon.job import new_id

NS = "insert_cost"
ENVELOPE = b'{"id":"0","task":"bench.noop","queue":"default","args":[],"kwargs":{}}' * 2


def backend_cpu(pid: int) -> float:
    """A backend's CPU seconds: the scheduler's own count (ns), not /proc/<pid>/stat's sampled ticks."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def job_row() -> dict[str, Any]:
    now = time.time()
    return {
        "id": new_id(),
        "task": "bench.noop",
        "queue": "default",
        "priority": 0,
        "state": "queued",
        "envelope": ENVELOPE,
        "max_attempts": 3,
        "unique_key": None,
        "run_at": now,
        "enqueued_at": now,
        "limit_key": None,
        "limit_n": 0,
        "channel": f"{NS}.jobs",
    }


# Run by pgqueuer's Python: its install if missing, then argv[2] enqueues of one job each, one
# connection; prints µs per enqueue: wall, its own CPU, its backend's CPU.
PGQUEUER = """
import asyncio, sys, time
import asyncpg
from pgqueuer import AsyncpgDriver, Queries

async def main(url, n):
    conn = await asyncpg.connect(url)
    q = Queries(AsyncpgDriver(conn))
    if not await q.schema_is_installed():
        await q.install()
    await conn.execute("TRUNCATE pgqueuer, pgqueuer_log")
    pid = await conn.fetchval("SELECT pg_backend_pid()")
    def cpu():
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9
    for _ in range(10):
        await q.enqueue("noop", None)
    before, mine, wall = cpu(), time.process_time(), time.perf_counter()
    for _ in range(n):
        await q.enqueue("noop", None)
    wall, mine = time.perf_counter() - wall, time.process_time() - mine
    print(f"{wall * 1e6 / n} {mine * 1e6 / n} {(cpu() - before) * 1e6 / n}")
    await conn.close()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""

COLUMNS = ", ".join(
    [
        "id",
        "task",
        "queue",
        "priority",
        "state",
        "envelope",
        "max_attempts",
        "unique_key",
        "run_at",
        "enqueued_at",
        "limit_key",
        "limit_n",
    ]
)


def insert_into(
    table: sql.Composable, tail: str = "", *, prepare: bool | None = None
) -> Callable[[psycopg.Connection[Any]], None]:
    values = ", ".join(f"%({c.strip()})s" for c in COLUMNS.split(","))
    stmt = sql.SQL(f"INSERT INTO {{}} ({COLUMNS}) VALUES ({values}){tail}").format(table)

    def run(conn: psycopg.Connection[Any]) -> None:
        conn.execute(stmt, job_row(), prepare=prepare)

    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--only", metavar="REGEX", help="the variants whose label matches")
    parser.add_argument("--pgqueuer", metavar="PYTHON", help="a Python with pgqueuer and asyncpg")
    args = parser.parse_args()
    # As pigeon connects: nothing prepared unless a variant asks (psycopg prepares after 5 runs).
    conn = psycopg.connect(args.url, autocommit=True, prepare_threshold=None)
    pid = conn.info.backend_pid
    ns = sql.Identifier(NS)
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(ns))
    with conn.transaction():
        migrate_connection(conn, NS)
    conn.execute(sql.SQL("CREATE TABLE {}.floor (x integer)").format(ns))
    jobs = sql.SQL("{}.jobs").format(ns)
    indexes = [
        r[0]
        for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = 'jobs'"
            " ORDER BY indexname",
            [NS],
        ).fetchall()
    ]
    enqueue_one = queries("postgres")["enqueue_one"].replace("{ns}", NS)

    variants: dict[str, tuple[sql.Composable | None, Callable[[psycopg.Connection[Any]], None]]] = {
        "SELECT 1": (None, lambda c: c.execute("SELECT 1")),
        "insert one integer, no index": (
            sql.SQL("{}.floor").format(ns),
            lambda c: c.execute(sql.SQL("INSERT INTO {}.floor VALUES (1)").format(ns)),
        ),
        "jobs: enqueue_one (insert + RETURNING + pg_notify)": (
            jobs,
            lambda c: c.execute(enqueue_one, job_row()),
        ),
        "jobs: bare insert": (jobs, insert_into(jobs)),
        "jobs: insert ON CONFLICT DO NOTHING RETURNING id": (
            jobs,
            insert_into(jobs, " ON CONFLICT DO NOTHING RETURNING id"),
        ),
        "jobs: enqueue_one without its pg_notify": (
            jobs,
            lambda c: c.execute(enqueue_one.replace("pg_notify(%(channel)s, queue)", "1"), job_row()),
        ),
        "jobs: insert RETURNING id, pg_notify(…) (no CTE)": (
            jobs,
            insert_into(
                jobs,
                " ON CONFLICT DO NOTHING RETURNING id,"
                " CASE WHEN state = 'queued' THEN pg_notify(%(channel)s, queue) END",
            ),
        ),
        "jobs: enqueue_one, prepared": (jobs, lambda c: c.execute(enqueue_one, job_row(), prepare=True)),
        "jobs: bare insert, prepared": (jobs, insert_into(jobs, prepare=True)),
        "SELECT pg_notify(…) alone": (
            None,
            lambda c: c.execute("SELECT pg_notify(%(channel)s, 'default')", job_row()),
        ),
    }
    # A scratch copy per index left out, and one with none (nor its primary key).
    for name in [*indexes, "*"]:
        copy = sql.Identifier(f"without_{'all' if name == '*' else name}")
        conn.execute(sql.SQL("CREATE TABLE {}.{} (LIKE {} INCLUDING ALL)").format(ns, copy, jobs))
        for (index,) in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
            [NS, copy.as_string(conn)[1:-1]],
        ).fetchall():
            # The copy's index names are generated: match each to the original by its definition.
            if name == "*" or _same_index(conn, index, name):
                constraint = conn.execute(
                    "SELECT conname FROM pg_constraint WHERE conindid = to_regclass(%s)", [f"{NS}.{index}"]
                ).fetchone()
                if constraint:
                    conn.execute(
                        sql.SQL("ALTER TABLE {}.{} DROP CONSTRAINT {}").format(
                            ns, copy, sql.Identifier(constraint[0])
                        )
                    )
                else:
                    conn.execute(sql.SQL("DROP INDEX {}.{}").format(ns, sql.Identifier(index)))
        table = sql.SQL("{}.{}").format(ns, copy)
        left = conn.execute(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
            [NS, copy.as_string(conn)[1:-1]],
        ).fetchone()
        assert left is not None and left[0] == (0 if name == "*" else len(indexes) - 1), (name, left)
        label = "copy: no index at all" if name == "*" else f"copy without {name}"
        variants[label] = (table, insert_into(table))

    if args.pgqueuer:
        subprocess.run([args.pgqueuer, "-c", PGQUEUER, args.url, "1"], check=True, capture_output=True)
        variants["pgqueuer: bare insert"] = (
            sql.Identifier("pgqueuer"),
            lambda c: c.execute(
                "INSERT INTO pgqueuer (priority, entrypoint, payload, status)"
                " VALUES (0, 'noop', NULL, 'queued')"
            ),
        )

    if args.only:
        variants = {k: v for k, v in variants.items() if re.search(args.only, k)}
    for table, _ in variants.values():
        if table is not None:
            conn.execute(sql.SQL("TRUNCATE {}").format(table))
    figures: dict[str, list[float]] = {k: [] for k in variants}
    pgq_label = "pgqueuer: Queries.enqueue (asyncpg, its own statement)"
    for _ in range(args.rounds):
        for label, (_, run) in variants.items():
            run(conn)  # warm: the plan cache, the relation's metadata
            before = backend_cpu(pid)
            for _ in range(args.rows):
                run(conn)
            figures[label].append((backend_cpu(pid) - before) * 1e6 / args.rows)
        if args.pgqueuer and (not args.only or re.search(args.only, pgq_label)):
            out = subprocess.run(
                [args.pgqueuer, "-c", PGQUEUER, args.url, str(args.rows)],
                check=True,
                capture_output=True,
                text=True,
            )
            figures.setdefault(pgq_label, []).append(float(out.stdout.split()[-1]))
    width = max(len(k) for k in figures)
    print(f"backend CPU per statement, µs: least and median of {args.rounds} rounds of {args.rows:,}")
    for label, xs in figures.items():
        print(f"  {label:<{width}}  {min(xs):5.0f}  {statistics.median(xs):5.0f}")
    conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(ns))
    conn.close()


def _same_index(conn: psycopg.Connection[Any], copy_index: str, original: str) -> bool:
    defs = conn.execute(
        "SELECT indexname, regexp_replace(indexdef, '^.* USING ', '') FROM pg_indexes"
        " WHERE schemaname = %s AND indexname = ANY(%s)",
        [NS, [copy_index, original]],
    ).fetchall()
    found = dict(defs)
    return found.get(copy_index) == found.get(original)


if __name__ == "__main__":
    main()
