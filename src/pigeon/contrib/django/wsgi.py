"""A worker in a background thread of a WSGI process, for small sites.

::

    # wsgi.py
    from pigeon.contrib.django.wsgi import get_wsgi_application

    application = get_wsgi_application()

It is Django's ``get_wsgi_application()``, plus, when
``OPTIONS["worker_in_process"]`` is true and this is not a management command
(``runserver`` excepted), a worker thread stopped gracefully at exit. With a
pre-forking server (gunicorn ``--workers N``) each process runs its own worker.
"""

from __future__ import annotations

from typing import Any

from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application as django_wsgi_application

from pigeon.contrib.django.inprocess import worker_app, worker_config
from pigeon.worker.thread import WorkerThread


def start_worker(backend: str = "default", **overrides: Any) -> WorkerThread | None:
    """Start the in-process worker if the settings ask for one.

    It stops at interpreter exit (the server's Ctrl-C or SIGTERM): running jobs
    get the worker's grace, then are handed back.
    """
    app = worker_app(backend)
    if app is None:
        return None
    return app.run_worker_in_thread(worker_config(app, **overrides))


def get_wsgi_application(*, backend: str = "default", **overrides: Any) -> WSGIHandler:
    """Django's WSGI application, with the in-process worker started when configured."""
    application = django_wsgi_application()
    start_worker(backend, **overrides)
    return application
