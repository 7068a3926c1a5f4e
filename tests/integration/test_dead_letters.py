"""Failed jobs, listed and requeued by ``pigeon jobs dead`` / ``requeue-dead``: RabbitMQ alone's
dead-letter queues, and a store's FAILED records, through the same two commands."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pigeon.brokers.base import create_broker
from pigeon.brokers.rabbitmq._alone import AloneBroker
from pigeon.job import ErrorInfo, Job, Outcome, OutcomeKind
from tests.conftest import delete_rabbitmq_queues, server_url, with_namespace
from tests.helpers import eventually, make_job

Q = ("default",)


def pigeon(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pigeon", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
    )


async def fail(broker: AloneBroker, jobs: list[Job], error: ErrorInfo) -> None:
    """Enqueue ``jobs``, claim them and fail them for good."""
    await broker.enqueue(jobs)
    claims = await eventually(
        lambda: broker.claim("w", Q, len(jobs), 30), lambda c: len(c) == len(jobs), what="the jobs"
    )
    outcomes = [Outcome(job_id=c.job.id, token=c.token, kind=OutcomeKind.FAIL, error=error) for c in claims]
    assert await broker.settle(outcomes) == [True] * len(jobs)


@pytest.fixture
async def alone() -> AsyncIterator[tuple[str, AloneBroker]]:
    url = with_namespace(server_url("rabbitmq"), f"t_{uuid.uuid4().hex[:12]}")
    broker = create_broker(url, {})
    assert isinstance(broker, AloneBroker)
    await broker.open()
    yield url, broker
    await broker.delete_queues()
    await broker.close()
    await delete_rabbitmq_queues(url, queues=Q)


@pytest.mark.server
async def test_dead_letters_are_read_in_place_and_requeued_with_fresh_attempts(
    alone: tuple[str, AloneBroker],
) -> None:
    _, broker = alone
    jobs = [make_job(max_attempts=2) for _ in range(3)]
    await fail(broker, jobs, ErrorInfo("app.Boom", "it broke", "Traceback ..."))
    ids = sorted(j.id for j in jobs)

    async def dead_ids() -> list[str]:
        return sorted(r.job.id for r in await broker.dead_letters(Q))

    await eventually(dead_ids, lambda got: got == ids, what="three dead letters")
    first = await broker.dead_letters(Q, limit=3)
    assert {r.error.type for r in first if r.error} == {"app.Boom"} and {r.attempts for r in first} == {1}
    assert await dead_ids() == ids  # reading left them there
    assert len(await broker.dead_letters(Q, limit=2)) == 2

    assert await broker.requeue_dead(Q, [jobs[0].id]) == 1
    (again,) = await eventually(lambda: broker.claim("w", Q, 5, 30), what="the requeued job")
    assert again.job.id == jobs[0].id and again.attempt == 1  # fresh attempts
    assert await dead_ids() == sorted(j.id for j in jobs[1:])
    assert await broker.requeue_dead(Q, ["no-such-job"]) == 0
    assert await dead_ids() == sorted(j.id for j in jobs[1:])  # a miss hands every letter back


@pytest.mark.server
async def test_the_cli_lists_and_requeues_rabbitmq_alones_dead_letters(
    alone: tuple[str, AloneBroker],
) -> None:
    url, broker = alone
    jobs = [make_job() for _ in range(2)]
    await fail(broker, jobs, ErrorInfo("app.Boom", "card declined"))

    listed = pigeon("jobs", "dead", url, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert sorted(r["id"] for r in rows) == sorted(j.id for j in jobs)
    assert {r["state"] for r in rows} == {"failed"}
    shown = pigeon("jobs", "dead", url)
    assert "app.Boom: card declined" in shown.stdout

    refused = pigeon("jobs", "requeue-dead", url)
    assert refused.returncode != 0 and "--all" in refused.stderr
    done = pigeon("jobs", "requeue-dead", url, "--all")
    assert done.returncode == 0 and "requeued 2 jobs" in done.stdout, done.stderr
    claims = await eventually(lambda: broker.claim("w", Q, 5, 30), lambda c: len(c) == 2, what="both again")
    assert sorted(c.job.id for c in claims) == sorted(j.id for j in jobs)
    assert "no failed jobs" in pigeon("jobs", "dead", url).stdout


def test_the_same_commands_read_a_stores_failed_jobs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    app_file = tmp_path / "shopapp.py"
    app_file.write_text(
        "from pigeon import App\n"
        f"app = App({url!r})\n"
        "@app.task(max_attempts=1)\n"
        "def charge(order: int) -> None:\n"
        "    raise ValueError(f'order {order} declined')\n"
    )
    script = (
        "from shopapp import app, charge\n"
        "h = charge.send(7)\n"
        "other = charge.options(queue='refunds').send(8)\n"  # a queue no task of the app names
        "worker = app.run_worker_in_thread(queues=('default', 'refunds'))\n"
        "for handle in (h, other):\n"
        "    try: handle.result(timeout=30)\n"
        "    except Exception as exc: print(type(exc).__name__)\n"
        "worker.stop()\n"
        "print(other.id, h.id)\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path
    )
    assert ran.returncode == 0 and ran.stdout.startswith("JobFailed"), ran.stdout + ran.stderr
    other_id, job_id = ran.stdout.split()[-2:]
    rows = json.loads(pigeon("jobs", "dead", "shopapp:app", "--json", cwd=tmp_path).stdout)
    assert sorted(r["id"] for r in rows) == sorted([job_id, other_id])  # every queue, by default
    listed = pigeon("jobs", "dead", "shopapp:app", "--queue", "default", "--json", cwd=tmp_path)
    assert [r["id"] for r in json.loads(listed.stdout)] == [job_id]
    done = pigeon("jobs", "requeue-dead", "shopapp:app", job_id, cwd=tmp_path)
    assert done.returncode == 0 and "requeued 1 jobs" in done.stdout, done.stderr
    rest = pigeon("jobs", "requeue-dead", "shopapp:app", "--all", cwd=tmp_path)
    assert rest.returncode == 0 and "requeued 1 jobs" in rest.stdout, rest.stderr
    assert "no failed jobs" in pigeon("jobs", "dead", "shopapp:app", cwd=tmp_path).stdout
