"""Servers of a scenario's own, to restart or crash without disturbing the shared test servers."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def need(binary: str) -> str:
    """The path of ``binary``, or a skip (a failure under CI, where the servers must be there)."""
    found = shutil.which(binary)
    if found is None:
        reason = f"{binary} is not installed (scripts/servers/*.sh install it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; under CI a missing server is a failure")
        pytest.skip(reason)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """redis-server on loopback with AOF on and ``appendfsync always``: every write on disk."""

    def __init__(self, directory: Path) -> None:
        self.binary = need("redis-server")
        self.port = free_port()
        self.dir = directory
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.dir)]
        args += ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
        args += ["--maxmemory-policy", "noeviction"]
        log = (self.dir / "redis.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 20
        while not self._answers():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"redis-server did not start: {(self.dir / 'redis.log').read_text()}")
            time.sleep(0.02)  # polling the new server's port, bounded by the deadline

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def crash(self) -> None:
        """kill -9: what is not in the append-only file is gone."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class PostgresServer:
    """A PostgreSQL cluster of the scenario's own (scripts/servers/postgres.sh), durable settings on."""

    def __init__(self, directory: Path) -> None:
        self.env = {**os.environ, "PIGEON_SERVERS_DIR": str(directory), "PIGEON_PG_DURABLE": "1"}
        self.dir = directory
        self.url = ""

    def _script(self, *args: str) -> str:
        done = subprocess.run(
            [str(ROOT / "scripts/servers/postgres.sh"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if done.returncode != 0:
            if args[0] == "start" and os.environ.get("CI", "").lower() != "true":
                pytest.skip(f"no PostgreSQL server could be started: {done.stderr.strip()}")
            raise RuntimeError(f"postgres.sh {' '.join(args)}: {done.stderr}")
        return done.stdout

    def start(self) -> None:
        self._script("start")
        line = (self.dir / "postgres.env").read_text().strip()
        self.url = line.split("=", 1)[1]

    def restart(self, mode: str) -> None:
        self._script("restart", mode)

    def stop(self) -> None:
        self._script("stop")
