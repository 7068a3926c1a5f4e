"""Huey's driver: ``RedisHuey`` on a Redis ``$BENCH_URL``, else ``SqliteHuey`` on the database file.

``$BENCH_URL`` is a ``redis://`` URL, a ``sqlite:///`` URL or a bare file path. It runs with
pigeon's own venv (the scale sections) or benchmarks/.envs/huey (the single-send section).
"""

from __future__ import annotations

import os
import sys

from benchcommon import Peer, Worker, hit, main
from huey import RedisHuey, SqliteHuey
from loadcommon import stamped as stamp_start

URL = os.environ.get("BENCH_URL", "")
if URL.startswith(("redis://", "rediss://", "unix://")):
    huey = RedisHuey("bench", url=URL)
else:
    huey = SqliteHuey("bench", filename=URL.removeprefix("sqlite:///"))
# Huey's consumer polls an empty queue after 0.1 s, backing off to 10 s; these flags make
# it poll every 4 ms, as pigeon's SQLite broker watches for other processes' commits.
POLL = ["-d", "0.004", "-b", "1", "-m", "0.004"]
THREADS = 4  # its storage serialises on one connection; 4 threads beat 1 and 16 in the drain


@huey.task()
def noop() -> None:
    hit()


@huey.task()
def stamped(sent: float) -> None:
    stamp_start(sent)


class HueyPeer(Peer):
    name = "huey"

    def enqueue(self, n: int) -> None:
        noop.map([()] * n)

    def send(self) -> None:
        noop()

    def send_sync(self) -> None:
        noop()

    def send_stamped(self, k: int, sent: float) -> None:
        for _ in range(k):  # no batch enqueue: one commit a job
            stamped(sent)

    def worker(self, mode: str, n: int) -> Worker:
        argv = [sys.executable, "-m", "huey.bin.huey_consumer", "huey_peer.huey", "-w", str(THREADS)]
        return Worker(
            [*argv, "-k", "thread", *POLL, "-n", "-q"],
            note=f"huey_consumer -w {THREADS} -k thread, polling every 4 ms",
        )

    def pending(self) -> int:
        return int(huey.pending_count())


if __name__ == "__main__":
    # The consumer finds the tasks under this module's name, so the driver sends through it.
    import huey_peer

    main(huey_peer.HueyPeer())
