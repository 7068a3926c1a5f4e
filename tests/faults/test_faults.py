"""Faults injected into real worker processes on real servers; nothing lost, stuck or done twice.

``make test`` runs the short profile; ``make faults`` the long one (``PIGEON_FAULTS=long``).
Every randomised run prints its seed; ``PIGEON_FAULTS_SEED`` replays it.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pigeon import JobState
from tests.faults.harness import LONG, NO_PROCESS, Fault, Run, new_seed
from tests.helpers import wait_until
from tests.storage import hostile_envelopes, overwrite_envelope

pytestmark = pytest.mark.timeout(600 if LONG else 120)


def started_on(run: Run, pid: int) -> list[str]:
    return [e.job_id for e in run.executions() if e.pid == pid]


def test_kill_9_loop_during_a_drain(url: str, tmp_path: Path) -> None:
    run = Run("kill -9 loop", url, tmp_path, new_seed())
    try:
        run.app.migrate()
        jobs, kills = (1500, 15) if LONG else (240, 3)
        ids = run.send(jobs, hold=0.2)
        run.start_worker()
        run.start_worker()
        for _ in range(kills):
            # A worker that has run something: one started just now may find the queue drained
            # by the others before it is up (on a loaded machine), and would never be at work.
            def busy_workers() -> list[subprocess.Popen[bytes]]:
                return [p for p in run.alive() if started_on(run, p.pid)]

            busy = wait_until(busy_workers, timeout=30, what="a worker at work")
            victim = run.rng.choice(busy)
            time.sleep(run.rng.uniform(0.1, 0.6))  # a random moment of its work, from the seed
            run.fault("kill -9", victim, signal.SIGKILL)
            run.start_worker()
        run.wait_final(ids, timeout=120 if LONG else 60)
        figures = run.figures(kills=kills)
        figures.check()
        assert figures.in_flight_at_faults > 0, "no kill hit a job in flight: the scenario tested nothing"
    finally:
        run.stop()


def test_hostile_stored_messages_mixed_with_good_ones(url: str, tmp_path: Path) -> None:
    if url.startswith("memory"):
        pytest.skip("nothing else can write into the memory broker")
    run = Run("hostile stored messages", url, tmp_path, new_seed())
    try:
        run.app.migrate()
        good = run.send(60, hold=0.01)
        kinds = list(hostile_envelopes("x", "y"))
        bad = run.send(len(kinds) * 2)
        marker = tmp_path / "unpickled"
        for i, job_id in enumerate(bad):
            data = hostile_envelopes(job_id, str(marker))[kinds[i % len(kinds)]]
            asyncio.run(overwrite_envelope(url, job_id, data))
            run.faults.append(Fault("hostile message", NO_PROCESS, time.time()))
        run.rng.shuffle(run.job_ids)
        worker = run.start_worker("-c", "16")
        run.wait_final(good + bad, timeout=60)
        figures = run.figures(good, hostile=len(bad))
        figures.check()
        assert figures.re_executions == 0
        records = run.app.portal_call(run._records())
        for job_id in bad:
            rec = records[job_id]
            assert rec.state is JobState.FAILED and rec.error is not None, rec
            assert rec.error.type == "pigeon.MalformedJob" and rec.attempts == 1 and rec.raw is not None
        assert worker.poll() is None, run.output(worker)
        assert not marker.exists()
    finally:
        run.stop()


def test_paused_worker_whose_jobs_another_finishes(url: str, tmp_path: Path) -> None:
    run = Run("paused worker (SIGSTOP past its lease)", url, tmp_path, new_seed(), PIGEON_LEASE="2")
    try:
        run.app.migrate()
        paused = run.start_worker("-c", "4")
        ids = run.send(12 if LONG else 6, hold=1.0)
        wait_until(lambda: started_on(run, paused.pid), timeout=30, what="the worker at work")
        pause = run.fault("SIGSTOP", paused, signal.SIGSTOP)
        stopped_at = time.monotonic()
        taker = run.start_worker("-c", "8")
        run.wait_final(ids, timeout=60)
        # Paused past its lease and past the poll + 5 s that once crashed a Redis worker's watcher.
        wait_until(lambda: time.monotonic() - stopped_at > 6.0, timeout=10, what="a long enough pause")
        pause.until = time.time()
        paused.send_signal(signal.SIGCONT)
        done = [e for e in run.executions() if e.pid == taker.pid]
        assert done, "the other worker took nothing over"
        ping = run.send(4)
        run.wait_final(ping, timeout=30)
        figures = run.figures(ids, paused_s=6.0)
        figures.check()
        assert figures.in_flight_at_faults > 0
        assert paused.poll() is None, run.output(paused)  # the paused worker lives on
    finally:
        run.stop()


def test_event_loop_stall_longer_than_the_lease(url: str, tmp_path: Path) -> None:
    run = Run("event-loop stall past the lease", url, tmp_path, new_seed(), PIGEON_LEASE="2")
    try:
        run.app.migrate()
        stalled = run.start_worker("-c", "8")
        from tests.faults.app import work

        stall = work.send(0, 0.0, 6.0).id  # time.sleep inside an async task, on its first attempt
        run.job_ids.append(stall)
        wait_until(lambda: started_on(run, stalled.pid), timeout=30, what="the stall begun")
        ids = [stall, *run.send(40, hold=0.1)]
        other = run.start_worker("-c", "8")
        run.wait_final(ids, timeout=60)
        first = min(e.started for e in run.executions() if e.job_id == stall)
        run.faults.append(Fault("event-loop stall", stalled.pid, first, first + 6.0))
        figures = run.figures(ids)
        figures.check()
        assert stalled.poll() is None and other.poll() is None, run.output(stalled)
    finally:
        run.stop()
