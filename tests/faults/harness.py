"""The fault harness: real worker processes, injected faults, and the books kept on them.

A run sends jobs of ``tests.faults.app.work``, starts ``pigeon worker`` processes,
injects faults (each noted with its time and victim), waits for every job to end,
then reads two accounts and checks one against the other: the broker's records,
and the side channel the task writes every execution to (fsynced, so it survives
``kill -9``). The figures are those the guarantees page promises:

- lost: jobs sent that did not succeed;  stuck: jobs still RUNNING at the end;
- re-executions: executions beyond one per job; each must be explained by a fault,
  so re-executions <= executions in flight on a faulted process at its fault;
- completed twice: jobs that two executions finished, neither interrupted by a fault;
- recovery: from a fault to the first new start of each job it interrupted.
"""

from __future__ import annotations

import functools
import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pigeon import App, JobState

ROOT = Path(__file__).resolve().parents[2]
LONG = os.environ.get("PIGEON_FAULTS") == "long"

FAST_WORKER = {
    "PIGEON_POLL": "0.05",
    "PIGEON_HEARTBEAT": "0.2",
    "PIGEON_LEASE": "4",
    "PIGEON_DEAD_AFTER": "2",
    "PIGEON_RECOVER_EVERY": "0.3",
    "PIGEON_CONCURRENCY": "8",
    "PIGEON_GRACE": "2",
}


NO_PROCESS = 0
"""A fault's pid when it hits no worker (a hostile message written into the queue)."""
EVERY_PROCESS = -1
"""A fault's pid when it hits every worker at once (a broker restart, a lock on the file)."""


CLAIM_SLACK = 1.0
"""An execution that starts this soon after a fault ends counts as claimed during it: a job is
claimed before its task starts, and a paused worker starts what it had claimed on resuming."""


@dataclass
class Fault:
    kind: str
    pid: int
    at: float
    until: float = 0.0
    """When the fault ended (a pause, a held lock); an instant fault ends when it starts."""

    def __post_init__(self) -> None:
        self.until = max(self.until, self.at)


@dataclass
class Execution:
    job_id: str
    pid: int
    attempt: int
    started: float
    done: float | None = None


@dataclass
class Figures:
    """What one scenario measured; ``check()`` holds it to the guarantees."""

    scenario: str
    broker: str
    seed: int
    jobs: int
    faults: int
    executions: int
    re_executions: int
    in_flight_at_faults: int
    lost: int
    stuck: int
    completed_twice: int
    recovery_max: float
    recovery_mean: float
    notes: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        assert self.lost == 0, self
        assert self.stuck == 0, self
        assert self.completed_twice == 0, self
        assert self.re_executions <= self.in_flight_at_faults, self


def new_seed() -> int:
    seed = int(os.environ.get("PIGEON_FAULTS_SEED") or random.randrange(2**32))
    print(f"fault seed: {seed} (replay with PIGEON_FAULTS_SEED={seed})")
    return seed


class Run:
    """One scenario's worker processes, faults and side channel."""

    def __init__(self, name: str, url: str, tmp: Path, seed: int, **env: str) -> None:
        self.name, self.url, self.seed = name, url, seed
        self.rng = random.Random(seed)
        self.log_dir = tmp / "executions"
        self.log_dir.mkdir()
        self.out_dir = tmp / "workers"
        self.out_dir.mkdir()
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "PIGEON_URL": url,
            "PIGEON_FAULTS_LOG": str(self.log_dir),
            **FAST_WORKER,
            **env,
        }
        self.workers: list[subprocess.Popen[bytes]] = []
        self.faults: list[Fault] = []
        self.job_ids: list[str] = []
        from tests.faults.app import app

        app.url = url  # the module's app, pointed at this run's broker
        self.app: App = app

    # -- processes -----------------------------------------------------------

    def start_worker(self, *args: str, max_file_bytes: int | None = None) -> subprocess.Popen[bytes]:
        """A ``pigeon worker``; ``max_file_bytes`` caps the files it writes, as a full disk would."""
        out = (self.out_dir / f"worker-{len(self.workers)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "pigeon", "worker", "tests.faults.app:app", *args],
            env=self.env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=None if max_file_bytes is None else functools.partial(_cap_files, max_file_bytes),
        )
        out.close()
        self.workers.append(proc)
        return proc

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.workers if p.poll() is None]

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        return (self.out_dir / f"worker-{self.workers.index(proc)}.log").read_text(errors="replace")

    def fault(self, kind: str, proc: subprocess.Popen[bytes], sig: signal.Signals) -> Fault:
        fault = Fault(kind, proc.pid, time.time())
        self.faults.append(fault)
        os.kill(proc.pid, sig)
        if sig is signal.SIGKILL:
            proc.wait(10)
        return fault

    def stop(self) -> None:
        for p in self.workers:
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
            p.wait(10)
        self.app.close()

    # -- jobs ----------------------------------------------------------------

    def send(self, count: int, hold: float = 0.0, stall: float = 0.0) -> list[str]:
        from tests.faults.app import work

        handles = work.send_many([(i, hold, stall) for i in range(count)])
        ids = [h.id for h in handles]
        self.job_ids += ids
        return ids

    def states(self) -> dict[str, JobState]:
        broker_jobs = self.app.portal_call(self._records())
        return {jid: rec.state for jid, rec in broker_jobs.items()}

    async def _records(self) -> dict[str, Any]:
        broker = await self.app.connection()
        records = await broker.list_jobs(limit=len(self.job_ids) + 10_000)
        return {r.job.id: r for r in records}

    def wait_final(self, ids: list[str], timeout: float) -> None:
        """Wait until every job in ``ids`` is final, or ``timeout`` passes (checked later)."""
        deadline = time.monotonic() + timeout
        pause = 0.05
        while time.monotonic() < deadline:
            states = self.states()
            if all(states.get(i) is not None and states[i].is_final for i in ids):
                return
            time.sleep(pause)  # polling the broker's state, bounded by the deadline
            pause = min(pause * 2, 0.5)

    # -- the books -----------------------------------------------------------

    def executions(self) -> list[Execution]:
        found: dict[tuple[str, int, int], Execution] = {}
        for path in self.log_dir.glob("*.log"):
            for line in path.read_text().splitlines():
                parts = line.split()
                if len(parts) != 5:
                    continue  # a line cut by kill -9 mid-write
                event, jid, pid, attempt, at = parts
                key = (jid, int(pid), int(attempt))
                if event == "start":
                    found[key] = Execution(jid, int(pid), int(attempt), float(at))
                elif key in found:
                    found[key].done = float(at)
        return sorted(found.values(), key=lambda e: e.started)

    def figures(self, ids: list[str] | None = None, **notes: Any) -> Figures:
        ids = self.job_ids if ids is None else ids
        wanted = set(ids)
        records = self.app.portal_call(self._records())
        runs = [e for e in self.executions() if e.job_id in wanted]
        by_job: dict[str, list[Execution]] = defaultdict(list)
        for e in runs:
            by_job[e.job_id].append(e)
        settled = {
            jid: bytes(records[jid].result or b"").decode().strip('"') for jid in wanted if jid in records
        }
        in_flight: set[tuple[str, int, int]] = set()  # running, or finished and not yet settled
        interrupted: list[tuple[Fault, Execution]] = []  # ...and whose outcome never landed
        for f in self.faults:
            for e in runs:
                if f.pid not in (e.pid, EVERY_PROCESS) or e.started > f.until + CLAIM_SLACK:
                    continue
                own = settled.get(e.job_id) == f"{e.pid}:{e.attempt}"
                if e.done is None or e.done > f.at or not own:
                    in_flight.add((e.job_id, e.pid, e.attempt))
                if not own:
                    interrupted.append((f, e))
        hit = {(e.job_id, e.pid, e.attempt) for _, e in interrupted}
        recoveries = []
        for f in self.faults:
            if f.pid == NO_PROCESS:
                continue
            # The first new start of each job the fault interrupted; with none, the first start at all.
            lost_here = [e for g, e in interrupted if g is f]
            starts = [_first_start(by_job[e.job_id], after=f.at, not_on=f.pid) for e in lost_here]
            starts = starts or [_first_start(runs, after=f.at, not_on=None)]
            found = [t - f.at for t in starts if t is not None]
            if found:
                recoveries.append(max(found))
        twice: dict[str, list[Execution]] = {}
        for jid, execs in by_job.items():
            clean_done = [x for x in execs if x.done is not None and (x.job_id, x.pid, x.attempt) not in hit]
            if len(clean_done) > 1:
                twice[jid] = execs
        if twice:  # what a failure needs explained: every execution of those jobs, and the faults
            notes["twice"] = {jid: [asdict(x) for x in xs] for jid, xs in list(twice.items())[:5]}
            notes["settled"] = {jid: settled.get(jid) for jid in list(twice)[:5]}
            notes["fault_log"] = [asdict(f) for f in self.faults]
        states = {jid: records[jid].state if jid in records else None for jid in ids}
        figures = Figures(
            scenario=self.name,
            broker=self.url.split(":", 1)[0],
            seed=self.seed,
            jobs=len(ids),
            faults=len(self.faults),
            executions=len(runs),
            re_executions=len(runs) - len(by_job),
            in_flight_at_faults=len(in_flight),
            lost=sum(s is not JobState.SUCCEEDED for s in states.values()),
            stuck=sum(s is JobState.RUNNING for s in states.values()),
            completed_twice=len(twice),
            recovery_max=round(max(recoveries, default=0.0), 2),
            recovery_mean=round(sum(recoveries) / len(recoveries), 2) if recoveries else 0.0,
            notes=notes,
        )
        report(figures)
        return figures


def _cap_files(size: int) -> None:
    # The soft limit only, so the test can lift it again without privileges. Python ignores
    # SIGXFSZ: a write past the cap fails with EFBIG, as one on a full disk fails with ENOSPC.
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))


def _first_start(runs: list[Execution], *, after: float, not_on: int | None) -> float | None:
    return min((x.started for x in runs if x.started > after and x.pid != not_on), default=None)


def report(figures: Figures) -> None:
    """Print the figures, and keep them where ``PIGEON_FAULTS_REPORT`` points (JSON lines)."""
    line = json.dumps(asdict(figures))
    print(f"fault figures: {line}")
    target = os.environ.get("PIGEON_FAULTS_REPORT")
    if target:
        with open(target, "a") as f:
            f.write(line + "\n")
