"""A process's life cycle as a user runs it: scripts that exit, workers stopped by signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pigeon import App, JobState
from tests.conftest import url_for
from tests.helpers import wait_until

ROOT = Path(__file__).parents[2]
WORKER = [sys.executable, "-m", "pigeon", "worker", "tests.acceptance.jobs_app:app"]
STORED = ("sqlite", "postgres", "redis")  # the brokers a job outlives its process on

EXIT_MARGIN = 2.0
"""The documented bound (README, "Workers"): a stopped worker is gone within --grace plus this."""


@pytest.fixture(params=STORED)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    url = url_for(request.param, tmp_path)
    app = App(url)
    app.migrate()
    app.close()
    yield url


def _env(url: str) -> dict[str, str]:
    return {
        **os.environ,
        "PIGEON_URL": url,
        "PYTHONPATH": str(ROOT),
        "PIGEON_POLL": "0.05",
        "PIGEON_HEARTBEAT": "0.2",
    }


SCRIPT = """
    import os

    from pigeon import App

    app = App(os.environ["PIGEON_URL"])


    @app.task
    def add(a: int, b: int) -> int:
        return a + b


    print(add.send(1, 2).id)
"""


def test_a_script_that_sends_exits_silently_with_the_job_stored(url: str, tmp_path: Path) -> None:
    script = tmp_path / "send.py"
    script.write_text(textwrap.dedent(SCRIPT))
    checker = App(url)
    try:
        for _ in range(4):  # the pool's tasks were left pending now and then, not every time
            done = subprocess.run(
                [sys.executable, str(script)], env=_env(url), capture_output=True, text=True, timeout=60
            )
            assert (done.returncode, done.stderr) == (0, "")
            assert checker.job(done.stdout.strip()).status is JobState.QUEUED
    finally:
        checker.close()


FORKING = """
    import os
    import sys

    from pigeon import App

    app = App(os.environ["PIGEON_URL"])


    @app.task
    def add(a: int, b: int) -> int:
        return a + b


    def say(job_id: str) -> None:
        os.write(1, f"{job_id}\\n".encode())  # one write: the processes' lines do not interleave


    say(add.send(0, 0).id)  # the parent's connection, kept open
    children = []
    for c in range(3):  # a pre-forking server's workers, after the master sent a job
        pid = os.fork()
        if pid == 0:
            for i in range(30):  # at the same time as its siblings
                say(add.send(c, i).id)
            sys.exit(0)  # an orderly exit: the app closes its connections, and only its own
        children.append(pid)
    for pid in children:
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    say(add.send(9, 9).id)
"""


def test_forked_children_send_on_connections_of_their_own(url: str, tmp_path: Path) -> None:
    script = tmp_path / "fork.py"
    script.write_text(textwrap.dedent(FORKING))
    done = subprocess.run(
        [sys.executable, str(script)], env=_env(url), capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stderr) == (0, "")
    ids = done.stdout.split()
    checker = App(url)
    try:
        assert len(set(ids)) == 92
        assert all(checker.job(i).status is JobState.QUEUED for i in ids)
    finally:
        checker.close()


@pytest.mark.parametrize("task", ["mark", "mark_async"])
def test_sigterm_hands_jobs_back_within_the_grace(url: str, tmp_path: Path, task: str) -> None:
    from tests.acceptance import jobs_app

    grace = 2.0
    record = tmp_path / "ran"
    app = App(url)
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [*WORKER, "--grace", str(grace)],
            env=_env(url),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        h = app.job(app.enqueue([getattr(jobs_app, task).make_job((str(record), 30.0), {})])[0].id)
        wait_until(lambda: record.exists() and record.read_text(), timeout=30, what="the job started")
        sent = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        worker.wait(grace + 30)
        took = time.monotonic() - sent
        output = log.read_text()
        assert worker.returncode == 0, output
        assert grace <= took < grace + EXIT_MARGIN, f"exited {took:.2f} s after SIGTERM\n{output}"
        rec = h.record()
        assert (rec.state, rec.attempts) == (JobState.QUEUED, 0), output
        assert "Traceback" not in output
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
        app.close()


def test_a_burst_run_says_nothing_of_threads_when_every_job_succeeded(url: str, tmp_path: Path) -> None:
    from tests.acceptance.jobs_app import mark

    app = App(url)
    try:
        record = tmp_path / "ran"
        handles = app.enqueue([mark.make_job((str(record), 0.01), {}) for _ in range(40)])
        done = subprocess.run(
            [*WORKER, "--burst", "-c", "16"],
            env=_env(url),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert all(app.job(h.id).status is JobState.SUCCEEDED for h in handles), done.stderr
        assert "WARNING" not in done.stderr and "still running" not in done.stderr, done.stderr
    finally:
        app.close()


HOST = """
    import os, pathlib, sys, time

    sys.path.insert(0, os.environ["ROOT"])
    from pigeon import App
    from tests.acceptance import jobs_app

    app = jobs_app.app
    app.url = os.environ["PIGEON_URL"]
    app.run_worker_in_thread(grace={grace}, poll=0.05, heartbeat=0.2)
    record = pathlib.Path(os.environ["RECORD"])
    handle = getattr(jobs_app, os.environ["TASK"]).send(str(record), 30.0)
    print(handle.id, flush=True)
    while not record.exists():
        time.sleep(0.01)
    # The script ends here with the job running, as a web server's process ends on Ctrl-C.
"""


@pytest.mark.parametrize("task", ["mark", "mark_async"])
def test_a_host_process_exiting_stops_its_worker_thread_within_the_grace(
    url: str, tmp_path: Path, task: str
) -> None:
    grace = 1.0
    script = tmp_path / "host.py"
    script.write_text(textwrap.dedent(HOST.format(grace=grace)))
    record = tmp_path / "ran"
    env = {**_env(url), "ROOT": str(ROOT), "RECORD": str(record), "TASK": task}
    proc = subprocess.Popen(
        [sys.executable, str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = proc.communicate(timeout=grace + 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert (proc.returncode, err) == (0, "handing 1 unfinished jobs back\n")  # logging's last resort
    took = time.time() - record.stat().st_mtime  # from the job's start to now, the process gone
    assert took < grace + EXIT_MARGIN, f"the process outlived its worker's grace by {took - grace:.2f} s"
    app = App(url)
    try:
        rec = app.job(out.split()[0]).record()
    finally:
        app.close()
    assert (rec.state, rec.attempts) == (JobState.QUEUED, 0)
