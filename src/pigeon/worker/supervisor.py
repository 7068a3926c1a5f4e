"""Several worker processes under one supervisor (``pigeon worker --processes N``).

Each child is a full ``pigeon worker`` with its own event loop. Children run
in their own session so a terminal's Ctrl-C reaches only the supervisor. Its
first signal sends the children SIGTERM (a graceful stop), its second SIGUSR1
(stop at once). A child counts SIGTERMs from anyone as one graceful stop, since
systemd's ``KillMode=control-group`` sends its own beside the supervisor's.
A child that dies while the supervisor is running is restarted with
exponential back-off; one that exits 0 (``--burst``) is not.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pigeon.app import App

log = logging.getLogger("pigeon.supervisor")

_TICK = 0.1


@dataclass
class _Child:
    argv: list[str]
    proc: subprocess.Popen[bytes] = field(init=False)
    failures: int = 0
    restart_at: float | None = None

    env: dict[str, str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pigeon", *self.argv], start_new_session=True, env=self.env
        )
        self.restart_at = None


def supervise(argv: list[str], processes: int, metrics: tuple[App, str, int] | None = None) -> int:
    """Run ``processes`` workers with ``argv`` until they all exit; return the worst exit code.

    With ``metrics`` (the app, a host, a port), the children count into a shared
    Prometheus directory and this process serves their sum.
    """
    child_argv = [*_without_metrics(argv), "--processes", "1"]
    env = {**os.environ, "PIGEON_SUPERVISED": "1"}
    directory = None
    if metrics is not None:
        from pigeon.metrics import serve_supervisor

        directory = tempfile.mkdtemp(prefix="pigeon-metrics-")
        env.update(PROMETHEUS_MULTIPROC_DIR=directory, PIGEON_METRICS_CHILD="1")
        app, host, port = metrics
        bound = serve_supervisor(app, directory, host, port)
        print(f"metrics on http://{host}:{bound}/metrics", flush=True)
    # Services (reader loops and the like) must run once, not once per process.
    quiet = {**env, "PIGEON_SERVICES": "false"}
    children = [_Child(child_argv, env=env if i == 0 else quiet) for i in range(processes)]
    try:
        return _watch(children, processes)
    finally:
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


def _without_metrics(argv: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--metrics-port", "--metrics-host"):
            skip = True
        elif not arg.startswith(("--metrics-port=", "--metrics-host=")):
            out.append(arg)
    return out


def _watch(children: list[_Child], processes: int) -> int:
    signals: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        signals.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for c in children:
            c.start()
        log.info(
            "supervising %d worker processes: %s", processes, ", ".join(str(c.proc.pid) for c in children)
        )
        forwarded = 0
        worst = 0
        while True:
            while len(signals) > forwarded:
                forwarded += 1
                how = signal.SIGTERM if forwarded == 1 else signal.SIGUSR1
                for c in children:
                    if c.proc.poll() is None:
                        c.proc.send_signal(how)
            stopping = forwarded > 0
            alive = False
            for c in children:
                code = c.proc.poll()
                if code is None:
                    alive = True
                    continue
                worst = max(worst, abs(code))
                if stopping or code == 0:
                    continue
                if c.restart_at is None:
                    c.failures += 1
                    delay = min(30.0, 2.0 ** (c.failures - 1))
                    log.error("worker %d exited with %d; restarting in %.0f s", c.proc.pid, code, delay)
                    c.restart_at = time.monotonic() + delay
                    alive = True
                elif time.monotonic() >= c.restart_at:
                    c.start()
                    alive = True
                else:
                    alive = True
            if not alive:
                return 0 if stopping else worst
            time.sleep(_TICK)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
