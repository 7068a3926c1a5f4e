"""Big payloads: 1 MB arguments and results go through; past ``max_payload``, a clear error — on every broker.

Arguments over the limit are refused before anything is stored, on every send path; a
result over it fails its job at once, and the worker goes on with the next.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pigeon import App, JobFailed, JobState, PayloadTooLarge, chain
from pigeon.limits import MAX_BYTES
from tests.conftest import open_broker

FAST: dict[str, Any] = {"poll": 0.05, "heartbeat": 0.2}
LIMIT = 64 * 1024
MB = 2**20


@pytest.fixture
async def small(broker_url: str) -> AsyncIterator[App]:
    """An app whose ``max_payload`` is 64 KiB, on the conformance broker."""
    migrated = await open_broker(broker_url, {})
    await migrated.__aexit__(None, None, None)
    app = App(broker_url, max_payload=LIMIT)
    yield app
    await app.aclose()
    await asyncio.to_thread(app.close)


async def test_a_1mb_argument_and_result_round_trip(app: App) -> None:
    @app.task
    async def echo(data: str, n: int) -> str:
        return data[::-1] * n

    data = "".join(chr(ord("a") + i % 26) for i in range(MB))
    handles = await echo.asend_many([(data, 1), (data, 1)])
    async with app.worker(**FAST):
        assert [await h.aresult(timeout=30) for h in handles] == [data[::-1]] * 2


async def test_arguments_over_the_default_limit_are_a_type_error(app: App) -> None:
    @app.task
    async def take(data: str) -> None:
        pass

    with pytest.raises(TypeError, match=f"over the limit of {MAX_BYTES}"):
        await take.asend("x" * MAX_BYTES)


async def test_arguments_over_max_payload_are_refused_before_anything_is_stored(small: App) -> None:
    ran: list[int] = []

    @small.task
    async def take(i: int, data: str) -> None:
        ran.append(i)

    @small.on("big")
    async def handler(event: Any) -> None:
        ran.append(-1)

    big = "x" * LIMIT
    too_big = rf"take\(\): the arguments encode to \d+ bytes, over the limit of {LIMIT}"
    with pytest.raises(PayloadTooLarge, match=too_big):
        await take.asend(1, big)
    with pytest.raises(TypeError, match="nothing of this batch was stored"):  # one too big: none stored
        await take.asend_many([(2, "small"), (3, big), (4, "small")])
    with pytest.raises(PayloadTooLarge):
        await small.apublish("big", {"data": big})
    with pytest.raises(PayloadTooLarge):  # a chain's later step counts with its first
        await chain(take.s(5, "small"), take.s(6, big)).asend()
    with pytest.raises(PayloadTooLarge):  # the synchronous path (a broker's own producer) checks too
        await asyncio.to_thread(take.send, 7, big)
    with pytest.raises(TypeError, match="nothing of this batch was stored"):
        await asyncio.to_thread(take.send_many, [(9, "small"), (10, big)])
    handle = await take.asend(8, "x" * (LIMIT - 100))  # just under the limit goes through
    await small.make_worker(burst=True, **FAST).run(install_signals=False)
    assert ran == [8]
    assert (await handle.arecord()).state is JobState.SUCCEEDED


async def test_a_result_over_max_payload_fails_the_job_and_the_worker_goes_on(small: App) -> None:
    @small.task(max_attempts=3)
    async def produce(n: int) -> str:
        return "y" * n

    @small.task(max_attempts=3)
    def produce_in_thread(n: int) -> str:
        return "z" * n

    big = await produce.asend(LIMIT + 1)
    big_thread = await produce_in_thread.asend(2 * LIMIT)
    fine = await produce.asend(LIMIT - 100)
    async with small.worker(**FAST):
        for h in (big, big_thread):
            with pytest.raises(JobFailed) as info:
                await h.aresult(timeout=20)
            assert info.value.error_type == "pigeon.PayloadTooLarge"
            assert f"over the limit of {LIMIT}" in info.value.error_message
            assert "the result encodes to" in info.value.error_message
            assert (await h.arecord()).attempts == 1  # not retried: the same call, the same result
        assert await fine.aresult(timeout=20) == "y" * (LIMIT - 100)
