"""The pigeon side of the bridge's tests: tasks under the names a Celery project sends."""

from __future__ import annotations

import os

from pigeon import App
from pigeon.contrib.celery import Celery, shared_task

app = App(os.environ.get("PIGEON_URL", "memory://"))
capp = Celery("proj", app=app)


@shared_task(name="proj.add")
def add(x: int, y: int) -> int:
    return x + y


@shared_task(name="proj.mul")
def mul(x: int, y: int) -> int:
    return x * y


@shared_task(name="proj.fail")
def fail(why: str) -> None:
    raise ValueError(why)


@app.task(name="proj.shout")
def shout(word: str) -> str:
    """A task already written the pigeon way: the bridge runs those too."""
    return word.upper()


if os.environ.get("DEPLOY_LATE"):  # a task deployed after Celery producers started sending it

    @shared_task(name="proj.late")
    def late(word: str) -> str:
        return f"late {word}"
