"""The dashboard's locks, checked over HTTP against a real `pigeon dashboard` process."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.acceptance.test_cli import ROOT, pigeon

APP = "tests.browser.dash_app:app"
Start = Callable[..., str]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "PIGEON_URL": f"sqlite:///{tmp_path}/jobs.db", "PYTHONPATH": str(ROOT)}
    env.pop("PIGEON_DASHBOARD_AUTH", None)
    pigeon(env, "migrate", APP)  # the dashboard, like every inspection verb, never creates the database
    return env


@pytest.fixture
def start(env: dict[str, str]) -> Iterator[Start]:
    procs: list[subprocess.Popen[str]] = []

    def run(*args: str) -> str:
        cmd = [sys.executable, "-m", "pigeon", "dashboard", APP, "--port", "0", *args]
        proc = subprocess.Popen(
            cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("pigeon dashboard on "), line
        return line.split(" on ", 1)[1].strip().rstrip("/")

    yield run
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=30)
        assert proc.stdout is not None
        proc.stdout.close()


def request(
    url: str, *, data: bytes | None = None, auth: str | None = None
) -> tuple[int, dict[str, str], str]:
    req = urllib.request.Request(url, data=data, headers={"Accept": "text/html"})
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=10) as r:
            return int(r.status), dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def test_without_credentials_every_request_is_refused(start: Start) -> None:
    url = start()
    for path in ("/", "/jobs", "/login"):
        status, _, body = request(url + path, auth="admin:anything")
        assert status == 401 and "no credentials configured" in body
    status, _, _ = request(url + "/queues/default/pause", data=b"csrf=x", auth="a:b")
    assert status == 401


def test_a_public_address_without_credentials_is_refused(env: dict[str, str]) -> None:
    out = pigeon(env, "dashboard", APP, "--host", "0.0.0.0", "--read-only-anonymous", check=False)
    assert out.returncode == 1
    assert "refusing to serve the dashboard on 0.0.0.0 without credentials" in out.stderr


def test_bad_credentials_setting_is_refused(env: dict[str, str]) -> None:
    out = pigeon(env, "dashboard", APP, "--auth", "nopassword", check=False)
    assert out.returncode == 1 and "write user:password" in out.stderr


def test_writes_need_a_csrf_token_and_pages_forbid_inline_scripts(start: Start, env: dict[str, str]) -> None:
    url = start("--auth", "admin:pw")
    assert request(url + "/")[0] == 401
    status, headers, body = request(url + "/", auth="admin:pw")
    assert status == 200
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "<script>" not in body  # the one script is a file
    paused = request(url + "/queues/mail/pause", data=b"csrf=forged", auth="admin:pw")
    assert paused[0] == 403 and "CSRF" in paused[2]
    assert "mail" not in pigeon(env, "queues", APP).stdout
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', body)
    assert token is not None
    done = request(url + "/queues/mail/pause", data=f"csrf={token.group(1)}".encode(), auth="admin:pw")
    assert done[0] == 303
    assert "paused" in pigeon(env, "queues", APP).stdout


def test_anonymous_readers_cannot_write(start: Start) -> None:
    url = start("--read-only-anonymous")
    status, _, body = request(url + "/")
    assert status == 200 and "read only" in body
    assert request(url + "/queues/mail/pause", data=b"csrf=")[0] == 403


def test_sign_in_redirects_only_within_the_dashboard(start: Start) -> None:
    url = start("--auth", "admin:pw")
    for target, expected in [
        ("/jobs", "/jobs"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("x", "/"),
    ]:
        form = urllib.parse.urlencode({"user": "admin", "password": "pw", "next": target}).encode()
        status, headers, _ = request(url + "/login", data=form)
        assert status == 303 and headers["location"] == expected, target


def test_a_bulk_confirmation_carries_every_state_it_counted(start: Start) -> None:
    url = start("--auth", "admin:pw")
    status, _, body = request(url + "/jobs/bulk?action=retry&state=failed&state=cancelled", auth="admin:pw")
    assert status == 200
    assert '<input type="hidden" name="state" value="failed,cancelled">' in body
