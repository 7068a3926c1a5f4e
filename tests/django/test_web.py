"""The admin, manage.py pigeon, the worker in the web process, and the system checks."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator, MutableMapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client

from pigeon.contrib.django import get_app
from pigeon.contrib.django.asgi import with_worker
from pigeon.contrib.django.checks import check_backend
from pigeon.contrib.django.conf import BackendConfig, database_url
from pigeon.contrib.django.inprocess import in_management_command
from pigeon.contrib.django.management.commands.pigeon import click_argv
from pigeon.contrib.django.wsgi import start_worker
from pigeon.errors import ConfigurationError
from pigeon.job import JobState
from pigeon.testing import drain
from tests.django.testapp import tasks
from tests.helpers import eventually, wait_until


@pytest.fixture
def staff() -> Iterator[Client]:
    user = User.objects.create_superuser("admin", "admin@example.com", "pw")
    client = Client()
    client.force_login(user)
    yield client
    user.delete()


def test_admin_lists_filters_shows_and_acts(staff: Client) -> None:
    failed = tasks.always_fails.using(max_attempts=1).enqueue("admin")
    queued = tasks.add.using(queue_name="emails").enqueue(1, 2)
    drain(get_app(), queues=("default",))
    assert get_app().job(failed.id).status is JobState.FAILED

    page = staff.get("/admin/pigeon/job/?state__exact=failed").content.decode()
    assert failed.id in page and queued.id not in page
    detail = staff.get(f"/admin/pigeon/job/{failed.id}/change/").content.decode()
    assert "ValueError: no admin" in detail and "Traceback" in detail and "&quot;admin&quot;" in detail

    staff.post("/admin/pigeon/job/", {"action": "retry_jobs", "_selected_action": [failed.id]})
    assert get_app().job(failed.id).status is JobState.QUEUED
    drain(get_app(), queues=("default",))
    again = staff.get(f"/admin/pigeon/job/{failed.id}/change/").content.decode()
    assert "1. builtins.ValueError: no admin\n2. builtins.ValueError: no admin" in again  # both runs' errors
    staff.post("/admin/pigeon/job/", {"action": "cancel_jobs", "_selected_action": [queued.id]})
    assert get_app().job(queued.id).status is JobState.CANCELLED


def test_admin_is_for_staff_only() -> None:
    User.objects.create_user("plain", "p@example.com", "pw")
    client = Client()
    client.login(username="plain", password="pw")
    response = client.get("/admin/pigeon/job/")
    assert response.status_code == 302 and "/login/" in response["Location"]
    User.objects.filter(username="plain").delete()


def test_manage_py_pigeon_delegates_to_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    tasks.add.enqueue(1, 1)
    call_command("pigeon", "status")
    call_command("pigeon", "jobs", "list", "--state", "queued")
    out = capsys.readouterr().out
    assert "default" in out and "tests.dj" in out  # rich may cut the task name to the terminal
    assert click_argv(["worker", "-c", "2"], "default") == [
        "worker",
        "pigeon.contrib.django.cli:app",
        "-c",
        "2",
    ]
    assert click_argv(["jobs", "show", "x"], "pg")[:3] == ["jobs", "show", "pigeon.contrib.django.cli:pg"]
    assert click_argv(["demo"], "default") == ["demo"]


def test_manage_py_pigeon_schedules_gets_the_app() -> None:
    # `manage.py pigeon schedules` once reached click without an APP and failed.
    assert click_argv(["schedules", "--count", "1"], "default") == [
        "schedules",
        "pigeon.contrib.django.cli:app",
        "--count",
        "1",
    ]


def test_worker_never_starts_under_management_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    assert in_management_command(["manage.py", "migrate"])
    assert in_management_command(["manage.py", "test"])
    assert not in_management_command(["manage.py", "runserver"])
    assert not in_management_command(["gunicorn", "shop.wsgi"])
    monkeypatch.setattr(sys, "argv", ["manage.py", "migrate"])
    assert start_worker("inproc") is None
    assert start_worker("default") is None  # not asked for in its OPTIONS


def test_wsgi_starts_a_worker_thread_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["gunicorn", "shop.wsgi"])
    thread = start_worker("inproc")
    assert thread is not None
    try:
        result = tasks.inproc_add.enqueue(2, 3)
        wait_until(lambda: tasks.inproc_add.get_result(result.id).is_finished, what="in-process job")
        assert tasks.inproc_add.get_result(result.id).return_value == 5
    finally:
        thread.stop(timeout=10)


async def test_asgi_lifespan_runs_a_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["uvicorn", "shop.asgi:application"])
    calls: list[Any] = []

    async def django_app(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["type"])

    app = with_worker(django_app, backend="inproc")
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    outbox: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
    server: asyncio.Future[None] = asyncio.ensure_future(app({"type": "lifespan"}, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    try:
        result = await tasks.inproc_add.aenqueue(4, 5)
        done = await eventually(lambda: tasks.inproc_add.aget_result(result.id), lambda r: r.is_finished)
        assert done.return_value == 9
        await app({"type": "http"}, inbox.get, outbox.put)
        assert calls == ["http"]
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
        await server
        await get_app("inproc").aclose()


@pytest.mark.parametrize(
    ("options", "code"),
    [
        ({"colour": "blue"}, "pigeon.E001"),
        ({"url": "not a url"}, "pigeon.E001"),
        ({"url": "redis://127.0.0.1/0", "store": "sqlite:///jobs.db"}, "pigeon.E001"),
        ({"url": "amqp://127.0.0.1/", "store": "jobs.db"}, "pigeon.E001"),
        ({"worker": {"concurrency": 0}}, "pigeon.E002"),
        ({"database": "nowhere"}, "pigeon.E003"),
    ],
)
def test_checks_report_configuration_errors(options: dict[str, Any], code: str) -> None:
    messages = check_backend("x", {"BACKEND": "pigeon.contrib.django.PigeonBackend", "OPTIONS": options})
    assert [m.id for m in messages if m.id != "pigeon.I001"] == [code]


def test_rabbitmq_keeps_its_record_in_the_store_or_the_django_database() -> None:
    explicit = BackendConfig.from_params("x", {"OPTIONS": {"url": "amqp://h/", "store": "redis://r/0"}})
    assert explicit.broker_url() == "amqp://h/?store=redis%3A%2F%2Fr%2F0"
    assert not explicit.record_in_django_db
    implicit = BackendConfig.from_params("x", {"OPTIONS": {"url": "amqp://h/"}})
    assert implicit.record_in_django_db
    assert parse_qs(urlsplit(implicit.broker_url()).query)["store"] == [database_url("default")]


def test_max_payload_is_an_option() -> None:
    assert BackendConfig.from_params("x", {"OPTIONS": {"max_payload": 1024}}).max_payload == 1024
    with pytest.raises(ConfigurationError, match="invalid literal"):
        BackendConfig.from_params("x", {"OPTIONS": {"max_payload": "big"}})


def test_checks_pass_on_the_test_settings() -> None:
    from django.core.checks import WARNING, run_checks

    found = [m for m in run_checks() if m.id and m.id.startswith("pigeon")]
    assert [m for m in found if m.level >= WARNING] == []


def test_checks_say_which_backends_the_admin_does_not_show() -> None:
    from django.core.checks import run_checks

    infos = {m.obj: m for m in run_checks() if m.id == "pigeon.I001"}
    assert "TASKS['outside']" in infos and "TASKS['default']" not in infos and "TASKS['inproc']" not in infos
    assert "manage.py pigeon --backend outside status" in (infos["TASKS['outside']"].hint or "")
    messages = check_backend(
        "r", {"BACKEND": "pigeon.contrib.django.PigeonBackend", "OPTIONS": {"url": "redis://x"}}
    )
    assert [m.id for m in messages] == ["pigeon.I001"]


def test_checks_need_the_app_installed_when_the_queue_is_in_the_django_database() -> None:
    from django.test.utils import modify_settings

    params = {"BACKEND": "pigeon.contrib.django.PigeonBackend", "OPTIONS": {"url": None}}
    with modify_settings(INSTALLED_APPS={"remove": ["pigeon.contrib.django"]}):
        messages = check_backend("x", params)
    errors = [m for m in messages if m.id == "pigeon.E005"]
    assert len(errors) == 1 and "INSTALLED_APPS" in (errors[0].hint or "")
    assert [m.id for m in check_backend("x", params)] == []  # installed again


def test_manage_py_pigeon_worker_listens_on_the_backends_queues() -> None:
    """QUEUES lists default and emails: a worker started apart runs both, as the in-process one does."""
    from django.tasks import TaskResultStatus

    on_default = tasks.add.enqueue(1, 2)
    on_emails = tasks.record.enqueue("email")  # queue_name="emails"
    call_command("pigeon", "worker", "--burst")
    assert tasks.add.get_result(on_default.id).status is TaskResultStatus.SUCCESSFUL
    assert tasks.record.get_result(on_emails.id).status is TaskResultStatus.SUCCESSFUL
