"""Celery's task API on pigeon: change the imports, keep the module.

``from celery import shared_task, group, chain, chord, signature`` becomes
``from pigeon.contrib.celery import ...``; ``Celery(...)`` holds a pigeon
:class:`~pigeon.App` and ``pigeon worker proj.celery:app`` runs its tasks.
Arguments go through pigeon's codec (JSON, checked at send); what Celery offers
and pigeon cannot keep raises :class:`Unsupported` naming pigeon's equivalent.
See ``docs/migrating-from-celery.md``.
"""

from pigeon.contrib.celery._app import Celery, current_app, shared_task
from pigeon.contrib.celery._canvas import chord, group, signature
from pigeon.contrib.celery._options import IGNORED_TASK_OPTIONS, MaxRetriesExceededError, Unsupported
from pigeon.contrib.celery._result import AsyncResult, GroupResult, celery_state
from pigeon.contrib.celery._run import BoundTask, Request
from pigeon.contrib.celery._task import CeleryTask, Signature, chain

__all__ = [
    "IGNORED_TASK_OPTIONS",
    "AsyncResult",
    "BoundTask",
    "Celery",
    "CeleryTask",
    "GroupResult",
    "MaxRetriesExceededError",
    "Request",
    "Signature",
    "Unsupported",
    "celery_state",
    "chain",
    "chord",
    "current_app",
    "group",
    "shared_task",
    "signature",
]
