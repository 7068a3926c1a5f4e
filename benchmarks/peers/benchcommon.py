"""What every peer driver shares; standard library only, so each peer's venv can import it.

A driver is run by the harness as ``<venv python> <peer>_peer.py MODE N`` with
``BENCH_URL`` naming the server, and prints one JSON object as its last line.
Its no-op task calls :func:`hit` and nothing else: the task's process counts
the jobs it has started and tells the driver over a UDP datagram on loopback,
so no peer needs a result backend for the harness to see its work done.

- ``enqueue N``: one batch of N jobs, timed (the peer's own batch API).
- ``drain N``: N jobs enqueued (untimed), then the peer's worker, one process,
  started; the figure runs from the first job's start to the N-th job's start,
  both stamped in the worker, so interpreter start-up is left out for everyone.
- ``latency N``: one worker idles; N times, after an idle gap, one job is sent
  and timed from just before the send to the job's start (wall clocks of one host).
- ``single N``: N jobs sent one by one from one thread, timed: the peer's synchronous
  send where it has one (a web request's), else its async send on the driver's loop.
- ``threads N``: the same N jobs sent by 4 threads at once (4 tasks on the driver's
  loop for an async-only peer), timed from the first send to the last one's return.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# -- the worker side -----------------------------------------------------------

_count = itertools.count(1)  # next() on it is atomic under the GIL: threaded workers share it safely
_first = 0.0
_sock: socket.socket | None = None
_addr: tuple[str, int] | None = None
_target = 0
_latency = False
_EVERY = 1000  # progress datagrams in a drain, so a timed-out run says how far it got


def _setup() -> None:
    global _sock, _addr, _target, _latency
    _addr = ("127.0.0.1", int(os.environ.get("BENCH_PORT", "0")))
    _target = int(os.environ.get("BENCH_TARGET", "0"))
    _latency = os.environ.get("BENCH_MODE") == "latency"
    _sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


def hit() -> None:
    """The whole body of every peer's no-op task."""
    global _first
    now = time.time()
    if _sock is None:
        _setup()
    assert _sock is not None and _addr is not None
    if _latency:
        _sock.sendto(f"L {now!r}".encode(), _addr)
        return
    i = next(_count)
    if i == 1:
        _first = now
    if i == _target:
        _sock.sendto(f"D {_first!r} {now!r} {i}".encode(), _addr)
    elif i % _EVERY == 0:
        _sock.sendto(f"P {i}".encode(), _addr)


# -- the driver side -----------------------------------------------------------


@dataclass
class Worker:
    """How a peer starts its worker: argv (run with cwd benchmarks/peers) and extra env."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    note: str = ""  # concurrency and settings, for the report


class Peer:
    """One tool's hooks; async hooks are run on the driver's event loop."""

    name = "peer"

    def setup(self) -> Any:  # create schema / clean keys
        return None

    def enqueue(self, n: int) -> Any:  # one batch of n no-op jobs
        raise NotImplementedError

    def fill(self, n: int) -> Any:  # n jobs for a drain; the batch API unless told otherwise
        return self.enqueue(n)

    def send(self) -> Any:  # one no-op job
        raise NotImplementedError

    def send_stamped(self, k: int, sent: float) -> Any:  # k jobs running loadcommon.stamped(sent)
        raise NotImplementedError

    send_sync: Callable[[], Any] | None = None
    """One no-op job from synchronous code, if the peer has a synchronous send."""

    def worker(self, mode: str, n: int) -> Worker:
        raise NotImplementedError

    def pending(self) -> Any:  # jobs still waiting, or None if unknown (a check after a drain)
        return None

    def teardown(self) -> Any:
        return None


class Driver:
    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.loop = asyncio.new_event_loop()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.proc: subprocess.Popen[bytes] | None = None
        # Worker logs go beside the venvs, in the git-ignored benchmarks/.envs/.
        self.log = HERE.parent / ".envs" / "logs" / f"{peer.name}-worker.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        out = fn(*args)
        if inspect.isawaitable(out):
            return self.loop.run_until_complete(out)
        return out

    def start_worker(self, mode: str, n: int) -> Worker:
        spec = self.call(self.peer.worker, mode, n)
        env = dict(os.environ)
        env.update(spec.env)
        env.update(BENCH_PORT=str(self.port), BENCH_TARGET=str(n), BENCH_MODE=mode)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH", "")) if p)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(spec.argv, cwd=HERE, env=env, stdout=out, stderr=subprocess.STDOUT)
        return spec

    def stop_worker(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        # SIGINT first: several CLIs (arq, taskiq) shut down cleanly on it; then TERM, then KILL.
        for sig, grace in ((signal.SIGINT, 5.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(grace)
                return
            except subprocess.TimeoutExpired:
                continue

    def tail(self) -> str:
        try:
            lines = [x for x in self.log.read_text(errors="replace").splitlines() if x.strip()]
        except OSError:
            return "(no log)"
        return " | ".join(lines[-3:])[-400:] or "(no output)"

    def recv(self, deadline: float) -> str | None:
        """The next datagram before ``deadline`` (monotonic), or None; checks the worker is alive."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(min(left, 0.5))
            try:
                data, _ = self.sock.recvfrom(256)
                return data.decode()
            except TimeoutError:
                if self.proc is not None and self.proc.poll() is not None:
                    raise WorkerDied(
                        f"the worker exited with {self.proc.returncode}: {self.tail()}"
                    ) from None

    def flush_datagrams(self) -> None:
        self.sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                self.sock.recvfrom(256)
        self.sock.setblocking(True)

    # -- modes ---------------------------------------------------------------

    def enqueue(self, n: int) -> dict[str, Any]:
        start = time.perf_counter()
        self.call(self.peer.enqueue, n)
        seconds = time.perf_counter() - start
        return {"jobs": n, "seconds": seconds, "pending": self.call(self.peer.pending)}

    def drain(self, n: int, limit: float) -> dict[str, Any]:
        start = time.perf_counter()
        self.call(self.peer.fill, n)
        fill = time.perf_counter() - start
        spec = self.start_worker("drain", n)
        deadline = time.monotonic() + limit
        done = 0
        cpu = CpuWindow(self.proc.pid if self.proc else 0)
        while True:
            msg = self.recv(deadline)
            if msg is None:
                return {
                    "error": f"timed out after {limit:.0f} s ({done:,} of {n:,} started)",
                    "note": spec.note,
                }
            kind, *rest = msg.split()
            if kind == "P":
                done = max(done, int(rest[0]))
                cpu.begin(done)  # from the first progress on: start-up is left out
            elif kind == "D":
                first, last = float(rest[0]), float(rest[1])
                break
        out = {"jobs": n, "seconds": last - first, "fill": fill, "note": spec.note}
        return out | cpu.end(n)

    def latency(self, n: int, gap: float, limit: float, timeout: float) -> dict[str, Any]:
        spec = self.start_worker("latency", n)
        # The first job waits out the worker's start-up.
        self.call(self.peer.send)
        if self.recv(time.monotonic() + 60.0) is None:
            return {"error": f"the worker did not start a job within 60 s ({self.tail()})", "note": spec.note}
        samples: list[float] = []
        why = ""
        deadline = time.monotonic() + limit
        for _ in range(n):
            if time.monotonic() >= deadline:
                why = f"stopped at the {limit:.0f} s bound"
                break
            time.sleep(gap)  # the idle gap is the workload, not a wait for anything
            self.flush_datagrams()
            sent = time.time()
            self.call(self.peer.send)
            msg = self.recv(time.monotonic() + timeout)
            if msg is None:
                why = f"a job did not start within {timeout:.0f} s"
                break
            samples.append(float(msg.split()[1]) - sent)
        return {"samples": samples, "why": why, "note": spec.note}

    def single(self, n: int) -> dict[str, Any]:
        send_sync = self.peer.send_sync
        if send_sync is None:
            return self._async_sends(n, 1)
        send_sync()  # connections and scripts are set up outside the timing, as for the others
        start = time.perf_counter()
        for _ in range(n):
            send_sync()
        seconds = time.perf_counter() - start
        return {"jobs": n, "seconds": seconds, "note": "sync send"}

    def threads(self, n: int) -> dict[str, Any]:
        send_sync = self.peer.send_sync
        if send_sync is None:
            return self._async_sends(n, SENDERS)
        each = n // SENDERS
        start = threading.Barrier(SENDERS + 1)

        def run() -> None:
            send_sync()
            start.wait()
            for _ in range(each - 1):
                send_sync()

        threads = [threading.Thread(target=run) for _ in range(SENDERS)]
        for t in threads:
            t.start()
        start.wait()
        began = time.perf_counter()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - began
        note = f"sync send, {SENDERS} threads"
        return {"jobs": each * SENDERS - SENDERS, "seconds": seconds, "note": note}

    def _async_sends(self, n: int, tasks: int) -> dict[str, Any]:
        async def run() -> float:
            await self.peer.send()

            async def sends(k: int) -> None:
                for _ in range(k):
                    await self.peer.send()

            start = time.perf_counter()
            await asyncio.gather(*(sends(n // tasks) for _ in range(tasks)))
            return time.perf_counter() - start

        seconds = self.loop.run_until_complete(run())
        note = "async send" + (f", {tasks} tasks on one loop" if tasks > 1 else "")
        return {"jobs": n // tasks * tasks, "seconds": seconds, "note": note}


SENDERS = 4


class CpuWindow:
    """CPU seconds per job of the worker (its process tree) and of the server, over a drain.

    The server is the process tree of ``$BENCH_SERVER_PID`` (a local server's main process),
    when that is set.
    """

    def __init__(self, worker: int) -> None:
        self.pids = [worker] + [int(p) for p in os.environ.get("BENCH_SERVER_PID", "").split() if p]
        self.start: list[float] | None = None
        self.done = 0

    def begin(self, done: int) -> None:
        if self.start is None:
            from loadcommon import tree_cpu

            self.start, self.done = [tree_cpu(p) for p in self.pids], done

    def end(self, n: int) -> dict[str, float]:
        if self.start is None or n <= self.done:
            return {}
        from loadcommon import tree_cpu

        spent = [tree_cpu(p) - s for p, s in zip(self.pids, self.start, strict=True)]
        out = {"cpu_per_job": spent[0] / (n - self.done)}
        if len(spent) > 1:
            out["server_cpu_per_job"] = spent[1] / (n - self.done)
        return out


class WorkerDied(Exception):
    pass


def main(peer: Peer, argv: Sequence[str] | None = None) -> None:
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["enqueue", "drain", "latency", "steady", "single", "threads"])
    p.add_argument("n", type=int)
    p.add_argument("--limit", type=float, default=60.0)
    p.add_argument("--gap", type=float, default=0.02)
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--seconds", type=float, default=60.0, help="steady: how long to send")
    args = p.parse_args(argv)
    driver = Driver(peer)
    out: dict[str, Any]
    try:
        driver.call(peer.setup)
        if args.mode == "enqueue":
            out = driver.enqueue(args.n)
        elif args.mode == "drain":
            out = driver.drain(args.n, args.limit)
        elif args.mode == "steady":
            from loadcommon import steady  # N is the rate: jobs/s

            out = steady(driver, args.n, args.seconds, args.limit)
        elif args.mode == "single":
            out = driver.single(args.n)
        elif args.mode == "threads":
            out = driver.threads(args.n)
        else:
            out = driver.latency(args.n, args.gap, args.limit, args.timeout)
    except WorkerDied as exc:
        out = {"error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - reported in the table
        out = {"error": f"{type(exc).__name__}: {exc}"[:400]}
    finally:
        driver.stop_worker()
        with contextlib.suppress(Exception):
            driver.call(peer.teardown)
    print(json.dumps(out), flush=True)
    sys.stdout.flush()
