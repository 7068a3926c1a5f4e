"""``Celery``: an app object shaped like Celery's, holding a pigeon :class:`~pigeon.App`.

``shared_task`` binds to the *current* app, as in Celery: the last ``Celery(...)``
made in the process (``set_as_current=False`` opts out). That pointer is the one
piece of process-wide state here, set by your code, never at import.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable
from typing import Any, overload

from pigeon.app import App
from pigeon.contrib.celery import _current, _result
from pigeon.contrib.celery._options import Unsupported, parse_task_options
from pigeon.contrib.celery._task import CeleryTask
from pigeon.errors import ConfigurationError
from pigeon.task import Task

_shared: dict[str, CeleryTask] = {}
"""Shared tasks by name (guarded by ``_current.lock``): a module imported again (a reload)
replaces its tasks."""

_REFUSED_SETTINGS = {
    "task_always_eager": "send and run pigeon.testing.drain(app) in tests (or call the task directly)",
    "task_eager_propagates": "pigeon.testing.drain(app) then handle.result() raises JobFailed",
    "task_serializer": "arguments are JSON, checked at send",
    "accept_content": "arguments are JSON, checked at send",
    "result_serializer": "results are JSON",
}


class Conf(dict[str, Any]):
    """``app.conf``: accepts settings, refuses the ones that would be silently wrong."""

    def __setitem__(self, key: str, value: Any) -> None:
        _check_setting(key, value)
        super().__setitem__(key, value)

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value


def _check_setting(key: str, value: Any) -> None:
    name = key.lower().removeprefix("celery_")
    if name in _REFUSED_SETTINGS and value not in (False, None, "json", ["json"], ("json",)):
        raise Unsupported(f"{key}={value!r} is not supported: {_REFUSED_SETTINGS[name]}")


class Celery:
    """A Celery-shaped app whose tasks are pigeon tasks.

    Args:
        main: the project name (as in Celery; only shown).
        app: the pigeon App to register tasks on; or give ``url``.
        url: a pigeon broker URL for a new App (defaults as ``App()`` does).
        include: task modules to import when a worker loads this app.
        set_as_current: let ``shared_task`` bind to this app.
        **celery_options: ``broker``, ``backend`` and other Celery settings are
            accepted: Celery's broker is read by ``pigeon celery-bridge``, not here.
    """

    def __init__(
        self,
        main: str | None = None,
        *,
        app: App | None = None,
        url: str | None = None,
        include: Iterable[str] = (),
        set_as_current: bool = True,
        **celery_options: Any,
    ) -> None:
        if app is not None and url is not None:
            raise ConfigurationError("give app= or url=, not both")
        self.main = main
        self.pigeon = app if app is not None else App(url)
        self.conf = Conf()
        self.conf.update(celery_options)
        self._include = list(include)
        self._autodiscover: list[tuple[Iterable[str] | None, str]] = []
        self._finalized = False
        self._tasks: dict[str, CeleryTask] = {}
        if set_as_current:
            with _current.lock:
                _current.set_current(self)
                pending = list(_shared.values())
            for task in pending:
                self._adopt(task)

    def __repr__(self) -> str:
        return f"<Celery {self.main or ''} on {self.pigeon!r}>"

    @property
    def __pigeon_app__(self) -> App:
        """The pigeon App, its task modules imported: what ``pigeon worker`` runs."""
        self.finalize()
        return self.pigeon

    @property
    def tasks(self) -> dict[str, CeleryTask]:
        """Tasks by name."""
        self.finalize()
        return dict(self._tasks)

    def finalize(self) -> None:
        """Import ``include`` and autodiscovered task modules (once)."""
        if self._finalized:
            return
        self._finalized = True
        _setup_django()
        for module in self._include:
            importlib.import_module(module)
        for packages, related in self._autodiscover:
            for package in packages if packages is not None else _django_apps():
                try:
                    importlib.import_module(f"{package}.{related}")
                except ModuleNotFoundError as exc:
                    if exc.name != f"{package}.{related}":
                        raise

    def autodiscover_tasks(
        self, packages: Iterable[str] | Callable[[], Iterable[str]] | None = None, related_name: str = "tasks"
    ) -> None:
        """Import ``<package>.tasks`` for each package (Django's installed apps by default) at finalize."""
        found = packages() if callable(packages) else packages
        self._autodiscover.append((None if found is None else list(found), related_name))

    def config_from_object(self, obj: Any, namespace: str | None = None, **kwargs: Any) -> None:
        """Read settings from an object or ``"module:attr"``; refused ones raise ``Unsupported``."""
        if isinstance(obj, str):
            module, _, attr = obj.partition(":")
            obj = importlib.import_module(module)
            if attr:
                obj = getattr(obj, attr)
        prefix = f"{namespace}_" if namespace else ""
        for key in dir(obj):
            if key.isupper() and key.startswith(prefix):
                self.conf[key[len(prefix) :].lower()] = getattr(obj, key)

    @overload
    def task(self, fn: Callable[..., Any], /) -> CeleryTask: ...

    @overload
    def task(self, /, **options: Any) -> Callable[[Callable[..., Any]], CeleryTask]: ...

    def task(self, fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
        """``@app.task`` / ``@app.task(name=..., bind=True, ...)``: see ``shared_task``.

        A second declaration under a name already registered raises ``ConfigurationError``.
        """

        def declare(f: Callable[..., Any]) -> CeleryTask:
            task = CeleryTask(f, parse_task_options(f.__qualname__, options), self)
            self._adopt(task)
            return task

        return declare(fn) if fn is not None else declare

    def _adopt(self, task: CeleryTask) -> None:
        """Register a task declared on this app, or a shared one, on the pigeon App now."""
        self._tasks[task.name] = task
        task.pigeon_on(self)

    def register(self, task: CeleryTask) -> Task[Any, Any]:
        """Register a compatible task's runner on the pigeon App."""
        self._tasks[task.name] = task
        return task.pigeon_on(self)

    def AsyncResult(self, task_id: str) -> _result.AsyncResult:  # noqa: N802 - Celery's name
        """A result handle on any job by id."""
        return _result.AsyncResult(task_id, app=self)

    def send_task(
        self,
        name: str,
        args: tuple[Any, ...] | list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> _result.AsyncResult:
        """Send a task by name (it must be registered in this process, to check its arguments)."""
        return self.task_by_name(name).apply_async(args, kwargs, **options)

    def task_by_name(self, name: str) -> CeleryTask:
        self.finalize()
        task = self._tasks.get(name)
        if task is None:
            raise ConfigurationError(f"no task named {name!r} is declared on {self!r}")
        return task


def current_app() -> Celery:
    """The current Celery-compatible app (the last one made)."""
    app = _current.current()
    if not isinstance(app, Celery):  # only Celery() sets the pointer
        raise _current.registration_error("(shared)")
    return app


@overload
def shared_task(fn: Callable[..., Any], /) -> CeleryTask: ...


@overload
def shared_task(**options: Any) -> Callable[[Callable[..., Any]], CeleryTask]: ...


def shared_task(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Declare a task the Celery way, bound to the current app (see the module docstring).

    Options: ``name``, ``bind``, ``autoretry_for``, ``retry_kwargs``, ``retry_backoff``,
    ``retry_backoff_max``, ``retry_jitter``, ``max_retries``, ``default_retry_delay``,
    ``time_limit``, ``soft_time_limit``, ``queue``, ``priority``, ``rate_limit``,
    ``expires``, ``ignore_result``, ``serializer="json"``; options that mean nothing
    here (``acks_late``, ``track_started``, ...) are accepted: see
    ``IGNORED_TASK_OPTIONS`` for each one's reason.
    """

    def declare(f: Callable[..., Any]) -> CeleryTask:
        task = CeleryTask(f, parse_task_options(f.__qualname__, options), None)
        with _current.lock:
            _shared[task.name] = task
            app = _current.current_or_none()
        if isinstance(app, Celery):
            app._adopt(task)
        return task

    return declare(fn) if fn is not None else declare


def _setup_django() -> None:
    """Set Django up before importing task modules, as Celery's Django fix-up does (a worker
    started as ``pigeon worker proj.jobs:app`` has not)."""
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        return
    try:
        import django
        from django.apps import apps
    except ImportError:
        return
    if not apps.ready:
        django.setup()


def _django_apps() -> list[str]:
    try:
        from django.apps import apps
    except ImportError:
        return []
    return [config.name for config in apps.get_app_configs()] if apps.ready else []
