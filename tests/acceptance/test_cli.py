"""The CLI and real worker processes, end to end on the SQLite file."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pigeon import App, JobFailed, JobState
from tests.helpers import wait_until
from tests.storage import overwrite_envelope

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


@pytest.fixture
def app(env: dict[str, str]) -> Iterator[App]:
    from tests.acceptance import jobs_app

    jobs_app.app.url = env["PIGEON_URL"]  # the module's app, pointed at this test's file
    yield jobs_app.app
    jobs_app.app.close()


def pigeon(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pigeon", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=check,
        timeout=60,
    )


class Workers:
    """Worker processes started by a test, their output in files, all stopped at teardown."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = self.logs / f"worker-{len(self.procs)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pigeon", "worker", "tests.acceptance.jobs_app:app", *args],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        return proc

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        return (self.logs / f"worker-{self.procs.index(proc)}.log").read_text()

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)


@pytest.fixture
def workers(env: dict[str, str], tmp_path: Path) -> Iterator[Workers]:
    w = Workers(env, tmp_path)
    yield w
    w.stop_all()


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_kill_9_job_runs_again_on_another_worker(app: App, workers: Workers, tmp_path: Path) -> None:
    from tests.acceptance.jobs_app import mark

    record = tmp_path / "ran"
    victim = workers.start()
    h = mark.send(str(record), 60.0)
    wait_until(lambda: lines(record), what="the first worker started the job")
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    survivor = workers.start()
    # The dead worker's heartbeat stops; its job comes back well before the 30 s lease ends.
    wait_until(lambda: len(lines(record)) == 2, timeout=20, what="the job ran again")
    assert lines(record) == [str(victim.pid), str(survivor.pid)]
    assert h.record().attempts == 2


def test_sigterm_finishes_running_jobs_then_exits(app: App, workers: Workers, tmp_path: Path) -> None:
    from tests.acceptance.jobs_app import mark

    record = tmp_path / "ran"
    worker = workers.start("--grace", "30")
    h = mark.send(str(record), 0.5)
    wait_until(lambda: lines(record), what="the job started")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0, workers.output(worker)
    assert h.status is JobState.SUCCEEDED


def test_second_sigterm_hands_job_back(app: App, workers: Workers, tmp_path: Path) -> None:
    from tests.acceptance.jobs_app import mark

    record = tmp_path / "ran"
    worker = workers.start("--grace", "60")
    h = mark.send(str(record), 60.0)
    wait_until(lambda: lines(record), what="the job started")
    worker.send_signal(signal.SIGTERM)
    wait_until(lambda: "finishing running jobs" in workers.output(worker), what="the worker heard SIGTERM")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0, workers.output(worker)
    rec = h.record()
    assert rec.state is JobState.QUEUED and rec.attempts == 0, workers.output(worker)


def test_processes_and_burst(app: App, env: dict[str, str], tmp_path: Path) -> None:
    from tests.acceptance.jobs_app import mark

    record = tmp_path / "ran"
    handles = mark.send_many([(str(record), 0.05)] * 40)
    done = pigeon(env, "worker", "tests.acceptance.jobs_app:app", "--processes", "2", "--burst", "-c", "4")
    assert done.returncode == 0, done.stderr
    assert all(h.status is JobState.SUCCEEDED for h in handles)
    assert len(lines(record)) == 40
    assert len(set(lines(record))) == 2  # two worker processes shared the work


def _children(workers: Workers, supervisor: subprocess.Popen[bytes]) -> list[int]:
    found = re.search(r"supervising \d+ worker processes: ([\d, ]+)", workers.output(supervisor))
    return [int(pid) for pid in found.group(1).split(",")] if found else []


def test_processes_under_systemd_finish_jobs_when_every_process_gets_sigterm(
    app: App, workers: Workers, tmp_path: Path
) -> None:
    """systemd's KillMode=control-group signals the supervisor and each child at once."""
    from tests.acceptance.jobs_app import mark

    record = tmp_path / "ran"
    supervisor = workers.start("--processes", "2", "-c", "2", "--grace", "30")
    handles = mark.send_many([(str(record), 2.0)] * 2)
    wait_until(lambda: len(lines(record)) == 2, what="both jobs started")
    children = _children(workers, supervisor)
    assert len(children) == 2, workers.output(supervisor)
    for pid in [supervisor.pid, *children]:
        os.kill(pid, signal.SIGTERM)
    assert supervisor.wait(30) == 0, workers.output(supervisor)
    # Two SIGTERMs per child (systemd's and the supervisor's) are still one graceful stop.
    assert [h.status for h in handles] == [JobState.SUCCEEDED] * 2, workers.output(supervisor)


def test_a_second_signal_to_the_supervisor_stops_its_children_at_once(
    app: App, workers: Workers, tmp_path: Path
) -> None:
    from tests.acceptance.jobs_app import mark

    record = tmp_path / "ran"
    supervisor = workers.start("--processes", "2", "-c", "1", "--grace", "60")
    h = mark.send(str(record), 60.0)
    wait_until(lambda: lines(record), what="the job started")
    supervisor.send_signal(signal.SIGTERM)
    wait_until(lambda: "finishing running jobs" in workers.output(supervisor), what="the children heard it")
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(30) == 0, workers.output(supervisor)
    rec = h.record()
    assert rec.state is JobState.QUEUED and rec.attempts == 0, workers.output(supervisor)


def test_process_executor_and_timeout_kill(app: App, workers: Workers) -> None:
    from tests.acceptance.jobs_app import spin, square

    runaway = spin.send(30.0)
    handles = square.send_many([(i,) for i in range(6)])
    workers.start("-c", "4")
    assert [h.result(timeout=60) for h in handles] == [i * i for i in range(6)]
    with pytest.raises(JobFailed) as info:
        runaway.result(timeout=30)
    assert info.value.error_type == "builtins.TimeoutError"
    assert square.send(9).result(timeout=30) == 81  # the pool recovered


def test_enqueue_status_and_jobs_commands(app: App, env: dict[str, str]) -> None:
    sent = pigeon(env, "enqueue", "tests.acceptance.jobs_app:app", "add", "--args", "[2, 3]")
    job_id = sent.stdout.strip()
    assert app.job(job_id).status is JobState.QUEUED
    status = pigeon(env, "status", env["PIGEON_URL"])
    assert "default" in status.stdout and "queued" in status.stdout
    assert job_id in pigeon(env, "jobs", "list", env["PIGEON_URL"]).stdout
    assert "cancel: " + job_id in pigeon(env, "jobs", "cancel", env["PIGEON_URL"], job_id).stdout
    assert app.job(job_id).status is JobState.CANCELLED
    pigeon(env, "jobs", "retry", env["PIGEON_URL"], job_id)
    pigeon(env, "worker", "tests.acceptance.jobs_app:app", "--burst")
    shown = pigeon(env, "jobs", "show", env["PIGEON_URL"], job_id).stdout
    assert "succeeded" in shown and "5" in shown
    assert "purged 1 jobs" in pigeon(env, "jobs", "purge", env["PIGEON_URL"], "--yes").stdout


def test_pigeon_burst_in_the_environment_makes_the_worker_exit(app: App, env: dict[str, str]) -> None:
    job_id = pigeon(env, "enqueue", "tests.acceptance.jobs_app:app", "add", "--args", "[2, 3]").stdout.strip()
    # Without PIGEON_BURST honoured the worker would wait for work until the 60 s timeout.
    pigeon({**env, "PIGEON_BURST": "1"}, "worker", "tests.acceptance.jobs_app:app")
    assert app.job(job_id).status is JobState.SUCCEEDED
    with pytest.raises(subprocess.TimeoutExpired):  # --no-burst wins over the environment
        subprocess.run(
            [sys.executable, "-m", "pigeon", "worker", "tests.acceptance.jobs_app:app", "--no-burst"],
            env={**env, "PIGEON_BURST": "1"},
            cwd=ROOT,
            capture_output=True,
            timeout=3,
        )


def test_jobs_show_lists_every_failed_attempt(app: App, env: dict[str, str]) -> None:
    sent = pigeon(env, "enqueue", "tests.acceptance.jobs_app:app", "broken", "--args", '["cake"]')
    job_id = sent.stdout.strip()
    pigeon(env, "worker", "tests.acceptance.jobs_app:app", "--burst")
    shown = pigeon(env, "jobs", "show", env["PIGEON_URL"], job_id).stdout
    assert "failed (1) builtins.ValueError: no cake" in shown  # the first attempt
    assert "error builtins.ValueError: no cake" in shown and "Traceback" in shown  # the last, in full


def test_worker_outlives_a_malformed_job_and_jobs_commands_show_it(
    app: App, workers: Workers, env: dict[str, str], tmp_path: Path
) -> None:
    from tests.acceptance.jobs_app import add

    bad, good = add.send(1, 1), add.send(2, 3)
    asyncio.run(overwrite_envelope(env["PIGEON_URL"], bad.id, b"\x80\x04not [pigeon]\xff"))
    proc = workers.start("-c", "4")
    assert good.result(timeout=30) == 5
    wait_until(lambda: bad.status is JobState.FAILED, what="the malformed job failed")
    assert add.send(4, 4).result(timeout=30) == 8 and proc.poll() is None  # still serving
    listed = pigeon({**env, "COLUMNS": "200"}, "jobs", "list", env["PIGEON_URL"], "--state", "failed").stdout
    assert bad.id in listed and "pigeon.malformed" in listed
    shown = pigeon(env, "jobs", "show", env["PIGEON_URL"], bad.id).stdout
    assert "(malformed)" in shown and "not [pigeon]" in shown  # the stored bytes, as they are
    assert "error pigeon.MalformedJob: the stored envelope does not decode" in shown
    assert "malformed job" in workers.output(proc)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["enqueue", "tests.acceptance.jobs_app:app", "add", "--args", "[1]"], "missing a required argument"),
        (["enqueue", "tests.acceptance.jobs_app:app", "add", "--args", '["x", 1]'], "argument 'a'"),
        (["enqueue", "tests.acceptance.jobs_app:app", "nope"], "no task 'nope'"),
        (["enqueue", "tests.acceptance.jobs_app:app", "add", "--args", "[1,"], "must be JSON"),
        (["worker", "no_such_module:app"], "No module named"),
        (["status", "ftp://x"], "unknown broker URL scheme"),
    ],
)
def test_errors_are_one_line(env: dict[str, str], args: list[str], message: str) -> None:
    result = pigeon(env, *args, check=False)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("verb", [["status"], ["jobs", "list"], ["jobs", "purge"], ["jobs", "show", "x"]])
def test_inspection_verbs_refuse_a_sqlite_file_that_does_not_exist(
    env: dict[str, str], tmp_path: Path, verb: list[str]
) -> None:
    typo = tmp_path / "jbos" / "jobs.db"
    args = [*verb[:2], f"sqlite:///{typo}", *verb[2:]] if verb[0] == "jobs" else [*verb, f"sqlite:///{typo}"]
    done = pigeon(env, *args, check=False)
    assert done.returncode == 1 and "no SQLite database at" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not typo.parent.exists()  # nothing created


def test_task_names_resolve_the_same_way_everywhere(app: App, env: dict[str, str]) -> None:
    job_id = pigeon(env, "enqueue", "tests.acceptance.jobs_app:app", "add", "--args", "[1, 2]").stdout.strip()
    for target in (env["PIGEON_URL"], "tests.acceptance.jobs_app:app"):
        assert job_id in pigeon(env, "jobs", "list", target, "--task", "add").stdout
        assert job_id in pigeon(env, "jobs", "list", target, "--task", "tests.acceptance.jobs_app.add").stdout
    refused = pigeon(env, "jobs", "retry", env["PIGEON_URL"], job_id, check=False)
    assert f"job {job_id} was not retried" in refused.stderr
    pigeon(env, "jobs", "cancel", env["PIGEON_URL"], job_id)
    again = pigeon(env, "jobs", "cancel", env["PIGEON_URL"], job_id, check=False)
    assert f"job {job_id} was not cancelled" in again.stderr


def test_unrouted_events_show_as_what_they_are(app: App, env: dict[str, str]) -> None:
    from datetime import UTC, datetime

    assert app.publish("nobody.listens", {"n": 1}) == []
    env = {**env, "COLUMNS": "200"}  # rich fits tables to the terminal's width
    listed = pigeon(env, "jobs", "list", env["PIGEON_URL"]).stdout
    assert "unrouted" in listed and "nobody.listens" in listed and "cancelled" not in listed
    assert datetime.now(UTC).strftime("%Y-%m-%d") in listed and "1970" not in listed
    (record,) = [re.findall(r"[0-9a-f]{32}", line)[0] for line in listed.splitlines() if "nobody" in line]
    shown = pigeon(env, "jobs", "show", env["PIGEON_URL"], record).stdout
    assert "unrouted" in shown and "3000" not in shown and "1970" not in shown, shown


def test_worker_logs_each_job_end_and_failures_with_their_traceback_as_json(
    app: App, env: dict[str, str], tmp_path: Path
) -> None:
    import json

    from tests.acceptance.jobs_app import broken, mark

    ok = mark.send(str(tmp_path / "ran"))
    bad = broken.send("cake")
    done = pigeon(env, "worker", "tests.acceptance.jobs_app:app", "--burst", "--log-format", "json")
    records = [json.loads(line) for line in done.stderr.splitlines()]  # every line is one object
    ended = [r for r in records if r.get("job_id") == ok.id and r["message"].startswith("job succeeded")]
    assert len(ended) == 1 and ended[0]["level"] == "INFO" and ended[0]["duration"] >= 0
    assert ended[0]["task"] == mark.name
    (failed,) = [r for r in records if r.get("job_id") == bad.id and r["level"] == "ERROR"]
    assert "Traceback" in failed["exception"] and "ValueError: no cake" in failed["exception"]
