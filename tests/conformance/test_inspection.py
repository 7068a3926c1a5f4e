"""The inspection protocol (filters, keyset pages, counts, bulk actions, paused queues) on every broker."""

from __future__ import annotations

import time

import msgspec
import pytest

from pigeon.brokers.base import Broker
from pigeon.brokers.inspection import (
    BulkAction,
    InspectionBroker,
    JobFilter,
    apply_bulk,
    parse_args_search,
)
from pigeon.job import ErrorInfo, JobState, Outcome, OutcomeKind
from pigeon.seam import InstrumentedBroker
from tests.helpers import make_job

Q = ("default",)


def inspect(broker: Broker) -> InspectionBroker:
    assert isinstance(broker, InspectionBroker)
    return broker


async def fail_all(broker: Broker, queue: str = "default") -> list[str]:
    claims = await broker.claim("w", (queue,), 100, 30)
    err = ErrorInfo("ValueError", "boom")
    outcomes = [
        Outcome(job_id=c.job.id, token=c.token, kind=OutcomeKind.FAIL, error=err, expires_at=time.time() + 60)
        for c in claims
    ]
    await broker.settle(outcomes)
    return [c.job.id for c in claims]


async def test_find_filters_by_task_state_queue_and_arguments(broker: Broker) -> None:
    orders = [
        make_job("shop.ship", payload=msgspec.json.encode({"order_id": n, "note": "x"})) for n in (4, 42, 421)
    ]
    other = make_job("shop.bill", queue="billing", payload=b'{"order_id":42}')
    await broker.enqueue([*orders, other])
    b = inspect(broker)

    found = await b.find_jobs(JobFilter(task="shop.ship"))
    assert [r.job.id for r in found] == [j.id for j in reversed(orders)]
    by_arg = await b.find_jobs(JobFilter(args=parse_args_search("order_id=42")))
    assert {r.job.id for r in by_arg} == {orders[1].id, other.id}  # 421 and 4 do not match
    both = JobFilter(args=parse_args_search("order_id=42"), queue="billing")
    assert [r.job.id for r in await b.find_jobs(both)] == [other.id]
    assert await b.count_jobs(JobFilter(args=parse_args_search('note="x"'))) == 3
    assert await b.count_jobs(JobFilter(states=(JobState.QUEUED,))) == 4
    assert await b.count_jobs(JobFilter(states=(JobState.FAILED,))) == 0
    assert await b.count_jobs(JobFilter(queue="billing", task="shop.ship")) == 0


async def test_a_task_is_matched_whole_and_only_as_the_jobs_own(broker: Broker) -> None:
    # Redis matches the task in the stored envelope: neither a longer name nor an argument
    # that reads like the task field may pass for it.
    ship = make_job("shop.ship", payload=b'{"task":"shop.shipping","n":1}')
    shipping = make_job("shop.shipping", payload=b'{"task":"shop.ship","n":1}')
    odd = make_job('shop."odd" \u00e9t\u00e9', payload=b'{"n":1}')
    await broker.enqueue([ship, shipping, odd])
    b = inspect(broker)
    n1 = parse_args_search("n=1")
    for job in (ship, shipping, odd):
        assert [r.job.id for r in await b.find_jobs(JobFilter(task=job.task))] == [job.id]
        assert [r.job.id for r in await b.find_jobs(JobFilter(task=job.task, args=n1))] == [job.id]
        assert await b.count_jobs(JobFilter(task=job.task, args=n1)) == 1
    assert await b.count_jobs(JobFilter(task="shop.shi", args=n1)) == 0


async def test_an_argument_search_looks_at_the_newest_jobs_it_is_given_only(broker: Broker) -> None:
    jobs = [make_job("t.n", payload=msgspec.json.encode({"n": i % 10})) for i in range(30)]
    await broker.enqueue(jobs[:20])
    await broker.enqueue(jobs[20:])
    b = inspect(broker)
    n3 = parse_args_search("n=3")
    assert [r.job.id for r in await b.find_jobs(JobFilter(args=n3))] == [jobs[23].id, jobs[13].id, jobs[3].id]
    assert [r.job.id for r in await b.find_jobs(JobFilter(args=n3, newest=10))] == [jobs[23].id]
    assert [r.job.id for r in await b.find_jobs(JobFilter(args=n3, newest=17))] == [jobs[23].id, jobs[13].id]
    assert await b.count_jobs(JobFilter(args=n3, newest=17)) == 2
    assert await b.count_jobs(JobFilter(args=n3, newest=17, states=(JobState.QUEUED,))) == 2
    assert await b.count_jobs(JobFilter(args=n3, newest=6)) == 0
    # Pages within the window stay within it.
    page = await b.find_jobs(JobFilter(args=n3, newest=17), limit=1, before=jobs[23].id)
    assert [r.job.id for r in page] == [jobs[13].id]
    assert await b.find_jobs(JobFilter(args=n3, newest=17), before=jobs[13].id) == []
    where = JobFilter(args=n3, newest=17)
    assert await apply_bulk(broker, where, BulkAction.CANCEL, expires_at=time.time() + 60) == 2
    assert (await broker.get(jobs[3].id)).state is JobState.QUEUED  # type: ignore[union-attr]


async def test_find_filters_by_enqueue_time(broker: Broker) -> None:
    old = msgspec.structs.replace(make_job(), enqueued_at=1_000.0)
    new = msgspec.structs.replace(make_job(), enqueued_at=2_000.0)
    await broker.enqueue([old, new])
    b = inspect(broker)
    assert [r.job.id for r in await b.find_jobs(JobFilter(since=1_500.0))] == [new.id]
    assert [r.job.id for r in await b.find_jobs(JobFilter(until=1_500.0))] == [old.id]
    assert await b.count_jobs(JobFilter(since=1_000.0, until=2_000.0)) == 1


async def test_keyset_pages_cover_every_job_once(broker: Broker) -> None:
    jobs = [make_job("a" if n % 3 else "b") for n in range(25)]
    for j in jobs:  # one by one, so the enqueue order is the list's order
        await broker.enqueue([j])
    b = inspect(broker)
    seen: list[str] = []
    before: str | None = None
    while True:
        page = await b.find_jobs(JobFilter(task="a"), limit=4, before=before)
        seen += [r.job.id for r in page]
        if len(page) < 4:
            break
        before = page[-1].job.id
    assert seen == [j.id for j in reversed(jobs) if j.task == "a"]
    assert await b.find_jobs(JobFilter(), before="0" * 32) == []


async def test_bulk_retry_cancel_delete_by_filter(broker: Broker) -> None:
    failing = [make_job("t.fail") for _ in range(7)]
    await broker.enqueue(failing)
    await fail_all(broker)
    waiting = [make_job("t.wait") for _ in range(3)]
    await broker.enqueue(waiting)
    b = inspect(broker)

    failed = JobFilter(states=(JobState.FAILED,), task="t.fail")
    assert await b.count_jobs(failed) == 7
    assert await apply_bulk(broker, failed, BulkAction.RETRY, expires_at=time.time() + 60) == 7
    assert await b.count_jobs(failed) == 0
    assert await b.count_jobs(JobFilter(states=(JobState.QUEUED,))) == 10

    waits = JobFilter(task="t.wait")
    assert await apply_bulk(broker, waits, BulkAction.CANCEL, expires_at=time.time() + 60) == 3
    assert await b.count_jobs(JobFilter(states=(JobState.CANCELLED,))) == 3
    assert await apply_bulk(broker, waits, BulkAction.CANCEL, expires_at=time.time() + 60) == 0

    assert await apply_bulk(broker, JobFilter(task="t.fail"), BulkAction.DELETE, expires_at=0) == 7
    assert [await broker.get(j.id) for j in failing] == [None] * 7
    assert await b.count_jobs(JobFilter()) == 3
    assert [c.job.id for c in await broker.claim("w", Q, 10, 30)] == []  # deleted jobs are not claimed


async def test_bulk_actions_take_one_broker_call_per_page(broker: Broker) -> None:
    assert isinstance(broker, InstrumentedBroker)
    jobs = [make_job("t.bulk") for _ in range(1001)]  # pages of 500: three pages
    await broker.enqueue(jobs)
    while len(await fail_all(broker)) == 100:
        pass
    before = broker.metrics()
    failed = JobFilter(states=(JobState.FAILED,), task="t.bulk")
    assert await apply_bulk(broker, failed, BulkAction.RETRY, expires_at=time.time() + 60) == 1001
    every = JobFilter(task="t.bulk")
    assert await apply_bulk(broker, every, BulkAction.CANCEL, expires_at=time.time() + 60) == 1001
    after = broker.metrics()

    def calls(name: str) -> int:
        return after[name].calls - (before[name].calls if name in before else 0) if name in after else 0

    assert (calls("requeue_jobs"), calls("requeue")) == (3, 0)
    assert (calls("cancel_jobs"), calls("cancel")) == (3, 0)
    assert await inspect(broker).count_jobs(JobFilter(states=(JobState.CANCELLED,))) == 1001


async def test_requeue_jobs_leaves_a_job_whose_unique_key_is_taken(broker: Broker) -> None:
    first, other = make_job(unique_key="k"), make_job()
    await broker.enqueue([first, other])
    await fail_all(broker)
    second = make_job(unique_key="k")  # the key is free again once the first job failed
    await broker.enqueue([second])
    await fail_all(broker)
    assert await inspect(broker).requeue_jobs([second.id, first.id, other.id, "0" * 32]) == 2
    states = [(r.state if r else None) for r in [await broker.get(j.id) for j in (first, second, other)]]
    assert states == [JobState.FAILED, JobState.QUEUED, JobState.QUEUED]


async def test_counts_by_task_follow_every_change_of_state(broker: Broker) -> None:
    b = inspect(broker)

    async def agree() -> None:
        for task in ("t.a", "t.b"):
            for state in JobState:
                where = JobFilter(task=task, states=(state,))
                listed = len(await b.find_jobs(where, limit=1000))
                assert await b.count_jobs(where) == listed, (task, state)
            every = JobFilter(task=task)
            assert await b.count_jobs(every) == len(await b.find_jobs(every, limit=1000))

    a = [make_job("t.a") for _ in range(6)]
    later = make_job("t.a", run_at=time.time() + 600)
    await broker.enqueue([*a, *[make_job("t.b") for _ in range(4)], later])
    await agree()
    claims = await broker.claim("w", Q, 5, 30)
    await agree()
    kinds = [OutcomeKind.COMPLETE, OutcomeKind.FAIL, OutcomeKind.RETRY]
    now = time.time()
    await broker.settle(
        [
            Outcome(job_id=c.job.id, token=c.token, kind=k, expires_at=now - 1, run_at=now + 600)
            for c, k in zip(claims, kinds, strict=False)
        ]
    )
    await agree()
    await broker.cancel(a[5].id, time.time() + 60)
    await b.requeue_jobs([c.job.id for c in claims])
    await agree()
    await b.delete_jobs([a[4].id])
    await broker.prune()
    await b.purge(states=(JobState.CANCELLED,))
    await agree()


async def test_delete_jobs_frees_the_unique_key(broker: Broker) -> None:
    first = make_job(unique_key="k")
    await broker.enqueue([first])
    assert await inspect(broker).delete_jobs([first.id, "0" * 32]) == 1
    second = make_job(unique_key="k")
    assert await broker.enqueue([second]) == [second.id]


async def test_a_paused_queue_is_not_claimed(broker: Broker) -> None:
    b = inspect(broker)
    paused = [make_job(queue="mail") for _ in range(3)]
    free = make_job(queue="default")
    await broker.enqueue([*paused, free])
    await b.pause_queue("mail")
    await b.pause_queue("mail")  # idempotent
    assert await b.paused_queues() == ["mail"]
    claims = await broker.claim("w", ("mail", "default"), 10, 30)
    assert [c.job.id for c in claims] == [free.id]
    assert await broker.claim("w", ("mail",), 10, 30) == []
    due = make_job(queue="mail", run_at=time.time() - 1)  # a due scheduled job of the paused queue
    await broker.enqueue([due])
    assert await broker.claim("w", ("mail",), 10, 30) == []
    await b.resume_queue("mail")
    assert await b.paused_queues() == []
    claims = await broker.claim("w", ("mail",), 10, 30)
    assert {c.job.id for c in claims} == {j.id for j in [*paused, due]}


@pytest.mark.parametrize("text", ["order_id", "=3", "a={}", "x=[1]"])
def test_bad_argument_search_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="search"):
        parse_args_search(text)


def test_argument_search_reads_json_or_a_string() -> None:
    assert parse_args_search('order_id=42 name=ann ok=true s="4"') == (
        ("order_id", "42"),
        ("name", '"ann"'),
        ("ok", "true"),
        ("s", '"4"'),
    )


async def test_oldest_ready_per_queue(broker: Broker) -> None:
    first = msgspec.structs.replace(make_job(queue="a"), enqueued_at=1_000.0)
    later = msgspec.structs.replace(make_job(queue="a"), enqueued_at=2_000.0)
    other = msgspec.structs.replace(make_job(queue="b"), enqueued_at=3_000.0)
    await broker.enqueue([first, later, other])
    assert await inspect(broker).oldest_ready() == {"a": 1_000.0, "b": 3_000.0}
    await broker.claim("w", ("a",), 1, 30)
    assert await inspect(broker).oldest_ready() == {"a": 2_000.0, "b": 3_000.0}


async def test_oldest_ready_looks_past_priorities(broker: Broker) -> None:
    old_low = msgspec.structs.replace(make_job(priority=-5), enqueued_at=1_000.0)
    new_high = msgspec.structs.replace(make_job(priority=50), enqueued_at=2_000.0)
    await broker.enqueue([old_low, new_high])
    assert await inspect(broker).oldest_ready() == {"default": 1_000.0}
    await broker.claim("w", Q, 1, 30)  # takes the high-priority one
    assert await inspect(broker).oldest_ready() == {"default": 1_000.0}


def test_a_dashboard_search_reads_the_newest_jobs_unless_told() -> None:
    from pigeon.filters import SEARCH_SCAN, build_filter

    assert build_filter(search="n=1", scan="").newest == SEARCH_SCAN
    assert build_filter(search="n=1", scan="all").newest is None
    assert build_filter(search="n=1", scan="5000").newest == 5000
    assert build_filter(search="n=1").newest is None  # the CLI reads every job
    assert build_filter(scan="").newest is None  # no argument search: nothing to bound
    with pytest.raises(ValueError, match="a number of jobs, or all"):
        build_filter(search="n=1", scan="lots")
