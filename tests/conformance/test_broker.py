"""The broker contract, checked the same way on every broker against real servers.

A broker is done when it passes this file and test_worker.py unchanged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import msgspec
import pytest

from pigeon.errors import UnsupportedFeature
from pigeon.job import Claim, ErrorInfo, JobState, Outcome, OutcomeKind, WorkerInfo
from pigeon.seam import InstrumentedBroker as Broker  # every broker, behind the seam
from tests.helpers import eventually, make_job

Factory = Callable[[], Awaitable[Broker]]
Q = ("default",)


def complete(claim_id: str, token: str, result: bytes = b"1", ttl: float = 60) -> Outcome:
    return Outcome(
        job_id=claim_id, token=token, kind=OutcomeKind.COMPLETE, result=result, expires_at=time.time() + ttl
    )


def worker_info(wid: str, last_seen: float | None = None) -> WorkerInfo:
    now = time.time()
    return WorkerInfo(
        id=wid, hostname="h", pid=1, queues=Q, concurrency=1, started_at=now, last_seen=last_seen or now
    )


async def test_enqueue_claim_complete(broker: Broker) -> None:
    jobs = [make_job() for _ in range(3)]
    assert await broker.enqueue(jobs) == [j.id for j in jobs]
    assert (await broker.get(jobs[0].id)).state is JobState.QUEUED  # type: ignore[union-attr]
    claims = await broker.claim("w1", Q, 10, 30)
    assert [c.job.id for c in claims] == [j.id for j in jobs]
    assert all(c.attempt == 1 for c in claims)
    assert claims[0].job == jobs[0]
    rec = await broker.get(jobs[0].id)
    assert rec is not None and rec.state is JobState.RUNNING and rec.attempts == 1
    assert await broker.settle([complete(c.job.id, c.token, b'{"x":1}') for c in claims]) == [True] * 3
    rec = await broker.get(jobs[0].id)
    assert rec is not None and rec.state is JobState.SUCCEEDED and rec.result == b'{"x":1}'
    assert rec.finished_at is not None
    assert await broker.claim("w1", Q, 10, 30) == []


async def test_unknown_job_is_none(broker: Broker) -> None:
    assert await broker.get("0" * 32) is None


async def test_priority_then_fifo(broker: Broker) -> None:
    low = [make_job(priority=-5) for _ in range(3)]
    mid = [make_job(priority=0) for _ in range(3)]
    high = [make_job(priority=100) for _ in range(3)]
    await broker.enqueue([low[0], mid[0], high[0], low[1], mid[1], high[1]])
    await broker.enqueue([low[2], mid[2], high[2]])
    first = await broker.claim("w", Q, 4, 30)
    rest = await broker.claim("w", Q, 10, 30)
    order = [c.job.id for c in first + rest]
    assert order == [j.id for j in high + mid + low]


async def test_queues_are_separate_and_merged_by_priority(broker: Broker) -> None:
    a = make_job(queue="a", priority=1)
    b = make_job(queue="b", priority=5)
    c = make_job(queue="c")
    await broker.enqueue([a, b, c])
    assert await broker.claim("w", ("x",), 10, 30) == []
    claims = await broker.claim("w", ("a", "b"), 10, 30)
    assert [cl.job.id for cl in claims] == [b.id, a.id]
    assert [cl.job.id for cl in await broker.claim("w", ("c",), 10, 30)] == [c.id]


async def test_delayed_job_waits_until_due(broker: Broker) -> None:
    job = make_job(run_at=time.time() + 0.4)
    await broker.enqueue([job])
    assert (await broker.get(job.id)).state is JobState.SCHEDULED  # type: ignore[union-attr]
    assert await broker.claim("w", Q, 10, 30) == []
    claims = await eventually(lambda: broker.claim("w", Q, 10, 30), what="delayed job claimable")
    assert claims[0].job.id == job.id
    assert time.time() >= job.run_at  # type: ignore[operator]


async def test_past_run_at_is_queued(broker: Broker) -> None:
    job = make_job(run_at=time.time() - 5)
    await broker.enqueue([job])
    assert [c.job.id for c in await broker.claim("w", Q, 1, 30)] == [job.id]


async def test_retry_with_backoff_spends_attempts(broker: Broker) -> None:
    job = make_job(max_attempts=3)
    await broker.enqueue([job])
    (c1,) = await broker.claim("w", Q, 1, 30)
    err = ErrorInfo("builtins.ValueError", "boom", "Traceback ...")
    retry = Outcome(
        job_id=job.id, token=c1.token, kind=OutcomeKind.RETRY, error=err, run_at=time.time() + 0.3
    )
    assert await broker.settle([retry]) == [True]
    rec = await broker.get(job.id)
    assert rec is not None and rec.state is JobState.SCHEDULED and rec.error == err and rec.attempts == 1
    assert await broker.claim("w", Q, 1, 30) == []
    (c2,) = await eventually(lambda: broker.claim("w", Q, 1, 30), what="retry due")
    assert c2.attempt == 2 and c2.token != c1.token
    now_retry = Outcome(job_id=job.id, token=c2.token, kind=OutcomeKind.RETRY, error=err, run_at=time.time())
    await broker.settle([now_retry])
    (c3,) = await eventually(lambda: broker.claim("w", Q, 1, 30), what="immediate retry")
    assert c3.attempt == 3


async def test_fail_keeps_error(broker: Broker) -> None:
    job = make_job()
    await broker.enqueue([job])
    (c,) = await broker.claim("w", Q, 1, 30)
    err = ErrorInfo("app.Boom", "it broke", "Traceback (most recent call last): ...")
    fail = Outcome(
        job_id=job.id, token=c.token, kind=OutcomeKind.FAIL, error=err, expires_at=time.time() + 60
    )
    assert await broker.settle([fail]) == [True]
    rec = await broker.get(job.id)
    assert rec is not None and rec.state is JobState.FAILED and rec.error == err


async def test_a_long_settle_batch_is_applied_whole(broker: Broker) -> None:
    # Longer than the batches brokers split into, with a refused outcome in the middle.
    jobs = [make_job() for _ in range(2500)]
    await broker.enqueue(jobs)
    claims: list[Claim] = []
    while len(claims) < len(jobs):
        claims += await broker.claim("w", Q, 1000, 60)
    outcomes = [complete(c.job.id, c.token) for c in claims]
    outcomes.insert(1200, complete(claims[5].job.id, "not-the-token"))
    expected = [True] * len(outcomes)
    expected[1200] = False
    assert await broker.settle(outcomes) == expected
    stats = {q.queue: q.counts for q in await broker.stats()}
    assert stats[Q[0]] == {"succeeded": 2500}


async def test_every_failed_attempt_is_kept_in_order(broker: Broker) -> None:
    job = make_job(max_attempts=5)
    await broker.enqueue([job])
    first = ErrorInfo("builtins.ValueError", 'first: ünïcode "quoted", [brackets]', "Traceback 1\n")
    second = ErrorInfo("builtins.KeyError", "second", "Traceback 2\n")
    (c,) = await broker.claim("w", Q, 1, 30)
    await broker.settle([Outcome(job_id=job.id, token=c.token, kind=OutcomeKind.RETRY, error=first)])
    (c,) = await eventually(lambda: broker.claim("w", Q, 1, 0.05), what="second attempt")
    lost = await eventually(
        lambda: _recover_then_get(broker, job.id), lambda r: r.state is JobState.QUEUED, what="lost attempt"
    )
    assert [e.type for e in lost.errors] == ["builtins.ValueError", "pigeon.WorkerLost"]
    (c,) = await eventually(lambda: broker.claim("w", Q, 1, 30), what="third attempt")
    # An explicit retry without an error (Retry()) and a deferral add nothing.
    await broker.settle([Outcome(job_id=job.id, token=c.token, kind=OutcomeKind.RETRY)])
    (c,) = await eventually(lambda: broker.claim("w", Q, 1, 30), what="fourth attempt")
    await broker.settle([Outcome(job_id=job.id, token=c.token, kind=OutcomeKind.DEFER)])
    (c,) = await eventually(lambda: broker.claim("w", Q, 1, 30), what="deferred attempt")
    expires = time.time() + 60
    fail = Outcome(job_id=job.id, token=c.token, kind=OutcomeKind.FAIL, error=second, expires_at=expires)
    assert await broker.settle([fail]) == [True]
    rec = await broker.get(job.id)
    assert rec is not None and rec.state is JobState.FAILED and rec.error == second
    assert rec.errors == (first, lost.errors[1], second)
    assert await broker.requeue(job.id)
    (c,) = await eventually(lambda: broker.claim("w", Q, 1, 30), what="requeued")
    assert await broker.settle([complete(job.id, c.token)]) == [True]
    done = await broker.get(job.id)
    assert done is not None and done.error is None and done.errors == rec.errors  # success keeps history
    listed = await broker.list_jobs(state=JobState.SUCCEEDED)
    assert [r.errors for r in listed if r.job.id == job.id] == [rec.errors]


async def test_release_gives_the_attempt_back(broker: Broker) -> None:
    job = make_job()
    await broker.enqueue([job])
    (c,) = await broker.claim("w", Q, 1, 30)
    assert await broker.settle([Outcome(job_id=job.id, token=c.token, kind=OutcomeKind.RELEASE)]) == [True]
    rec = await broker.get(job.id)
    assert rec is not None and rec.state is JobState.QUEUED and rec.attempts == 0
    (again,) = await broker.claim("w2", Q, 1, 30)
    assert again.attempt == 1


async def test_mixed_settle_batch(broker: Broker) -> None:
    jobs = [make_job() for _ in range(4)]
    await broker.enqueue(jobs)
    cs = await broker.claim("w", Q, 4, 30)
    err = ErrorInfo("E", "m")
    outcomes = [
        complete(cs[0].job.id, cs[0].token),
        Outcome(job_id=cs[1].job.id, token=cs[1].token, kind=OutcomeKind.FAIL, error=err),
        Outcome(
            job_id=cs[2].job.id, token=cs[2].token, kind=OutcomeKind.RETRY, error=err, run_at=time.time()
        ),
        Outcome(job_id=cs[3].job.id, token="not-the-token", kind=OutcomeKind.RELEASE),
    ]
    assert await broker.settle(outcomes) == [True, True, True, False]
    states = [(await broker.get(j.id)).state for j in jobs]  # type: ignore[union-attr]
    assert states[:2] == [JobState.SUCCEEDED, JobState.FAILED]
    assert states[2] in (JobState.QUEUED, JobState.SCHEDULED)
    assert states[3] is JobState.RUNNING


async def test_lease_expiry_recovery_and_fencing(broker_factory: Factory) -> None:
    a = await broker_factory()
    b = await broker_factory()
    job = make_job()
    await a.enqueue([job])
    (stale,) = await a.claim("stalled", Q, 1, 0.3)
    assert await b.claim("other", Q, 1, 30) == []
    await eventually(lambda: b.recover(60), lambda n: n == 1, what="lease expiry recovered")
    (fresh,) = await b.claim("other", Q, 1, 30)
    assert fresh.attempt == 2
    # The stalled worker wakes up: it can neither extend, complete, fail, retry nor release.
    assert await a.heartbeat(worker_info("stalled"), [(job.id, stale.token)], 30) == [job.id]
    for kind in OutcomeKind:
        assert await a.settle([Outcome(job_id=job.id, token=stale.token, kind=kind, run_at=0)]) == [False]
    assert await b.settle([complete(job.id, fresh.token)]) == [True]
    assert (await b.get(job.id)).state is JobState.SUCCEEDED  # type: ignore[union-attr]


async def test_heartbeat_extends_lease(broker: Broker) -> None:
    job = make_job()
    await broker.enqueue([job])
    (c,) = await broker.claim("w", Q, 1, 0.5)
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        assert await broker.heartbeat(worker_info("w"), [(job.id, c.token)], 0.5) == []
        assert await broker.recover(60) == 0
        await asyncio.sleep(0.1)
    assert await broker.settle([complete(job.id, c.token)]) == [True]


async def test_silent_worker_jobs_recovered_before_lease_ends(broker: Broker) -> None:
    job = make_job()
    await broker.enqueue([job])
    await broker.heartbeat(worker_info("ghost"), [], 30)  # a worker registers with its first beat
    assert len(await broker.claim("ghost", Q, 1, 3600)) == 1
    assert await broker.recover(60) == 0
    await eventually(lambda: broker.recover(0.2), lambda n: n == 1, what="silent worker's job recovered")
    assert (await broker.get(job.id)).state is JobState.QUEUED  # type: ignore[union-attr]
    assert "ghost" not in [w.id for w in await broker.workers()]


async def test_recover_without_attempts_left_fails(broker: Broker) -> None:
    job = make_job(max_attempts=1)
    await broker.enqueue([job])
    await broker.claim("w", Q, 1, 0.05)
    rec = await eventually(
        lambda: _recover_then_get(broker, job.id), lambda r: r.state is JobState.FAILED, what="failed"
    )
    assert rec.error is not None and rec.error.type == "pigeon.WorkerLost"


async def _recover_then_get(broker: Broker, job_id: str):  # type: ignore[no-untyped-def]
    await broker.recover(60)
    return await broker.get(job_id)


async def test_racing_recoveries_recover_once(broker_factory: Factory) -> None:
    brokers = [await broker_factory() for _ in range(4)]
    jobs = [make_job() for _ in range(20)]
    await brokers[0].enqueue(jobs)
    await brokers[0].claim("dead", Q, 20, 0.05)
    await asyncio.sleep(0.1)  # let the 50 ms leases lapse; not synchronisation with another actor
    counts = await asyncio.gather(*(b.recover(60) for b in brokers))
    assert sum(counts) == 20
    claims = await brokers[1].claim("w", Q, 100, 30)
    assert sorted(c.job.id for c in claims) == sorted(j.id for j in jobs)


async def test_unique_key_returns_pending_job(broker: Broker) -> None:
    first = make_job(unique_key="img-42")
    second = make_job(unique_key="img-42")
    other = make_job(unique_key="img-43")
    assert await broker.enqueue([first]) == [first.id]
    assert await broker.enqueue([second, other]) == [first.id, other.id]
    assert await broker.get(second.id) is None
    (c,) = await broker.claim("w", Q, 1, 30)
    assert await broker.enqueue([make_job(unique_key="img-42")]) == [first.id]  # still running
    await broker.settle([complete(c.job.id, c.token)])
    third = make_job(unique_key="img-42")
    assert await broker.enqueue([third]) == [third.id]  # the key is free once finished


async def test_unique_key_under_concurrent_sends(broker_factory: Factory) -> None:
    brokers = [await broker_factory() for _ in range(4)]
    jobs = [make_job(unique_key="once") for _ in range(40)]
    results = await asyncio.gather(*(brokers[i % 4].enqueue([j]) for i, j in enumerate(jobs)))
    winners = {r[0] for r in results}
    assert len(winners) == 1
    claims = await brokers[0].claim("w", Q, 100, 30)
    assert [c.job.id for c in claims] == list(winners)


async def test_results_expire_and_are_pruned(broker: Broker) -> None:
    keep, drop = make_job(), make_job()
    await broker.enqueue([keep, drop])
    c1, c2 = await broker.claim("w", Q, 2, 30)
    await broker.settle([complete(c1.job.id, c1.token, ttl=3600), complete(c2.job.id, c2.token, ttl=0.2)])
    await eventually(broker.prune, lambda n: n == 1, what="expired job pruned")
    assert await broker.get(drop.id) is None
    assert (await broker.get(keep.id)).state is JobState.SUCCEEDED  # type: ignore[union-attr]


async def test_many_workers_never_share_a_job(broker_factory: Factory) -> None:
    brokers = [await broker_factory() for _ in range(4)]
    jobs = [make_job() for _ in range(400)]
    await brokers[0].enqueue(jobs)
    seen: list[str] = []

    async def drain(b: Broker, wid: str) -> None:
        while claims := await b.claim(wid, Q, 7, 30):
            seen.extend(c.job.id for c in claims)
            await b.settle([complete(c.job.id, c.token) for c in claims])

    await asyncio.gather(*(drain(b, f"w{i}") for i, b in enumerate(brokers)))
    assert len(seen) == len(set(seen)) == 400


async def test_cancel_a_running_job_ends_its_lease(broker: Broker) -> None:
    job = make_job()
    await broker.enqueue([job])
    (c,) = await broker.claim("w", Q, 1, 30)
    assert await broker.cancel(job.id, time.time() + 60) is True
    rec = await broker.get(job.id)
    assert rec is not None and rec.state is JobState.CANCELLED and rec.lease_until is None
    # Its worker learns at the next heartbeat, and stops it.
    assert await broker.heartbeat(worker_info("w"), [(job.id, c.token)], 30) == [job.id]
    assert await broker.settle([complete(job.id, c.token)]) == [False]  # and cannot finish it
    assert (await broker.get(job.id)).state is JobState.CANCELLED  # type: ignore[union-attr]
    assert await broker.recover(0.0) == 0  # nothing left to recover
    assert await broker.cancel(job.id, time.time() + 60) is False


async def test_cancel_a_running_job_frees_its_concurrency_slot(broker: Broker) -> None:
    first, second = (msgspec.structs.replace(make_job(), limit_key="solo", limit=1) for _ in range(2))
    await broker.enqueue([first, second])
    assert [c.job.id for c in await broker.claim("w", Q, 5, 30)] == [first.id]
    assert await broker.cancel(first.id, time.time() + 60) is True
    (c,) = await eventually(lambda: broker.claim("w", Q, 5, 30), what="the freed slot")
    assert c.job.id == second.id


async def test_cancel_and_requeue(broker: Broker) -> None:
    queued, running = make_job(), make_job()
    scheduled = make_job(run_at=time.time() + 3600)
    await broker.enqueue([running])
    (c,) = await broker.claim("w", Q, 1, 30)
    await broker.enqueue([queued, scheduled])
    expires = time.time() + 60
    assert await broker.cancel(queued.id, expires) is True
    assert await broker.cancel(scheduled.id, expires) is True
    assert await broker.cancel("0" * 32, expires) is False
    assert await broker.cancel(queued.id, expires) is False  # already final
    assert (await broker.get(queued.id)).state is JobState.CANCELLED  # type: ignore[union-attr]
    assert await broker.claim("w", Q, 5, 30) == []
    await broker.settle(
        [Outcome(job_id=running.id, token=c.token, kind=OutcomeKind.FAIL, error=ErrorInfo("E", "m"))]
    )
    assert await broker.requeue(running.id) is True
    assert await broker.requeue(running.id) is False  # already queued
    rec = await broker.get(running.id)
    assert rec is not None and rec.state is JobState.QUEUED and rec.attempts == 0
    assert await broker.requeue(queued.id) is True
    assert {c.job.id for c in await broker.claim("w", Q, 5, 30)} == {running.id, queued.id}


async def test_inspection(broker: Broker) -> None:
    a = [make_job("t.a", queue="qa") for _ in range(3)]
    b = [make_job("t.b", queue="qb") for _ in range(2)]
    await broker.enqueue(a + b)
    (c,) = await broker.claim("w", ("qa",), 1, 30)
    stats = {s.queue: s.counts for s in await broker.stats()}
    assert stats["qa"] == {"queued": 2, "running": 1}
    assert stats["qb"] == {"queued": 2}
    listed = await broker.list_jobs(queue="qa")
    assert [r.job.id for r in listed] == [j.id for j in reversed(a)]
    assert [r.job.id for r in await broker.list_jobs(state=JobState.RUNNING)] == [c.job.id]
    assert len(await broker.list_jobs(task="t.b")) == 2
    assert len(await broker.list_jobs(limit=2)) == 2


async def test_purge(broker: Broker) -> None:
    done, pending = make_job(), make_job(queue="other")
    await broker.enqueue([done])
    (c,) = await broker.claim("w", Q, 1, 30)
    await broker.settle([complete(c.job.id, c.token)])
    await broker.enqueue([pending])
    assert await broker.purge() == 1
    assert await broker.get(done.id) is None
    assert await broker.purge(queue="default", states=[JobState.QUEUED]) == 0
    assert await broker.purge(queue="other", states=[JobState.QUEUED]) == 1
    assert await broker.get(pending.id) is None


async def test_workers_registry(broker: Broker) -> None:
    await broker.heartbeat(worker_info("w-1"), [], 30)
    await broker.heartbeat(worker_info("w-2"), [], 30)
    assert {w.id for w in await broker.workers()} >= {"w-1", "w-2"}
    await broker.unregister_worker("w-1")
    assert "w-1" not in {w.id for w in await broker.workers()}


async def test_wait_wakes_on_enqueue_from_another_connection(broker_factory: Factory) -> None:
    consumer = await broker_factory()
    if not consumer.capabilities.cross_process:
        pytest.skip("an in-process broker is woken by the app's notifier, not by wait()")
    producer = await broker_factory()
    waiting = asyncio.create_task(consumer.wait(Q, 30))
    sent = 0
    # An enqueue may land before wait() takes its starting point, so keep enqueueing until it
    # returns; a broker that only returned on its 30 s timeout fails the 10 s deadline.
    async with asyncio.timeout(10):
        while not waiting.done():
            await producer.enqueue([make_job()])
            sent += 1
            await asyncio.wait({waiting}, timeout=0.2)
    assert len(await consumer.claim("w", Q, 100, 30)) == sent


async def test_batch_enqueue_keeps_order(broker: Broker) -> None:
    jobs = [make_job() for _ in range(1000)]
    assert await broker.enqueue(jobs) == [j.id for j in jobs]
    claims = await broker.claim("w", Q, 1000, 30)
    assert [c.job.id for c in claims] == [j.id for j in jobs]


async def test_lost_jobs_without_attempts_expire_like_failures(broker: Broker) -> None:
    job = make_job(max_attempts=1)
    await broker.enqueue([job])
    await broker.claim("w", Q, 1, 0.05)
    await eventually(lambda: broker.recover(60, time.time() + 0.2), lambda n: n == 1, what="recovered")
    assert (await broker.get(job.id)).state is JobState.FAILED  # type: ignore[union-attr]
    await eventually(broker.prune, lambda n: n == 1, what="the failure pruned after its retention")
    assert await broker.get(job.id) is None


async def test_capabilities_follow_the_optional_protocols(broker: Broker) -> None:
    # What a broker lacks is a clear UnsupportedFeature; what it has, its capabilities say.
    caps, job = broker.capabilities, make_job()
    probes: dict[str, Callable[[], Awaitable[object]]] = {
        "inspect": broker.stats,
        "limits": lambda: broker.take("probe", 1.0, 1.0),
        "progress": lambda: broker.progress(job.id, "no-token", b"{}"),
    }
    for name, probe in probes.items():
        if getattr(caps, name):
            await probe()
        else:
            with pytest.raises(UnsupportedFeature, match=f"the {broker.url.split(':')[0]} broker cannot"):
                await probe()
    if not caps.transactional_enqueue:
        with pytest.raises(UnsupportedFeature, match="cannot enqueue inside your database transaction"):
            broker.enqueue_in_sync(object(), [job])
    assert isinstance(await broker.migrate(), list)
