"""Model signals as frozen snapshots, published as pigeon events when the transaction commits.

::

    forward_signals(Order, ["post_save", "post_delete"], topic="orders")

    @get_app().on("orders.post_delete")
    def notify_customer(snapshot: ModelSnapshot) -> None: ...

The snapshot is taken when the signal fires (a deleted row's data survives its
delete) and written with the transaction: when the queue lives in the Django
database the event jobs are part of it, otherwise they are published on
commit. A rollback publishes nothing. Handlers get a decoded, frozen copy; no
ORM instance crosses into a handler. A cascade sends one signal, so one event,
per deleted object of a forwarded model.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

import msgspec
from django.db import connections, models, router, transaction
from django.db.models import signals as model_signals
from django.db.models.fields.files import FieldFile

from pigeon import codec
from pigeon.contrib.django._app import get_app
from pigeon.contrib.django.dbapi import enqueue_in_django
from pigeon.events import check_topic, fan_out, is_unrouted

FORWARDABLE = ("post_save", "post_delete", "pre_delete", "pre_save")


class ModelSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """One model instance as it was when a signal fired.

    Attributes:
        model: the model's label, lower case (``"shop.order"``).
        pk: the primary key.
        fields: concrete field values by attribute name (foreign keys as their
            ids, ``customer_id``); dates, decimals and UUIDs as JSON gives them
            (ISO strings, strings). A read-only mapping in handlers.
        signal: ``"post_save"``, ``"post_delete"``, ….
        at: when the signal fired (aware, UTC).
        created: for ``post_save``, whether the row was inserted.
    """

    model: str
    pk: Any
    fields: Mapping[str, Any]
    signal: str
    at: dt.datetime
    created: bool | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.fields, MappingProxyType):  # frozen all the way down
            msgspec.structs.force_setattr(self, "fields", codec.freeze(dict(self.fields)))


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dt.datetime | dt.date | dt.time | dt.timedelta | decimal.Decimal | uuid.UUID):
        return value
    if isinstance(value, FieldFile):
        return value.name or None
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def snapshot(instance: models.Model, signal: str, created: bool | None = None) -> ModelSnapshot:
    """A frozen copy of ``instance``'s concrete fields now."""
    opts = instance._meta
    fields = {f.attname: _plain(f.value_from_object(instance)) for f in opts.concrete_fields}
    return ModelSnapshot(
        model=opts.label_lower,
        pk=_plain(instance.pk),
        fields=fields,
        signal=signal,
        at=dt.datetime.now(dt.UTC),
        created=created,
    )


def publish_on_commit(topic: str, payload: ModelSnapshot, *, using: str, backend: str = "default") -> None:
    """Publish an event with the transaction on ``using``: in it, or after it commits.

    Outside a transaction it is published at once.
    """
    app = get_app(backend)
    conn = connections[using]
    if app.config.in_django_db and app.config.database == using and conn.in_atomic_block:
        jobs = fan_out(app.handlers, topic, payload)
        if not is_unrouted(jobs):
            enqueue_in_django(app, conn, jobs)
            return
    # Elsewhere, outside a transaction, or with no handler (the record of an unhandled event
    # is written and closed by publish(), which needs the committed row).
    transaction.on_commit(lambda: app.publish(topic, payload), using=using, robust=False)


def forward_signals(
    model: type[models.Model],
    signals: Iterable[str] = ("post_save", "post_delete"),
    *,
    topic: str | None = None,
    backend: str = "default",
) -> None:
    """Publish ``<topic>.<signal>`` events carrying a :class:`ModelSnapshot` for a model's signals.

    ``topic`` defaults to the model's label (``shop.order``). Calling it twice
    for the same model and signal connects once.

    Raises:
        ValueError: an unknown signal name or a malformed topic.
    """
    base = topic or model._meta.label_lower
    for name in signals:
        if name not in FORWARDABLE:
            raise ValueError(f"cannot forward {name!r}: one of {', '.join(FORWARDABLE)}")
        check_topic(f"{base}.{name}")
        receiver = _Forwarder(f"{base}.{name}", name, backend)
        getattr(model_signals, name).connect(
            receiver,
            sender=model,
            weak=False,
            dispatch_uid=f"pigeon.forward:{model._meta.label_lower}:{name}:{base}:{backend}",
        )


class _Forwarder:
    """The receiver of one model signal: snapshot now, publish with the transaction."""

    def __init__(self, topic: str, signal: str, backend: str) -> None:
        self.topic = topic
        self.signal = signal
        self.backend = backend

    def __call__(self, sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
        using = kwargs.get("using") or router.db_for_write(sender, instance=instance)
        snap = snapshot(instance, self.signal, kwargs.get("created"))
        publish_on_commit(self.topic, snap, using=using, backend=self.backend)
