"""Tasks and handlers of the PostgreSQL backend (imported only when it is configured)."""

from __future__ import annotations

import threading

from pigeon.contrib.django import ModelSnapshot, forward_signals, get_app
from tests.django.testapp.compat import task
from tests.django.testapp.models import Note, Ran

pg_app = get_app("pg")
seen: list[ModelSnapshot] = []
seen_lock = threading.Lock()


@task(backend="pg")
def pg_record(label: str) -> str:
    Ran.objects.using("pg").create(label=label)
    return label


@task(backend="pg", max_attempts=2)
def pg_fails() -> None:
    raise KeyError("missing")


@pg_app.on("notes.post_delete")
def note_deleted(snapshot: ModelSnapshot) -> None:
    with seen_lock:
        seen.append(snapshot)


forward_signals(Note, ["post_delete"], topic="notes", backend="pg")
