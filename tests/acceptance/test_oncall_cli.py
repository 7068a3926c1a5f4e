"""The on-call commands as an operator runs them: bulk by filter, --json, workers, paused queues."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pigeon import App, JobState
from tests.acceptance.test_cli import ROOT, pigeon
from tests.helpers import wait_until

APP = "tests.acceptance.jobs_app:app"


def fail_some(app: App, env: dict[str, str], n: int) -> list[str]:
    from tests.acceptance.jobs_app import add, broken

    ids = [broken.send(f"thing{i}").id for i in range(n)]
    add.send(1, 2)
    pigeon(env, "worker", APP, "--burst")
    assert all(app.job(i).status is JobState.FAILED for i in ids)
    return ids


def test_bulk_retry_asks_then_retries_what_the_filter_matches(app: App, env: dict[str, str]) -> None:
    ids = fail_some(app, env, 3)
    refused = subprocess.run(
        [sys.executable, "-m", "pigeon", "jobs", "retry", APP, "--task", "broken", "--since", "1h"],
        env=env,
        cwd=ROOT,
        input="n\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "3 jobs match (failed,cancelled)" in refused.stdout
    assert "retry 3 jobs?" in refused.stdout
    assert refused.returncode == 1  # "no" aborts
    assert all(app.job(i).status is JobState.FAILED for i in ids)

    done = pigeon(env, "jobs", "retry", APP, "--task", "broken", "--state", "failed", "--yes")
    assert "3 jobs match (failed)" in done.stdout and "retried 3 jobs" in done.stdout
    assert all(app.job(i).status is JobState.QUEUED for i in ids)
    none = pigeon(
        env, "jobs", "retry", APP, "--task", "broken", "--since", "2026-01-01", "--until", "1h", "--yes"
    )
    assert "0 jobs match" in none.stdout


def test_bulk_cancel_and_purge_by_queue(app: App, env: dict[str, str]) -> None:
    from tests.acceptance.jobs_app import add

    kept = add.options(queue="keep").send(1, 1).id
    gone = [add.options(queue="mail").send(i, i).id for i in range(4)]
    out = pigeon(env, "jobs", "cancel", APP, "--queue", "mail", "-y").stdout
    assert "4 jobs match (queued,scheduled,running)" in out and "cancelled 4 jobs" in out
    assert app.job(kept).status is JobState.QUEUED
    out = pigeon(env, "jobs", "purge", APP, "--queue", "mail", "--search", "a=2", "-y").stdout
    assert "1 jobs match" in out and "purged 1 jobs" in out
    listed = json.loads(pigeon(env, "jobs", "list", APP, "--queue", "mail", "--json").stdout)
    assert sorted(r["id"] for r in listed) == sorted(set(gone) - {gone[2]})
    assert all(r["state"] == "cancelled" for r in listed)


def test_bad_filters_are_refused_with_a_clear_error(app: App, env: dict[str, str]) -> None:
    for args, message in [
        (["--since", "yesterday"], "write a duration ago"),
        (["--state", "done"], "state 'done': one of queued"),
        (["--search", "order_id"], "write argument=value"),
    ]:
        failed = pigeon(env, "jobs", "retry", APP, *args, "--yes", check=False)
        assert failed.returncode == 1 and message in failed.stderr, failed.stderr


def test_json_on_inspection_verbs(app: App, env: dict[str, str]) -> None:
    ids = fail_some(app, env, 1)
    shown = json.loads(pigeon(env, "jobs", "show", APP, ids[0], "--json").stdout)
    assert shown["state"] == "failed" and shown["arguments"] == {"what": "thing0"}
    assert shown["errors"][-1]["type"] == "builtins.ValueError"
    status = json.loads(pigeon(env, "status", APP, "--json").stdout)
    assert status["queues"][0]["counts"]["failed"] == 1
    assert json.loads(pigeon(env, "schedules", APP, "--json").stdout) == []
    assert json.loads(pigeon(env, "workers", APP, "--json").stdout) == []
    queues = json.loads(pigeon(env, "queues", APP, "--json").stdout)
    assert queues == [{"queue": "default", "paused": False, "counts": {"failed": 1, "succeeded": 1}}]


def test_tables_are_not_cut_when_piped(app: App, env: dict[str, str]) -> None:
    from tests.acceptance.jobs_app import add

    add.options(queue="a-rather-long-queue-name-that-would-not-fit-in-eighty-columns").send(1, 1)
    pigeon(
        env, "worker", APP, "--burst", "-Q", "a-rather-long-queue-name-that-would-not-fit-in-eighty-columns"
    )
    out = pigeon(env, "jobs", "list", APP).stdout
    assert "succeeded" in out and "a-rather-long-queue-name-that-would-not-fit-in-eighty-columns" in out
    assert "…" not in out


def test_a_paused_queue_is_not_claimed_by_a_worker(app: App, env: dict[str, str], tmp_path: Path) -> None:
    from tests.acceptance.jobs_app import add

    assert "paused: mail" in pigeon(env, "queues", APP, "pause", "mail").stdout
    held = add.options(queue="mail").send(1, 1)
    free = add.send(2, 2)
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "pigeon", "worker", APP, "-Q", "default,mail"],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=log,
    )
    try:
        # One claim reads both queues: the one that took `free` (enqueued after `held`) passed `held` over.
        wait_until(lambda: app.job(free.id).status is JobState.SUCCEEDED, timeout=30)
        assert app.job(held.id).status is JobState.QUEUED
        assert "paused" in pigeon(env, "queues", APP).stdout
        assert "resumed: mail" in pigeon(env, "queues", APP, "resume", "mail").stdout
        wait_until(lambda: app.job(held.id).status is JobState.SUCCEEDED, timeout=30)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        log.close()


def test_workers_shows_the_jobs_each_holds(app: App, env: dict[str, str], tmp_path: Path) -> None:
    from tests.acceptance.jobs_app import mark

    job = mark.send(str(tmp_path / "marks"), hold=30)
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "pigeon", "worker", APP], env=env, cwd=ROOT, stdout=log, stderr=log
    )
    try:
        wait_until(lambda: app.job(job.id).status is JobState.RUNNING, timeout=30)
        listed = json.loads(pigeon(env, "workers", APP, "--json").stdout)
        assert [j["id"] for w in listed for j in w["jobs"]] == [job.id]
        assert listed[0]["pid"] == worker.pid and listed[0]["heartbeat_age"] < 5
        table = pigeon(env, "workers", APP).stdout
        assert job.id in table and "tests.acceptance.jobs_app.mark" in table
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        log.close()
