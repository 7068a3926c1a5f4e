"""Dashboard pages over HTTP against real processes: what a worker reports shows on the overview."""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.acceptance.test_cli import ROOT
from tests.helpers import wait_until

APP = "tests.acceptance.service_app:app"


def get(url: str) -> str:
    req = urllib.request.Request(url, headers={"Authorization": "Basic " + base64.b64encode(b"a:b").decode()})
    with urllib.request.urlopen(req, timeout=10) as r:
        return str(r.read().decode())


def test_overview_shows_workers_versions_and_services(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PIGEON_URL": f"sqlite:///{tmp_path}/jobs.db",
        "PYTHONPATH": str(ROOT),
        "PIGEON_HEARTBEAT": "0.2",
    }
    subprocess.run(
        [sys.executable, "-m", "pigeon", "migrate", APP], env=env, cwd=ROOT, check=True, timeout=60
    )
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "pigeon", "worker", APP], env=env, cwd=ROOT, stdout=log, stderr=log
    )
    cmd = [sys.executable, "-m", "pigeon", "dashboard", APP, "--port", "0", "--auth", "a:b"]
    dash = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert dash.stdout is not None
        url = dash.stdout.readline().split(" on ", 1)[1].strip().rstrip("/")

        def crashed_twice() -> bool:
            page = get(url + "/?fragment=1")
            row = re.search(r'<tr data-service="tests.acceptance.service_app.flaky">(.*?)</tr>', page, re.S)
            return row is not None and re.search(r'<td class="num">2</td>', row.group(1)) is not None

        wait_until(crashed_twice, timeout=30)  # the service crashes, is restarted, reported at a heartbeat
        page = get(url + "/?fragment=1")
        assert "RuntimeError: flaky" in page
        assert f"({worker.pid})" in page
    finally:
        for proc in (worker, dash):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        log.close()
        assert dash.stdout is not None
        dash.stdout.close()
