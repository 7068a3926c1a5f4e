"""Redis Sentinel: the master killed mid-drain, a replica promoted, and every job still runs.

A group of the test's own (``scripts/servers/redis-sentinel.sh`` in a temporary directory):
one master, one replica, three sentinels. The jobs are sent, and replicated, before the
master dies; what the failover may lose is the claims and settles the master acknowledged
and had not yet sent to its replica, which runs those jobs again (at-least-once).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import redis

from pigeon.brokers.redis_connect import SentinelService
from tests.conftest import with_namespace
from tests.faults.harness import EVERY_PROCESS, LONG, Fault, Run, new_seed
from tests.faults.test_broker_faults import _beyond
from tests.helpers import wait_until

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "servers" / "redis-sentinel.sh"


class SentinelGroup:
    """A Sentinel group in ``base``, started and stopped by the project's script."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.env = {**os.environ, "PIGEON_SENTINEL_DIR": str(base)}

    def start(self) -> str:
        if shutil.which("redis-server") is None and os.environ.get("CI", "").lower() != "true":
            pytest.skip("redis-server is not installed (scripts/servers/redis-sentinel.sh installs it)")
        subprocess.run([SCRIPT, "start"], env=self.env, check=True, capture_output=True, timeout=120)
        line = (self.base / "env").read_text().strip()
        return line.split("=", 1)[1]

    def stop(self) -> None:
        subprocess.run([SCRIPT, "stop"], env=self.env, check=False, capture_output=True, timeout=60)

    def master(self, url: str) -> tuple[str, int]:
        service = SentinelService.from_url(url)
        host, port = service.sentinels[0]
        with redis.Redis(host=host, port=port) as sentinel:
            found = sentinel.sentinel_get_master_addr_by_name(service.service)
        return found[0].decode() if isinstance(found[0], bytes) else found[0], int(found[1])

    def kill_master(self) -> int:
        pid = int((self.base / "master.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        return pid


@pytest.mark.server
def test_sentinel_failover_mid_drain_runs_every_job(tmp_path: Path) -> None:
    group = SentinelGroup(tmp_path / "sentinel")
    url = group.start()
    run = Run(
        "Redis Sentinel: master kill -9, replica promoted",
        with_namespace(url, f"f_{uuid.uuid4().hex[:8]}"),
        tmp_path,
        new_seed(),
    )
    first = group.master(url)
    jobs = 600 if LONG else 300
    try:
        ids = run.send(jobs, hold=0.1)
        run.start_worker()
        run.start_worker()
        wait_until(lambda: _beyond(run, jobs // 3), timeout=60, what="progress")
        time.sleep(run.rng.uniform(0.0, 0.3))  # a random moment, from the seed
        outage = Fault(run.name, EVERY_PROCESS, time.time())
        run.faults.append(outage)
        group.kill_master()
        wait_until(lambda: group.master(url) != first, timeout=30, what="a replica promoted")
        outage.until = time.time()
        run.wait_final(ids, timeout=120)
        figures = run.figures(failover_seconds=round(outage.until - outage.at, 2))
        figures.check()
        for proc in run.workers:
            assert proc.poll() is None, run.output(proc)  # every worker outlived the failover
    finally:
        run.stop()
        group.stop()
