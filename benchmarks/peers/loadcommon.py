"""Steady load for the peer drivers; standard library only, like ``benchcommon``.

``steady RATE --seconds S``: the peer's worker runs (its defaults) while the driver sends
RATE jobs a second for S seconds, in ticks of 10 ms (each tick sends what is due since
the last, in one call of the peer's ``send_stamped(k, sent)``). Every job carries the
time its send began and runs :func:`stamped`, which tells the driver over UDP when it
started; the driver collects those on a thread. Reported: enqueue→start latency
p50/p99/max (and p99 of each half, to show whether it grows), the backlog (sent, not
started) sampled every second, what the producer achieved, how long the worker took to
catch up once sending stopped, and the worker's CPU seconds per job.
"""

from __future__ import annotations

import os
import socket
import statistics
import threading
import time
from typing import Any

TICK = 0.01
RCVBUF = 16 * 2**20  # room for seconds of datagrams should the receiving thread lag

# -- the worker side -----------------------------------------------------------

_sock: socket.socket | None = None
_addr: tuple[str, int] | None = None


def stamped(sent: float) -> None:
    """The whole body of every peer's steady-load task."""
    global _sock, _addr
    now = time.time()
    if _sock is None:
        _addr = ("127.0.0.1", int(os.environ.get("BENCH_PORT", "0")))
        _sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    assert _addr is not None
    _sock.sendto(f"{sent!r} {now!r}".encode(), _addr)


# -- process CPU ---------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its descendants, live or reaped, from /proc."""
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15]) / _TICKS  # its own, and its reaped children's
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return total


def rss_mb(pid: int) -> float:
    """Resident memory of one process (VmRSS), in MB; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


# -- the driver side -----------------------------------------------------------


class Collector:
    """Datagrams from :func:`stamped`, received on a thread: (sent, started) pairs."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pairs: list[tuple[float, float]] = []
        self.stop = threading.Event()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.settimeout(0.1)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                data, _ = self.sock.recvfrom(256)
            except TimeoutError:
                continue
            sent, started = data.split()
            self.pairs.append((float(sent), float(started)))

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


def _quantile(ms: list[float], q: int) -> float:
    if len(ms) < 2:
        return ms[0] if ms else 0.0
    return statistics.quantiles(ms, n=100, method="inclusive")[q - 1]


def summarise(pairs: list[tuple[float, float]]) -> dict[str, float]:
    ms = [(started - sent) * 1000 for sent, started in pairs]
    half = len(ms) // 2
    return {
        "p50": statistics.median(ms) if ms else 0.0,
        "p99": _quantile(ms, 99),
        "max": max(ms, default=0.0),
        "p99_first_half": _quantile(ms[:half], 99),
        "p99_second_half": _quantile(ms[half:], 99),
    }


def steady(driver: Any, rate: int, seconds: float, limit: float) -> dict[str, Any]:
    """Send ``rate`` jobs/s for ``seconds`` to the peer's running worker; the figures as JSON."""
    peer = driver.peer
    spec = driver.start_worker("steady", 0)
    driver.call(peer.send_stamped, 1, time.time())  # waits out the worker's start-up
    if driver.recv(time.monotonic() + 60.0) is None:
        return {"error": f"the worker did not start a job within 60 s ({driver.tail()})", "note": spec.note}
    collector = Collector(driver.sock)
    pid = driver.proc.pid
    try:
        cpu0 = tree_cpu(pid)
        sent = 0
        backlog: list[int] = []
        begin = time.monotonic()
        next_tick = next_sample = begin
        while (now := time.monotonic()) < begin + seconds:
            # A producer that fell behind catches up by at most a tenth of a second's jobs a
            # tick, so a slow send shows as a lower rate, not as a tick that never ends.
            due = min(int(rate * (now - begin + TICK)) - sent, max(1, rate // 10))
            if due > 0:
                driver.call(peer.send_stamped, due, time.time())
                sent += due
            if now >= next_sample:
                backlog.append(sent - len(collector.pairs))
                next_sample += 1.0
            next_tick += TICK
            time.sleep(max(0.0, next_tick - time.monotonic()))
        sending = time.monotonic() - begin
        end_backlog = sent - len(collector.pairs)
        stopped = time.monotonic()
        deadline = stopped + limit
        while len(collector.pairs) < sent and time.monotonic() < deadline:
            time.sleep(0.01)
        catch_up = time.monotonic() - stopped
        cpu = tree_cpu(pid) - cpu0
    finally:
        collector.close()
    pairs = list(collector.pairs)
    out: dict[str, Any] = {
        "rate": rate,
        "sent": sent,
        "started": len(pairs),
        "send_rate": sent / sending,
        "backlog_max": max(backlog, default=0),
        "backlog_end": end_backlog,
        "catch_up": catch_up,
        "cpu_per_job": cpu / max(1, len(pairs)),
        "note": spec.note,
    }
    out.update(summarise(pairs))
    return out
