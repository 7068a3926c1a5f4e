"""examples/django_shop end to end: a real server, the worker inside it, emails on disk."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import wait_until

SHOP = Path(__file__).parents[2] / "examples" / "django_shop"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    env = {**os.environ, "SHOP_DIR": str(tmp_path), "PYTHONPATH": str(SHOP.parents[1] / "src")}
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v", "0"], cwd=SHOP, env=env, check=True, timeout=120)
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        [*manage, "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=SHOP,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(url), timeout=30, what="the shop answers")
        yield url, tmp_path
    finally:
        server.terminate()
        server.wait(30)
        log.close()


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(f"{url}/admin/login/", timeout=2).close()
    except OSError:
        return False
    return True


def post(url: str, data: dict[str, str] | None = None) -> dict[str, object]:
    body = json.dumps(data or {}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def mails(folder: Path) -> str:
    return "".join(p.read_text() for p in sorted((folder / "sent_emails").glob("*")))


def test_order_email_and_customer_snapshot_through_the_in_process_worker(shop: tuple[str, Path]) -> None:
    url, data = shop
    placed = post(
        f"{url}/orders/", {"email": "ada@example.com", "name": "Ada", "item": "tea", "total": "4.50"}
    )
    wait_until(lambda: "Order #1 confirmed" in mails(data), timeout=30, what="the confirmation email")
    post(f"{url}/customers/{placed['customer']}/delete/")
    wait_until(lambda: "Your account was closed" in mails(data), timeout=30, what="the snapshot's email")


SERVERS = {
    "runserver --noreload": ["{python}", "manage.py", "runserver", "--noreload", "127.0.0.1:{port}"],
    "runserver": ["{python}", "manage.py", "runserver", "127.0.0.1:{port}"],
    "gunicorn -w 2": ["{python}", "-m", "gunicorn", "-w", "2", "-b", "127.0.0.1:{port}", "shopsite.wsgi"],
    "uvicorn": ["{python}", "-m", "uvicorn", "--port", "{port}", "shopsite.asgi:application"],
}


@pytest.mark.parametrize("server", list(SERVERS))
def test_stopping_the_server_stops_its_worker_without_a_traceback(server: str, tmp_path: Path) -> None:
    """Ctrl-C on runserver (SIGINT to the process group, as a terminal sends it); SIGTERM to the others."""
    env = {**os.environ, "SHOP_DIR": str(tmp_path), "PYTHONPATH": str(SHOP.parents[1] / "src")}
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v", "0"], cwd=SHOP, env=env, check=True, timeout=120)
    port = free_port()
    argv = [a.format(python=sys.executable, port=port) for a in SERVERS[server]]
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, cwd=SHOP, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(url), timeout=30, what="the shop answers")
        post(f"{url}/orders/", {"email": "ada@example.com", "name": "Ada", "item": "tea", "total": "4.50"})
        wait_until(lambda: "Order #1 confirmed" in mails(tmp_path), timeout=30, what="the confirmation email")
        if server.startswith("runserver"):
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        output = log.read_text()
        assert "Traceback" not in output and "RuntimeError" not in output, output
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
