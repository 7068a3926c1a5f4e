"""Events fan out to every handler as separate jobs, each with its own frozen copy — on every broker."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import msgspec
import pytest

from pigeon import App, Fixed, JobState
from tests.helpers import eventually


class TagRead(msgspec.Struct, frozen=True):
    station: str
    uid: str
    at: datetime


FAST: dict[str, Any] = {"poll": 0.05, "heartbeat": 0.2}


async def test_publish_fans_out_to_every_matching_handler(app: App) -> None:
    got: dict[str, list[Any]] = {"exact": [], "pattern": [], "all": [], "other": []}

    @app.on("nfc.tag_read")
    async def exact(event: TagRead) -> None:
        got["exact"].append(event)

    @app.on("nfc.*", max_attempts=5)
    def pattern(event: TagRead) -> None:
        got["pattern"].append(event)

    @app.on("**")
    async def everything(event: Any) -> None:
        got["all"].append(event)

    @app.on("access.*")
    async def other(event: Any) -> None:
        got["other"].append(event)

    read = TagRead("door-1", "04:AB", datetime(2026, 11, 22, tzinfo=UTC))
    handles = await app.apublish("nfc.tag_read", read)
    assert len(handles) == 3 and len({h.id for h in handles}) == 3
    async with app.worker(**FAST):
        for h in handles:
            await h.aresult(timeout=10)
    assert got["exact"] == [read] and got["pattern"] == [read]
    assert got["all"][0]["uid"] == "04:AB"  # untyped handlers get frozen plain data
    assert got["other"] == []


async def test_a_handler_cannot_change_what_another_sees(app: App) -> None:
    seen: list[Any] = []

    @app.on("order.placed")
    def vandal(order: dict[str, Any]) -> None:
        with pytest.raises(TypeError):
            order["lines"] = []
        with pytest.raises(AttributeError):
            order["lines"].append("free gift")

    @app.on("order.placed")
    def reader(order: dict[str, Any]) -> None:
        seen.append(order)

    payload: dict[str, Any] = {"id": 7, "lines": ["book"]}
    handles = await app.apublish("order.placed", payload)
    payload["lines"].append("changed after publish")
    async with app.worker(**FAST):
        for h in handles:
            await h.aresult(timeout=10)
    assert isinstance(seen[0], MappingProxyType)
    assert seen[0]["lines"] == ("book",)


async def test_handlers_retry_independently(app: App) -> None:
    calls = {"flaky": 0, "steady": 0}

    @app.on("tick", max_attempts=3, backoff=Fixed(0.05))
    async def flaky(n: int) -> None:
        calls["flaky"] += 1
        if calls["flaky"] < 3:
            raise RuntimeError("not yet")

    @app.on("tick")
    async def steady(n: int) -> None:
        calls["steady"] += 1

    handles = await app.apublish("tick", 1)
    async with app.worker(**FAST):
        await eventually(
            lambda: asyncio.gather(*(h.arecord() for h in handles)),
            lambda recs: all(r.state is JobState.SUCCEEDED for r in recs),
            timeout=20,
            what="both handlers succeeded",
        )
    assert calls == {"flaky": 3, "steady": 1}


async def test_chain_of_events(app: App) -> None:
    granted: list[str] = []

    @app.on("nfc.tag_read")
    async def look_up(event: TagRead) -> None:
        await app.apublish("access.granted", {"uid": event.uid})

    @app.on("access.granted")
    async def open_door(event: dict[str, str]) -> None:
        granted.append(event["uid"])

    async with app.worker(**FAST):
        await app.apublish("nfc.tag_read", TagRead("d", "42", datetime.now(UTC)))
        await eventually(lambda: _value(granted), timeout=10, what="the follow-up event handled")
    assert granted == ["42"]


async def _value(items: list[str]) -> list[str]:
    return items


async def test_publish_errors_are_clear(app: App) -> None:
    @dataclass
    class Mutable:
        x: int

    class Live:
        def __init__(self) -> None:
            self.pk = 1

    class Loose(msgspec.Struct):
        x: int

    @app.on("typed")
    async def typed(event: TagRead) -> None: ...

    with pytest.raises(TypeError, match="frozen dataclass"):
        await app.apublish("x", Mutable(1))
    with pytest.raises(TypeError, match="live Live object"):
        await app.apublish("x", Live())
    with pytest.raises(TypeError, match="frozen Struct"):
        await app.apublish("x", Loose(1))
    with pytest.raises(TypeError, match="cannot take this 'typed' event"):
        await app.apublish("typed", {"station": "s"})
    with pytest.raises(ValueError, match="bad topic"):
        await app.apublish("no spaces allowed", 1)
    assert await app.apublish("nobody.listens", 1) == []
    broker = await app.connection()
    stats = {s.queue: s.counts for s in await broker.stats()}
    assert stats["pigeon.unrouted"] == {"cancelled": 1}  # what `pigeon status` shows
    (record,) = await broker.list_jobs(queue="pigeon.unrouted")
    assert b'"topic":"nobody.listens"' in bytes(record.job.payload)
