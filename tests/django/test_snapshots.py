"""Model signals published as frozen snapshots, only when the transaction commits."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction

from pigeon.contrib.django import ModelSnapshot
from pigeon.contrib.django.snapshots import snapshot
from tests.django.testapp import handlers
from tests.django.testapp.models import Customer, Note, Order
from tests.helpers import wait_until


class Rollback(Exception):
    pass


@pytest.fixture(autouse=True)
def forget_seen() -> None:
    with handlers.seen_lock:
        handlers.seen.clear()


def seen(signal: str) -> list[ModelSnapshot]:
    with handlers.seen_lock:
        return [s for s in handlers.seen if s.signal == signal]


@pytest.mark.parametrize("alias", ["default"])
def test_cascade_publishes_one_frozen_snapshot_per_deleted_row(alias: str, worker: Any) -> None:
    ada = Customer.objects.create(name="Ada", email="ada@example.com")
    orders = [Order.objects.create(customer=ada, total=Decimal("9.50")) for _ in range(3)]
    wait_until(lambda: len(seen("post_save")) == 1, what="post_save event")
    customer_pk, order_pks = ada.pk, {o.pk for o in orders}
    ada.delete()
    wait_until(lambda: len(seen("post_delete")) == 4, what="one event per deleted row")
    deleted = seen("post_delete")
    (customer,) = [s for s in deleted if s.model == "testapp.customer"]
    assert customer.pk == customer_pk and customer.fields["email"] == "ada@example.com"
    assert {s.pk for s in deleted if s.model == "testapp.order"} == order_pks
    order = next(s for s in deleted if s.model == "testapp.order")
    assert order.fields["customer_id"] == customer_pk and order.fields["total"] == "9.50"
    with pytest.raises(TypeError):
        order.fields["total"] = "0"  # type: ignore[index]
    with pytest.raises(AttributeError):
        order.pk = 1  # type: ignore[misc]
    assert order.at.tzinfo is not None


@pytest.mark.parametrize("alias", ["default"])
def test_rolled_back_delete_publishes_nothing(alias: str, worker: Any) -> None:
    bob = Customer.objects.create(name="Bob", email="bob@example.com")
    wait_until(lambda: len(seen("post_save")) == 1, what="post_save event")
    bob_pk = bob.pk
    with pytest.raises(Rollback), transaction.atomic():
        bob.delete()
        raise Rollback
    eve = Customer.objects.create(name="Eve", email="eve@example.com")  # handled in order after it
    wait_until(lambda: len(seen("post_save")) == 2, what="a later event")
    assert seen("post_delete") == []
    assert Customer.objects.filter(pk=bob_pk).exists() and eve.pk


def test_snapshot_of_an_instance() -> None:
    c = Customer(pk=7, name="Zed", email="z@example.com")
    snap = snapshot(c, "post_save", created=True)
    assert snap.model == "testapp.customer" and snap.pk == 7 and snap.created is True
    assert dict(snap.fields) == {"id": 7, "name": "Zed", "email": "z@example.com"}


def test_postgres_snapshots() -> None:
    from pigeon.contrib.django import get_app
    from tests.django.conftest import pg_or_skip

    pg_or_skip()
    from tests.django.testapp import pg_tasks

    with pg_tasks.seen_lock:
        pg_tasks.seen.clear()
    note = Note.objects.using("pg").create(text="hello")
    pk = note.pk
    with get_app("pg").run_worker_in_thread(poll=0.05):
        note.delete()
        wait_until(lambda: len(pg_tasks.seen) == 1, what="note event")
    assert pg_tasks.seen[0].pk == pk and pg_tasks.seen[0].fields["text"] == "hello"


@pytest.mark.parametrize("alias", ["default"])
def test_an_unhandled_snapshot_is_recorded_not_left_pending(alias: str, worker: Any) -> None:
    from pigeon.contrib.django import forward_signals, get_app
    from pigeon.job import JobState

    forward_signals(Note, ["post_save"], topic="unheard")
    with transaction.atomic():
        Note.objects.create(text="nobody listens")
    app = get_app(alias)

    def records() -> list[Any]:
        return app.portal_call(_unrouted(app))

    found = wait_until(records, what="the unhandled event recorded")
    assert {r.state for r in found} == {JobState.CANCELLED}  # closed at once: nothing pending, pruned later


async def _unrouted(app: Any) -> list[Any]:
    broker = await app.connection()
    return list(await broker.list_jobs(queue="pigeon.unrouted"))
