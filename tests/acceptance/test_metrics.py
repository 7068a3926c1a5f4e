"""Prometheus metrics as Prometheus reads them: a worker, --processes N, the dashboard."""

from __future__ import annotations

import base64
import re
import signal
import subprocess
import sys
import urllib.request

import pytest

from pigeon import App, JobState
from tests.acceptance.test_cli import ROOT
from tests.helpers import wait_until

APP = "tests.acceptance.jobs_app:app"


def scrape(url: str, auth: str | None = None) -> str:
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    with urllib.request.urlopen(req, timeout=10) as r:
        return str(r.read().decode())


def value(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            total += float(m.group(2))
    return total


def start(env: dict[str, str], *args: str) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "pigeon", *args]
    proc = subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("metrics on ") or line.startswith("pigeon dashboard on "):
            return proc, line.split(" on ", 1)[1].strip()
    raise AssertionError(f"{args} printed no address")


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.stdout is not None
    proc.stdout.close()


@pytest.mark.parametrize("processes", [1, 2])
def test_worker_metrics_count_every_process(app: App, env: dict[str, str], processes: int) -> None:
    from tests.acceptance.jobs_app import add, broken

    proc, url = start(env, "worker", APP, "--metrics-port", "0", "--processes", str(processes), "-c", "2")
    try:
        wait_until(lambda: value(scrape(url), "pigeon_workers") == processes, timeout=60)
        ok = [add.send(i, i) for i in range(20)]
        bad = broken.send("luck")
        held = add.options(queue="elsewhere").send(0, 0)
        wait_until(lambda: all(h.status is JobState.SUCCEEDED for h in ok), timeout=60)
        wait_until(lambda: bad.status is JobState.FAILED, timeout=60)
        add_name = "tests.acceptance.jobs_app.add"
        broken_name = "tests.acceptance.jobs_app.broken"

        def counted() -> bool:
            text = scrape(url)
            return value(text, "pigeon_jobs_finished_total", task=add_name, outcome="succeeded") == 20

        wait_until(counted, timeout=30)  # settles are batched: the last ones land a moment later
        text = scrape(url)
        retried = value(text, "pigeon_jobs_finished_total", task=broken_name, outcome="retried")
        assert retried == 1  # max_attempts=2
        assert value(text, "pigeon_jobs_finished_total", task=broken_name, outcome="failed") == 1
        assert value(text, "pigeon_job_duration_seconds_count", task=add_name, queue="default") == 20
        assert value(text, "pigeon_job_queue_wait_seconds_count", task=add_name) == 20
        assert value(text, "pigeon_queue_depth", queue="elsewhere", state="queued") == 1
        assert value(text, "pigeon_queue_depth", queue="default", state="succeeded") == 20
        assert value(text, "pigeon_oldest_ready_job_age_seconds", queue="elsewhere") > 0
        assert held.status is JobState.QUEUED
    finally:
        stop(proc)


def test_dashboard_metrics_need_credentials(app: App, env: dict[str, str]) -> None:
    from tests.acceptance.jobs_app import add

    add.send(1, 2)
    proc, url = start(env, "dashboard", APP, "--port", "0", "--auth", "prom:scrape")
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            scrape(url.rstrip("/") + "/metrics")
        assert refused.value.code == 401
        refused.value.close()
        text = scrape(url.rstrip("/") + "/metrics", auth="prom:scrape")
        assert value(text, "pigeon_queue_depth", queue="default", state="queued") == 1
        assert value(text, "pigeon_workers") == 0
    finally:
        stop(proc)
