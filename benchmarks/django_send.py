"""Django's ``task.enqueue()`` beside pigeon's own ``send()``, outside and inside ``transaction.atomic()``.

One child process per broker (Django's settings are configured once per
process): the queue in the Django database itself (SQLite, PostgreSQL: inside
``atomic()`` the job joins the transaction) or on Redis (inside ``atomic()`` it
is sent on commit). Each figure is N one-by-one calls from one thread; the
kinds take turns in rounds, and each kind's best round counts.

Inside ``atomic()`` each block writes a row first, as a view saves a model
before it enqueues, so the block is a real transaction with its commit; the
enqueue there is compared with ``send()`` in the same block (which pays the
same commit), not with a bare ``send()``, whose own autocommit is all it pays.

Run alone: ``.venv/bin/python -m benchmarks.django_send sqlite 2000`` prints the JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 3
BROKERS = ("sqlite", "postgres", "redis")


def _settings(broker: str, tmp: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """DATABASES and TASKS for a broker: the queue in the Django database, or on Redis."""
    # WAL with synchronous=NORMAL, as pigeon's own connections: otherwise a commit of Django's
    # waits for an fsync that pigeon's do not, and the figures compare the two settings.
    sqlite = {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL"}
    databases: dict[str, Any] = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": f"{tmp}/db.sqlite3", "OPTIONS": sqlite}
    }
    options: dict[str, Any] = {"url": None}
    if broker == "postgres":
        parts = urlsplit(os.environ["PIGEON_TEST_POSTGRES_URL"])
        databases["default"] = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": parts.path.lstrip("/"),
            "USER": parts.username or "",
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
        }
        options["namespace"] = f"bench_django_{uuid.uuid4().hex[:8]}"
    elif broker == "redis":
        base = os.environ["PIGEON_TEST_REDIS_URL"]
        options["url"] = f"{base}?namespace=bench_django_{uuid.uuid4().hex[:8]}"
    tasks = {"default": {"BACKEND": "pigeon.contrib.django.PigeonBackend", "OPTIONS": options}}
    return databases, tasks


def child(broker: str, n: int) -> dict[str, float]:
    """In a fresh process: each kind of send's rate, jobs/s (the best of ROUNDS rounds)."""
    import django
    from django.conf import settings

    tmp = tempfile.mkdtemp(prefix="pigeon-django-bench-")
    databases, tasks = _settings(broker, tmp)
    settings.configure(
        DATABASES=databases, TASKS=tasks, INSTALLED_APPS=["pigeon.contrib.django"], USE_TZ=True
    )
    django.setup()
    from django.db import transaction

    from benchmarks.django_tasks import noop
    from pigeon.contrib.django.backend import get_app

    app = get_app("default")
    if broker == "postgres":
        app.migrate()
    sender = app.register(noop)
    sender.send()  # the tables, the connections, the scripts: made before the timing
    from django.db import connection

    touched = f"bench_touch_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cur:
        cur.execute(f"CREATE TABLE {touched} (n integer)")
        cur.execute(f"INSERT INTO {touched} VALUES (0)")

    def write() -> None:
        with connection.cursor() as cur:
            cur.execute(f"UPDATE {touched} SET n = n + 1")

    def atomic() -> None:
        with transaction.atomic():
            write()
            noop.enqueue()

    def atomic_send() -> None:  # send() once the write commits: what enqueue() in atomic() replaces
        with transaction.atomic():
            write()
            transaction.on_commit(sender.send, robust=False)

    kinds = {
        "send": lambda: sender.send(),
        "enqueue": lambda: noop.enqueue(),
        "atomic_send": atomic_send,
        "atomic": atomic,
    }
    best: dict[str, float] = {}
    for _ in range(ROUNDS):
        for kind, call in kinds.items():
            call()
            start = time.perf_counter()
            for _ in range(n):
                call()
            best[kind] = max(best.get(kind, 0.0), n / (time.perf_counter() - start))
    with connection.cursor() as cur:
        cur.execute(f"DROP TABLE {touched}")
        if broker == "postgres":
            cur.execute(f"DROP SCHEMA {tasks['default']['OPTIONS']['namespace']} CASCADE")
    app.close()
    return best


def run(quick: bool, console: Console) -> None:
    """A table of the three rates per broker whose server is up, with enqueue's ratios to send()."""
    n = 500 if quick else 5_000
    table = Table(title=f"Django: {n:,} one-by-one sends per figure (best of {ROUNDS} rounds)")
    headings = (
        "queue in",
        "send() jobs/s",
        "task.enqueue()",
        "atomic(): write + send()",
        "write + enqueue()",
    )
    for heading in headings:
        table.add_column(heading, justify="right")
    for broker in BROKERS:
        needs = {"postgres": "PIGEON_TEST_POSTGRES_URL", "redis": "PIGEON_TEST_REDIS_URL"}.get(broker)
        if needs and not os.environ.get(needs):
            table.add_row(broker, f"skipped: ${needs} is not set", "", "", "")
            continue
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.django_send", broker, str(n)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        try:
            got = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            table.add_row(broker, f"failed: {proc.stderr.strip()[-200:]}", "", "", "")
            continue
        send = got["send"]

        def versus(kind: str, base: str, got: dict[str, float] = got) -> str:
            ratio = got[kind] / got[base]
            mark = "[green]✓[/]" if ratio >= 0.8 else "[red]✗[/]"
            return f"{got[kind]:,.0f} ({ratio:.2f}× send {mark})"

        where = {"sqlite": "SQLite (the Django db)", "postgres": "PostgreSQL (the Django db)"}.get(
            broker, "Redis"
        )
        table.add_row(
            where,
            f"{send:,.0f}",
            versus("enqueue", "send"),
            f"{got['atomic_send']:,.0f}",
            versus("atomic", "atomic_send"),
        )
    console.print(table)
    console.print(
        "[dim]Aim: task.enqueue() within 20% of send() (≥ 0.80×), outside and inside atomic(). "
        "Each atomic() block updates a row, then enqueues one job or sends it on commit "
        "(on_commit(send)), so both figures pay the block's commit per job; inside, the job "
        "joins the transaction on the Django database, and is sent on commit to Redis.[/]"
    )


if __name__ == "__main__":
    print(json.dumps(child(sys.argv[1], int(sys.argv[2]))), flush=True)
