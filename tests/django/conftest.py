"""Django for the tests in this folder: settings.configure once per process, real test databases.

``default`` is a SQLite file; ``pg`` a PostgreSQL database on the server of
``PIGEON_TEST_POSTGRES_URL`` (tests that need it skip without it, fail under
CI). Each xdist process gets its own files and its own PostgreSQL test
database. The TASKS backends:

- ``default``: the queue in the SQLite database (transactional enqueue);
- ``pg``: the queue in the PostgreSQL database;
- ``outside``: a queue in another SQLite file (sent on commit);
- ``inproc``: the SQLite database again, with ``worker_in_process``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import django
import pytest
from django.conf import settings

_TMP = tempfile.mkdtemp(prefix="pigeon-django-")
PG_URL = os.environ.get("PIGEON_TEST_POSTGRES_URL")
QUEUES = ["default", "emails"]


def _pg_database() -> dict[str, Any]:
    assert PG_URL is not None
    parts = urlsplit(PG_URL)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/"),
        "USER": parts.username or "",
        "PASSWORD": parts.password or "",
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "TEST": {"NAME": f"test_pigeon_django_{uuid.uuid4().hex[:10]}"},
    }


def _configure() -> None:
    if settings.configured:
        return
    backend = "pigeon.contrib.django.PigeonBackend"
    databases: dict[str, Any] = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": f"{_TMP}/db.sqlite3",
            "TEST": {"NAME": f"{_TMP}/test.sqlite3"},
            "OPTIONS": {"transaction_mode": "IMMEDIATE"},
        }
    }
    tasks: dict[str, Any] = {
        "default": {"BACKEND": backend, "QUEUES": QUEUES, "OPTIONS": {"url": None}},
        "outside": {"BACKEND": backend, "QUEUES": QUEUES, "OPTIONS": {"url": f"sqlite:///{_TMP}/outside.db"}},
        "inproc": {
            "BACKEND": backend,
            "QUEUES": ["inproc"],
            "OPTIONS": {"worker_in_process": True, "worker": {"concurrency": 2}},
        },
    }
    if PG_URL:
        databases["pg"] = _pg_database()
        tasks["pg"] = {"BACKEND": backend, "QUEUES": QUEUES, "OPTIONS": {"database": "pg"}}
    settings.configure(
        DEBUG=False,
        SECRET_KEY="pigeon-tests",
        USE_TZ=True,
        DATABASES=databases,
        TASKS=tasks,
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "django.contrib.admin",
            "pigeon.contrib.django",
            "tests.django.testapp.apps.TestAppConfig",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        ROOT_URLCONF="tests.django.urls",
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
    )
    django.setup()


_configure()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The settings' files (databases, the outside queue) go with the session."""
    shutil.rmtree(_TMP, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def django_databases() -> Iterator[None]:
    """Django's test databases (migrations included, so pigeon's tables too), for the session."""
    from django.test.utils import (
        setup_databases,
        setup_test_environment,
        teardown_databases,
        teardown_test_environment,
    )

    setup_test_environment()
    # django-stubs says Mapping; Django reads any collection of aliases.
    old = setup_databases(verbosity=0, interactive=False, aliases=set(settings.DATABASES))  # type: ignore[arg-type]
    yield
    from django.db import connections

    from pigeon.contrib.django._app import _apps

    for app in list(_apps.values()):
        app.close()
    connections.close_all()
    teardown_databases(old, verbosity=0)
    teardown_test_environment()


def pg_or_skip() -> None:
    if not PG_URL:
        reason = "no postgres server: PIGEON_TEST_POSTGRES_URL is not set (`make test` starts one)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; under CI a missing server is a failure")
        pytest.skip(reason)


@pytest.fixture(params=["default", "pg"])
def alias(request: pytest.FixtureRequest) -> str:
    """A backend whose queue is in the Django database: SQLite, then PostgreSQL."""
    if request.param == "pg":
        pg_or_skip()
        import tests.django.testapp.pg_tasks  # noqa: F401 - its tasks and handlers
    return str(request.param)


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    """Every test starts with no jobs and no rows."""
    yield
    from django.db import connections

    from pigeon.contrib.django import get_app
    from pigeon.contrib.django.conf import backend_configs
    from tests.django.testapp.models import Customer, Note, Ran

    for db in settings.DATABASES:
        for model in (Ran, Customer, Note):
            model.objects.using(db).all().delete()
    for cfg in backend_configs():
        if cfg.in_django_db:
            conn = connections[cfg.database]
            table = "pigeon_jobs" if conn.vendor == "sqlite" else f'"{cfg.namespace}".jobs'
            with conn.cursor() as cur:
                cur.execute(f"DELETE FROM {table}")
    outside = get_app("outside")
    outside.portal_call(_purge(outside))
    connections.close_all()


async def _purge(app: Any) -> int:
    from pigeon.job import JobState

    broker = await app.connection()
    return int(await broker.purge(states=list(JobState)))


@pytest.fixture
def worker(alias: str) -> Iterator[Any]:
    """A real pigeon worker, in a thread, for the backend under test."""
    from pigeon.contrib.django import get_app

    thread = get_app(alias).run_worker_in_thread(queues=QUEUES, concurrency=4, poll=0.05)
    yield thread
    thread.stop(timeout=10)
