"""Envelopes pigeon did not write, found in the queue: each costs one job, never a worker or a batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pigeon import App, JobFailed, JobState
from pigeon.job import MALFORMED_TASK
from tests.helpers import eventually
from tests.storage import can_overwrite, hostile_envelopes, overwrite_envelope

FAST: dict[str, Any] = {"poll": 0.05, "heartbeat": 0.2, "lease": 5.0, "recover_every": 0.5, "dead_after": 1.0}


async def test_claim_hands_back_malformed_jobs_beside_good_ones(
    app: App, broker_url: str, tmp_path: Path
) -> None:
    can_overwrite(broker_url)

    @app.task
    async def double(n: int) -> int:
        return n * 2

    good = [await double.asend(i) for i in range(3)]
    bad = [await double.asend(100 + i) for i in range(len(hostile_envelopes("x", "y")))]
    kinds: dict[str, tuple[str, bytes]] = {}
    for handle, kind in zip(bad, hostile_envelopes("x", "y"), strict=True):
        data = hostile_envelopes(handle.id, str(tmp_path / "unpickled"))[kind]
        await overwrite_envelope(broker_url, handle.id, data)
        kinds[handle.id] = (kind, data)
    broker = await app.connection()
    claims = await broker.claim("w", ["default"], 100, 30.0)
    assert sorted(c.job.id for c in claims) == sorted(h.id for h in good + bad)
    for c in claims:
        if c.job.id in kinds:
            assert c.malformed, f"{kinds[c.job.id][0]} was not flagged"
            assert c.job.task == MALFORMED_TASK
        else:
            assert c.malformed is None and c.job.task == double.name
    assert not (tmp_path / "unpickled").exists()


async def test_worker_fails_malformed_jobs_at_once_and_runs_the_rest(
    app: App, broker_url: str, tmp_path: Path
) -> None:
    can_overwrite(broker_url)
    marker = tmp_path / "unpickled"

    @app.task
    async def double(n: int) -> int:
        return n * 2

    handles = [await double.asend(i) for i in range(20)]
    hostile = hostile_envelopes("x", str(marker))
    bad = {h.id: kind for h, kind in zip(handles[1::2], hostile, strict=False)}
    stored = {}
    for job_id, kind in bad.items():
        stored[job_id] = hostile_envelopes(job_id, str(marker))[kind]
        await overwrite_envelope(broker_url, job_id, stored[job_id])
    async with app.worker(**FAST, batch=100) as worker:
        for h in handles:
            if h.id not in bad:
                assert await h.aresult(timeout=15) == handles.index(h) * 2
        for job_id, kind in bad.items():
            rec = await eventually(
                lambda job_id=job_id: app.job(job_id).arecord(),  # type: ignore[misc]
                lambda r: r.state is JobState.FAILED,
                what=f"the {kind} job failed",
            )
            assert rec.attempts == 1, kind
            assert rec.error is not None and rec.error.type == "pigeon.MalformedJob", kind
            assert rec.raw == stored[job_id], kind
            assert rec.job.task == MALFORMED_TASK
        # The worker lives on and takes new work.
        assert await (await double.asend(21)).aresult(timeout=15) == 42
        assert worker.processed == 21
    try:
        await app.job(next(iter(bad))).aresult(timeout=1)
    except JobFailed as exc:
        assert exc.error_type == "pigeon.MalformedJob"
    else:
        raise AssertionError("a malformed job gave a result")
    listed = await (await app.connection()).list_jobs(state=JobState.FAILED)
    assert {r.job.id for r in listed} == set(bad)
    assert not marker.exists()
