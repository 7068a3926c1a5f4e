"""The bridge with the real Celery as producer: Celery sends, pigeon runs, Celery reads results."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from pigeon import App, JobState
from tests.conftest import server_url
from tests.helpers import wait_until

celery = pytest.importorskip("celery")
ROOT = Path(__file__).parent.parent.parent
APP = "tests.integration.celery_bridge_app:capp"


class Setup:
    def __init__(self, tmp_path: Path, kind: str) -> None:
        self.redis_url = server_url("redis")
        self.broker_url = self.redis_url if kind == "redis" else server_url("rabbitmq")
        self.kind = kind
        self.queue = f"q_{uuid.uuid4().hex[:10]}"
        self.pigeon_url = f"sqlite:///{tmp_path}/jobs.db"
        self.logs = tmp_path
        self.env = {
            **os.environ,
            "PIGEON_URL": self.pigeon_url,
            "PYTHONPATH": str(ROOT),
            "PIGEON_POLL": "0.05",
        }
        self.procs: list[subprocess.Popen[bytes]] = []
        self.redis = redis.Redis.from_url(self.redis_url)

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pigeon", *args],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        return proc

    def bridge(self) -> subprocess.Popen[bytes]:
        return self.start(
            "bridge",
            "celery-bridge",
            APP,
            "--broker",
            self.broker_url,
            "--result-backend",
            self.redis_url,
            "-Q",
            self.queue,
        )

    def worker(self) -> subprocess.Popen[bytes]:
        return self.start("worker", "worker", APP)

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text()

    def producer(self) -> Any:
        """A Celery app as the project has it: JSON, a Redis broker and result backend."""
        app = celery.Celery("proj", broker=self.broker_url, backend=self.redis_url)
        app.conf.update(
            task_default_queue=self.queue,
            task_serializer="json",
            accept_content=["json"],
            result_serializer="json",
            broker_connection_retry_on_startup=False,
        )

        # Only their names matter: this app sends, the worker's runs them. Celery is untyped.
        @app.task(name="proj.add", shared=False)  # type: ignore[untyped-decorator]
        def add(x: int, y: int) -> int:
            raise NotImplementedError

        @app.task(name="proj.mul", shared=False)  # type: ignore[untyped-decorator]
        def mul(x: int, y: int) -> int:
            raise NotImplementedError

        @app.task(name="proj.fail", shared=False)  # type: ignore[untyped-decorator]
        def fail(why: str) -> None: ...

        return app

    def aside(self, kind: str) -> int:
        """How many messages the bridge set aside as ``held`` or ``rejected``."""
        name = f"pigeon.bridge.{kind}.{self.queue}"
        if self.kind == "redis":
            return int(self.redis.llen(name))
        import amqp  # type: ignore[import-untyped]

        with self._amqp() as conn:
            channel = conn.channel()
            try:
                return int(channel.queue_declare(name, passive=True).message_count)
            except amqp.exceptions.NotFound:
                return 0

    def _amqp(self) -> Any:
        import amqp

        host = self.broker_url.removeprefix("amqp://").rstrip("/").split("@")[-1]
        return amqp.Connection(host, userid="guest", password="guest")

    def delete_queues(self) -> None:
        """RabbitMQ keeps a queue until it is deleted: the test's own, and those the bridge made."""
        if self.kind != "rabbitmq":
            return
        with self._amqp() as conn:
            channel = conn.channel()
            for name in (self.queue, *(f"pigeon.bridge.{k}.{self.queue}" for k in ("held", "rejected"))):
                channel.queue_delete(name)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        self.redis.close()


@pytest.fixture(params=["redis", "rabbitmq"])
def setup(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Setup]:
    s = Setup(tmp_path, request.param)
    subprocess.run([sys.executable, "-m", "pigeon", "migrate", s.pigeon_url], check=True, env=s.env, cwd=ROOT)
    yield s
    s.stop()
    s.delete_queues()


def test_celery_sends_pigeon_runs_celery_reads(setup: Setup) -> None:
    setup.bridge()
    setup.worker()
    producer = setup.producer()
    add, mul, fail = producer.tasks["proj.add"], producer.tasks["proj.mul"], producer.tasks["proj.fail"]

    assert add.delay(2, 3).get(timeout=30) == 5
    later = add.apply_async((10, 5), countdown=1)
    assert producer.send_task("proj.shout", ("hi",)).get(timeout=30) == "HI"
    assert (add.s(1, 2) | mul.s(10) | add.s(4)).delay().get(timeout=30) == 34
    assert celery.group(add.s(i, i) for i in range(4)).delay().get(timeout=30) == [0, 2, 4, 6]
    assert later.get(timeout=30) == 15
    with pytest.raises(Exception, match="no luck") as failed:
        fail.delay("no luck").get(timeout=30)
    assert type(failed.value).__name__ == "ValueError"
    assert later.status == "SUCCESS"

    pigeon = App(setup.pigeon_url)
    try:
        rec = pigeon.job(later.id).record()  # the same id on both sides
        assert rec.state is JobState.SUCCEEDED and rec.job.run_at is not None
        assert rec.job.run_at - rec.job.enqueued_at > 0.5  # the countdown held on the pigeon side
    finally:
        pigeon.close()


def test_unknown_tasks_are_held_and_pickle_is_set_aside(setup: Setup) -> None:
    bridge = setup.bridge()
    producer = setup.producer()
    held = producer.send_task("proj.not_deployed_yet", (1,))
    pickled = producer.tasks["proj.add"].apply_async((1, 2), serializer="pickle")
    ok = producer.tasks["proj.add"].apply_async((1, 2))

    def listed() -> str:
        return subprocess.run(
            [sys.executable, "-m", "pigeon", "jobs", "list", setup.pigeon_url, "--queue", "celery.held"],
            env={**setup.env, "COLUMNS": "250"},
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    wait_until(lambda: f"held-{held.id}" in listed(), timeout=30, what="the held job listed")
    assert "proj.not_deployed_yet" in listed()
    wait_until(
        lambda: setup.aside("rejected") == 1,
        timeout=30,
        what="the pickle message set aside",
    )
    assert "only JSON messages are bridged (pickle is never deserialized)" in setup.log("bridge")
    assert setup.aside("held") == 1
    pigeon = App(setup.pigeon_url)
    try:
        wait_until(lambda: _exists(pigeon, ok.id), timeout=30, what="the JSON message stored")
        assert not _exists(pigeon, pickled.id)
    finally:
        pigeon.close()
    bridge.terminate()
    assert bridge.wait(10) == 0


def test_a_message_the_bridge_died_holding_is_stored_once(setup: Setup) -> None:
    if setup.kind != "redis":
        pytest.skip("RabbitMQ redelivers an unacknowledged message itself: see the cannot-store test")
    producer = setup.producer()
    r = producer.tasks["proj.add"].delay(20, 22)
    raw = setup.redis.rpop(setup.queue)
    assert isinstance(raw, bytes | str)
    # As if a bridge died after taking it (still in its processing list) and it was delivered again.
    setup.redis.lpush(f"pigeon.bridge.processing.{setup.queue}", raw)
    setup.redis.lpush(setup.queue, raw)
    setup.bridge()
    setup.worker()
    assert r.get(timeout=30) == 42
    pigeon = App(setup.pigeon_url)
    try:
        wait_until(lambda: setup.redis.llen(setup.queue) == 0, timeout=30, what="the queue drained")
        wait_until(
            lambda: setup.redis.llen(f"pigeon.bridge.processing.{setup.queue}") == 0,
            timeout=30,
            what="the processing list emptied",
        )
        jobs = pigeon.portal_call(_all_jobs(pigeon))
        assert [j.job.id for j in jobs] == [r.id]
    finally:
        pigeon.close()


def test_held_messages_run_once_their_task_is_deployed(setup: Setup) -> None:
    first = setup.bridge()
    producer = setup.producer()
    r = producer.send_task("proj.late", ("but fine",))
    wait_until(lambda: setup.aside("held") == 1, timeout=30, what="the message held")
    first.terminate()
    assert first.wait(10) == 0
    setup.env["DEPLOY_LATE"] = "1"  # the task ships; the bridge and a worker restart
    setup.bridge()
    setup.worker()
    assert r.get(timeout=30) == "late but fine"
    assert setup.aside("held") == 0
    pigeon = App(setup.pigeon_url)
    try:
        assert pigeon.job(f"held-{r.id}").record().state is JobState.CANCELLED  # the placeholder is done
        assert "retried 1 held messages" in setup.log("bridge")
    finally:
        pigeon.close()


def test_a_bridge_that_cannot_store_leaves_the_message_for_the_next(setup: Setup, tmp_path: Path) -> None:
    producer = setup.producer()
    r = producer.tasks["proj.add"].delay(40, 2)
    good_url = setup.env["PIGEON_URL"]
    (tmp_path / "a-file").write_text("")
    setup.env["PIGEON_URL"] = f"sqlite:///{tmp_path}/a-file/jobs.db"  # pigeon's store cannot open
    failing = setup.bridge()
    assert failing.wait(30) == 1  # it stops rather than acknowledge what it could not store
    assert "File exists" in setup.log("bridge")
    setup.env["PIGEON_URL"] = good_url
    setup.bridge()
    setup.worker()
    assert r.get(timeout=30) == 42
    pigeon = App(good_url)
    try:
        jobs = pigeon.portal_call(_all_jobs(pigeon))
        assert [j.job.id for j in jobs] == [r.id]
    finally:
        pigeon.close()


def _exists(app: App, job_id: str) -> bool:
    from pigeon import JobNotFound

    try:
        app.job(job_id).record()
    except JobNotFound:
        return False
    return True


async def _all_jobs(app: App) -> list[Any]:
    broker = await app.connection()
    return list(await broker.list_jobs(limit=100))


PRODUCER = """
import os, sys
import django
django.setup()
import celery
app = celery.Celery("proj", broker=os.environ["BROKER"], backend="django-db")
app.conf.update(task_default_queue=os.environ["QUEUE"], task_serializer="json", result_serializer="json")
print(app.send_task("proj.add", (2, 3)).get(timeout=30))
print((app.signature("proj.add", (1, 2)) | app.signature("proj.mul", (10,))).delay().get(timeout=30))
try:
    app.send_task("proj.fail", ("in the database",)).get(timeout=30)
except Exception as exc:
    print(type(exc).__name__, exc)
"""


def test_results_in_the_django_database_backend(tmp_path: Path) -> None:
    pytest.importorskip("django_celery_results")
    setup = Setup(tmp_path, "redis")
    setup.env.update(
        DJANGO_SETTINGS_MODULE="tests.integration.celery_django_settings",
        CELERY_RESULTS_DB=str(tmp_path / "results.sqlite3"),
        BROKER=setup.redis_url,
        QUEUE=setup.queue,
    )
    try:
        for argv in (["pigeon", "migrate", setup.pigeon_url], ["django", "migrate", "-v", "0"]):
            subprocess.run([sys.executable, "-m", *argv], check=True, env=setup.env, cwd=ROOT)
        setup.start(
            "bridge",
            "celery-bridge",
            APP,
            "--broker",
            setup.redis_url,
            "--result-backend",
            "django-db",
            "-Q",
            setup.queue,
        )
        setup.worker()
        done = subprocess.run(
            [sys.executable, "-c", PRODUCER],
            env=setup.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr + setup.log("bridge")
        assert done.stdout.splitlines() == ["5", "30", "ValueError in the database"]
    finally:
        setup.stop()
