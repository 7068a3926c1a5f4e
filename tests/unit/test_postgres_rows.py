"""Which statement a PostgreSQL enqueue runs: one row for a lone job, arrays for the rest."""

from __future__ import annotations

import msgspec

from pigeon.brokers.postgres_rows import ENQUEUE_NAMES, EnqueueBatch
from tests.helpers import make_job


def test_a_lone_job_is_inserted_as_one_row() -> None:
    job = make_job(unique_key="k", run_at=2e9)
    insert = EnqueueBatch([job], "pigeon:ns").next_insert()
    assert insert is not None
    name, params = insert
    assert name == "enqueue_one"
    assert set(params) == {*ENQUEUE_NAMES, "channel"}
    assert (params["id"], params["unique_key"], params["state"], params["run_at"]) == (
        job.id,
        "k",
        "scheduled",
        2e9,
    )


def test_a_job_with_a_concurrency_limit_goes_with_its_counter() -> None:
    job = msgspec.structs.replace(make_job(), limit_key="tests.noop", limit=2)
    insert = EnqueueBatch([job], "pigeon:ns").next_insert()
    assert insert is not None and insert[0] == "enqueue"
    assert insert[1]["limit_keys"] == ["tests.noop"]


def test_several_jobs_are_inserted_as_arrays() -> None:
    jobs = [make_job(), make_job()]
    insert = EnqueueBatch(jobs, "pigeon:ns").next_insert()
    assert insert is not None and insert[0] == "enqueue"
    assert insert[1]["id"] == [j.id for j in jobs]
