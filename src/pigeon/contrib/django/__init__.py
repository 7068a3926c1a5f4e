"""Django integration: a ``django.tasks`` backend, transactional enqueue, model-signal snapshots.

::

    INSTALLED_APPS += ["pigeon.contrib.django"]
    TASKS = {"default": {"BACKEND": "pigeon.contrib.django.PigeonBackend",
                         "QUEUES": ["default", "emails"],
                         "OPTIONS": {"url": None}}}   # None: the Django database itself

Names are imported lazily, so listing this package in ``INSTALLED_APPS`` loads
no models before Django is ready.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pigeon.contrib.django._app import DjangoApp, get_app
    from pigeon.contrib.django.backend import PigeonBackend, PigeonTask
    from pigeon.contrib.django.decorators import task
    from pigeon.contrib.django.snapshots import ModelSnapshot, forward_signals

__all__ = ["DjangoApp", "ModelSnapshot", "PigeonBackend", "PigeonTask", "forward_signals", "get_app", "task"]

_WHERE = {
    "DjangoApp": "pigeon.contrib.django._app",
    "get_app": "pigeon.contrib.django._app",
    "PigeonBackend": "pigeon.contrib.django.backend",
    "PigeonTask": "pigeon.contrib.django.backend",
    "task": "pigeon.contrib.django.decorators",
    "ModelSnapshot": "pigeon.contrib.django.snapshots",
    "forward_signals": "pigeon.contrib.django.snapshots",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
