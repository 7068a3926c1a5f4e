"""One virtualenv per peer under ``benchmarks/.envs/<name>``, created on demand.

Each peer gets its own environment (same Python as the harness) so their
dependency pins never meet pigeon's or each other's. A venv is reused when its
``.bench-ready`` marker names the same requirements; a failed install is
remembered in ``.bench-failed`` only for this run's report (the next run retries).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ENVS = Path(__file__).resolve().parent.parent / ".envs"

# What each peer's venv installs; the driver scripts need nothing else.
REQUIREMENTS: dict[str, list[str]] = {
    "procrastinate": ["procrastinate"],
    "pgqueuer": ["pgqueuer", "asyncpg"],
    "rq": ["rq"],
    "arq": ["arq"],
    "dramatiq": ["dramatiq[redis,rabbitmq]"],  # pika, for its RabbitMQ broker (the rabbitmq section)
    "saq": ["saq[redis]", "typing_extensions"],  # saq 0.26 imports it without requiring it
    "taskiq": ["taskiq", "taskiq-redis"],
    "celery": ["celery[redis]"],
    "huey": ["huey", "redis"],
}

INSTALL_TIMEOUT = 600.0


@dataclass
class Env:
    name: str
    python: Path | None
    seconds: float  # spent creating it in this run (0 when reused)
    why: str = ""  # set when there is no usable env
    version: str = ""


def _marker(name: str) -> str:
    return "\n".join([sys.version, *REQUIREMENTS[name]])


def ensure(name: str) -> Env:
    """The peer's venv, created and installed if missing or stale."""
    root = ENVS / name
    python = root / "bin" / "python"
    ready = root / ".bench-ready"
    if ready.exists() and python.exists() and ready.read_text() == _marker(name):
        return Env(name, python, 0.0, version=_version(python, name))
    start = time.perf_counter()
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", str(root)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        proc = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *REQUIREMENTS[name]],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        return Env(name, None, time.perf_counter() - start, f"install timed out after {exc.timeout:.0f} s")
    except subprocess.CalledProcessError as exc:
        return Env(name, None, time.perf_counter() - start, f"venv failed: {exc.stderr!r:.200}")
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        lines = [x for x in (proc.stderr or proc.stdout).strip().splitlines() if x.strip()]
        return Env(name, None, seconds, f"pip install failed: {' | '.join(lines[-2:])[:300]}")
    ready.write_text(_marker(name))
    return Env(name, python, seconds, version=_version(python, name))


def _version(python: Path, name: str) -> str:
    dist = {"pgqueuer": "pgqueuer", "taskiq": "taskiq-redis"}.get(name, name)
    code = f"import importlib.metadata as m; print(m.version({dist!r}))"
    try:
        out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return ""
    v = out.stdout.strip()
    if name == "taskiq" and v:
        core = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; print(m.version('taskiq'))"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
        return f"{core} (taskiq-redis {v})"
    return v


if __name__ == "__main__":
    for peer in sys.argv[1:] or list(REQUIREMENTS):
        env = ensure(peer)
        print(f"{peer}: {env.version or env.why} ({env.seconds:.1f} s)", flush=True)
