"""The synchronous send path's parts: sends combined into shared round trips, and the bounded pool."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import pytest

from pigeon._combine import Combiner
from pigeon.brokers.sync_pool import SyncPool
from pigeon.job import Job
from tests.helpers import make_job


def until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)


class GatedStore:
    """Stores batches; the first waits for ``release``, so later callers queue behind it."""

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail = fail
        self.busy = 0
        self.most_busy = 0
        self._lock = threading.Lock()

    def __call__(self, jobs: Sequence[Job]) -> list[str]:
        with self._lock:
            self.busy += 1
            self.most_busy = max(self.most_busy, self.busy)
            self.batches.append([j.id for j in jobs])
        self.entered.set()
        self.release.wait(10)
        with self._lock:
            self.busy -= 1
        if self.fail:
            raise ConnectionError("the store went away")
        return [f"stored-{j.id}" for j in jobs]


def send_in_threads(combiner: Combiner, jobs: list[Job]) -> tuple[list[threading.Thread], dict[str, object]]:
    out: dict[str, object] = {}

    def send(job: Job) -> None:
        try:
            out[job.id] = combiner.enqueue([job])
        except Exception as exc:  # noqa: BLE001 - what each caller got is the assertion
            out[job.id] = exc

    threads = [threading.Thread(target=send, args=(j,)) for j in jobs]
    for t in threads:
        t.start()
    return threads, out


def test_callers_arriving_during_a_store_share_the_next_one() -> None:
    store = GatedStore()
    combiner = Combiner(store, width=1)
    first = make_job()
    lead, out = send_in_threads(combiner, [first])
    assert store.entered.wait(10)
    others = [make_job() for _ in range(5)]
    waiting, more = send_in_threads(combiner, others)
    until(lambda: len(combiner._waiting) == 5, "five callers queued")
    store.release.set()
    for t in [*lead, *waiting]:
        t.join(10)
    out.update(more)
    assert store.batches == [[first.id], [j.id for j in others]]
    assert all(out[j.id] == [f"stored-{j.id}"] for j in [first, *others])


def test_a_failed_store_fails_every_caller_of_its_batch_and_the_next_batch_still_goes() -> None:
    store = GatedStore(fail=True)
    combiner = Combiner(store, width=1)
    lead, out = send_in_threads(combiner, [make_job()])
    assert store.entered.wait(10)
    waiting, more = send_in_threads(combiner, [make_job(), make_job()])
    until(lambda: len(combiner._waiting) == 2, "two callers queued")
    store.release.set()
    for t in [*lead, *waiting]:
        t.join(10)
    out.update(more)
    assert len(out) == 3 and all(isinstance(v, ConnectionError) for v in out.values())
    store.fail = False
    job = make_job()
    assert combiner.enqueue([job]) == [f"stored-{job.id}"]


def test_no_more_stores_run_at_once_than_the_width() -> None:
    store = GatedStore()
    combiner = Combiner(store, width=2)
    threads, out = send_in_threads(combiner, [make_job() for _ in range(8)])
    until(lambda: store.busy == 2 and len(combiner._waiting) == 6, "two stores running, six queued")
    store.release.set()
    for t in threads:
        t.join(10)
    assert store.most_busy == 2
    assert len(out) == 8 and all(isinstance(v, list) for v in out.values())
    assert sum(len(b) for b in store.batches) == 8


class Conn:
    def __init__(self, n: int) -> None:
        self.n = n
        self.closed = False


def test_the_pool_opens_at_most_its_size_and_reuses_them() -> None:
    opened: list[Conn] = []
    pool = SyncPool(opener(opened), _close, 2)
    hold = threading.Event()
    inside = threading.Semaphore(0)

    def use() -> None:
        with pool.connection():
            inside.release()
            hold.wait(10)

    threads = [threading.Thread(target=use) for _ in range(5)]
    for t in threads:
        t.start()
    assert inside.acquire(timeout=10) and inside.acquire(timeout=10)
    assert not inside.acquire(timeout=0.05)  # the third caller waits for a connection
    hold.set()
    for t in threads:
        t.join(10)
    assert len(opened) == 2
    with pool.connection() as conn:
        assert conn in opened


def test_the_pool_closes_a_connection_whose_use_raised_and_opens_another() -> None:
    opened: list[Conn] = []
    pool = SyncPool(opener(opened), _close, 1)
    with pytest.raises(OSError), pool.connection():
        raise OSError("broken pipe")
    assert opened[0].closed
    with pool.connection() as conn:
        assert conn is opened[1] and not conn.closed
    pool.close()
    assert opened[1].closed
    with pool.connection() as conn:  # usable again after close(), with a new connection
        assert conn is opened[2]


def test_a_failed_connect_gives_its_place_back() -> None:
    calls = 0

    def connect() -> Conn:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionRefusedError("not yet")
        return Conn(calls)

    pool: SyncPool[Conn] = SyncPool(connect, _close, 1)
    with pytest.raises(ConnectionRefusedError), pool.connection():
        pass
    with pool.connection() as conn:
        assert conn.n == 2


def opener(opened: list[Conn]) -> Callable[[], Conn]:
    def connect() -> Conn:
        opened.append(Conn(len(opened)))
        return opened[-1]

    return connect


def _close(conn: Conn) -> None:
    conn.closed = True


def test_run_retries_once_on_a_new_connection_when_a_kept_one_went_stale() -> None:
    opened: list[Conn] = []
    pool = SyncPool(opener(opened), _close, 1)
    with pool.connection():
        pass  # kept idle from here on

    def use(conn: Conn) -> int:
        if conn.n == 0:
            raise ConnectionResetError("closed by the server while idle")
        return conn.n

    assert pool.run(use, ConnectionResetError) == 1
    assert opened[0].closed

    def always(conn: Conn) -> int:
        raise ConnectionResetError("down")

    pool.close()
    with pytest.raises(ConnectionResetError):  # a new connection failing is an outage: raised
        pool.run(always, ConnectionResetError)
    assert len(opened) == 3
