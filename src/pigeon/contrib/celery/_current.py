"""The current Celery-compatible app: the one piece of process-wide state of the layer.

``shared_task`` binds to the last ``Celery(...)`` made in the process, as in Celery.
The pointer lives here, below the tasks and results that read it, typed by what they
need of an app (:class:`CeleryApp`), so none of them imports ``_app``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Protocol

from pigeon.errors import ConfigurationError

if TYPE_CHECKING:
    from pigeon.app import App

lock = threading.Lock()
"""Guards the pointer, and ``_app``'s shared tasks with it (one step for both)."""
_apps: list[CeleryApp] = []


class CeleryApp(Protocol):
    """What a compatible task or result needs of its app (``Celery`` satisfies it)."""

    @property
    def main(self) -> str | None: ...

    @property
    def pigeon(self) -> App: ...

    @property
    def conf(self) -> dict[str, Any]: ...


def set_current(app: CeleryApp) -> None:
    """Make ``app`` the current app (call with :data:`lock` held)."""
    _apps[:] = [app]


def current_or_none() -> CeleryApp | None:
    """The current app, if one was made (call with :data:`lock` held)."""
    return _apps[0] if _apps else None


def current() -> CeleryApp:
    """The current app.

    Raises:
        ConfigurationError: no ``Celery(...)`` was made in this process.
    """
    with lock:
        found = current_or_none()
    if found is None:
        raise registration_error("(shared)")
    return found


def registration_error(name: str) -> ConfigurationError:
    return ConfigurationError(
        f"task {name!r} is not bound to an app: create pigeon.contrib.celery.Celery(...) "
        "before sending (as Celery's shared_task needs a current app)"
    )
