"""Event handlers that record the snapshots they get (the tests read them back)."""

from __future__ import annotations

import threading
from types import MappingProxyType

from pigeon.contrib.django import ModelSnapshot, get_app

app = get_app()
seen: list[ModelSnapshot] = []
seen_lock = threading.Lock()


@app.on("customers.*")
def customer_changed(snapshot: ModelSnapshot) -> None:
    assert isinstance(snapshot.fields, MappingProxyType)
    with seen_lock:
        seen.append(snapshot)


@app.on("orders.post_delete")
def order_deleted(snapshot: ModelSnapshot) -> None:
    with seen_lock:
        seen.append(snapshot)
