"""enqueue() inside transaction.atomic(): written in the transaction, or sent on commit."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from django.tasks import TaskResultStatus
from django.tasks.exceptions import TaskResultDoesNotExist

from pigeon.contrib.django import get_app
from pigeon.errors import JobNotFound
from tests.django.testapp import tasks
from tests.django.testapp.models import Ran
from tests.helpers import wait_until


class Rollback(Exception):
    pass


def visible_outside(alias: str, job_id: str) -> bool:
    """Whether the broker's own connection (a worker's view) sees the job."""
    try:
        get_app(alias).job(job_id).record()
    except JobNotFound:
        return False
    return True


def ran(alias: str, label: str) -> bool:
    return Ran.objects.filter(label=label).exists()  # tasks.record writes to the default database


def test_uncommitted_job_is_invisible_then_runs_on_commit(alias: str, worker: Any) -> None:
    t = tasks.record.using(backend=alias)
    db = "pg" if alias == "pg" else "default"
    with transaction.atomic(using=db):
        result = t.enqueue(f"txn-{alias}")
        assert not visible_outside(alias, result.id)
        if alias == "pg":
            # The worker is live: it runs a job committed later, and still not ours.
            marker = get_app(alias).register(tasks.add).send(1, 2)  # the broker's connection: autocommits
            wait_until(lambda: marker.record().state.is_final, what="the worker ran the marker")
            assert not visible_outside(alias, result.id)
        assert not ran(alias, f"txn-{alias}")
    wait_until(lambda: t.get_result(result.id).status is TaskResultStatus.SUCCESSFUL, what="ran after commit")
    assert ran(alias, f"txn-{alias}")


def test_rolled_back_job_never_exists(alias: str, worker: Any) -> None:
    t = tasks.record.using(backend=alias)
    db = "pg" if alias == "pg" else "default"
    with pytest.raises(Rollback), transaction.atomic(using=db):
        rolled_back = t.enqueue(f"rollback-{alias}")
        raise Rollback
    after = t.enqueue(f"after-{alias}")  # the worker takes jobs in order: once this ran, it had its chance
    wait_until(lambda: t.get_result(after.id).is_finished, what="a later job ran")
    with pytest.raises(TaskResultDoesNotExist):
        t.get_result(rolled_back.id)
    assert not ran(alias, f"rollback-{alias}")


def test_savepoint_rollback_discards_only_its_jobs(alias: str) -> None:
    t = tasks.add.using(backend=alias)
    db = "pg" if alias == "pg" else "default"
    with transaction.atomic(using=db):
        kept = t.enqueue(1, 1)
        with pytest.raises(Rollback), transaction.atomic(using=db):
            dropped = t.enqueue(2, 2)
            raise Rollback
    assert visible_outside(alias, kept.id)
    assert not visible_outside(alias, dropped.id)


def test_enqueued_signal_waits_for_commit(alias: str) -> None:
    from django.tasks.signals import task_enqueued

    got: list[str] = []

    def receiver(sender: Any, task_result: Any, **kwargs: Any) -> None:
        got.append(task_result.id)

    task_enqueued.connect(receiver)
    try:
        db = "pg" if alias == "pg" else "default"
        with transaction.atomic(using=db):
            result = tasks.add.using(backend=alias).enqueue(1, 2)
            assert got == []
        assert got == [result.id]
    finally:
        task_enqueued.disconnect(receiver)


def test_queue_elsewhere_is_sent_on_commit() -> None:
    t = tasks.outside_add
    with transaction.atomic():
        result = t.enqueue(3, 4)
        with pytest.raises(TaskResultDoesNotExist):
            t.get_result(result.id)
    assert t.get_result(result.id).status is TaskResultStatus.READY

    with pytest.raises(Rollback), transaction.atomic():
        dropped = t.enqueue(5, 6)
        raise Rollback
    with pytest.raises(TaskResultDoesNotExist):
        t.get_result(dropped.id)

    app = get_app("outside")
    thread = app.run_worker_in_thread(queues=["default"], poll=0.05)
    try:
        wait_until(lambda: t.get_result(result.id).is_finished, what="outside job ran")
    finally:
        thread.stop(timeout=10)
    assert t.get_result(result.id).return_value == 7
