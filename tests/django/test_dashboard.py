"""The dashboard mounted in Django: Django's login, staff only, a permission for writes."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from pigeon.brokers.inspection import as_inspection
from pigeon.contrib.django import get_app
from pigeon.job import JobState
from pigeon.testing import drain
from tests.django.testapp import tasks


def paused() -> list[str]:
    async def read() -> list[str]:
        return await as_inspection(await get_app().connection()).paused_queues()

    return get_app().portal_call(read())


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin() -> Iterator[Client]:
    user = User.objects.create_superuser("dash-boss", "boss@example.com", "pw")
    yield client_for(user)
    user.delete()


@pytest.fixture
def viewer() -> Iterator[Client]:
    user = User.objects.create_user("dash-viewer", "v@example.com", "pw", is_staff=True)
    yield client_for(user)
    user.delete()


def test_staff_with_the_permission_see_and_change(admin: Client) -> None:
    failed = tasks.always_fails.using(max_attempts=1).enqueue("dash")
    drain(get_app(), queues=("default",))
    assert get_app().job(failed.id).status is JobState.FAILED

    overview = admin.get("/pigeon/")
    assert overview.status_code == 200 and "Queues" in overview.content.decode()
    assert "script-src 'self'" in overview["Content-Security-Policy"]
    listed = admin.get("/pigeon/jobs?state=failed").content.decode()
    assert failed.id in listed and 'href="/pigeon/jobs/' in listed
    assert admin.get("/pigeon/static/pigeon.css").status_code == 200
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', overview.content.decode())
    assert token is not None
    assert admin.post("/pigeon/queues/emails/pause", {"csrf": "forged"}).status_code == 403
    assert "emails" not in paused()
    done = admin.post("/pigeon/queues/emails/pause", {"csrf": token.group(1)})
    assert done.status_code == 303 and done["Location"] == "/pigeon/"
    assert paused() == ["emails"]
    admin.post("/pigeon/queues/emails/resume", {"csrf": token.group(1)})
    assert paused() == []


def test_staff_without_the_permission_only_read(viewer: Client) -> None:
    page = viewer.get("/pigeon/")
    assert page.status_code == 200 and "read only" in page.content.decode()
    assert 'class="pause"' not in page.content.decode()
    assert viewer.post("/pigeon/queues/default/pause", {"csrf": "x"}).status_code == 403
    user = User.objects.get(username="dash-viewer")
    user.user_permissions.add(Permission.objects.get(codename="change_job", content_type__app_label="pigeon"))
    assert (
        "read only"
        not in client_for(User.objects.get(username="dash-viewer")).get("/pigeon/").content.decode()
    )


def test_others_are_sent_to_the_login_page() -> None:
    anonymous = Client().get("/pigeon/jobs")
    assert anonymous.status_code == 302 and "login" in anonymous["Location"]
    user = User.objects.create_user("dash-plain", "p@example.com", "pw")
    plain = Client()
    plain.login(username="dash-plain", password="pw")
    assert plain.get("/pigeon/").status_code == 302
    user.delete()
