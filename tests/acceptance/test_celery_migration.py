"""The worked migration in docs/migrating-from-celery.md, run command by command.

Each ``console`` block of the guide's worked migration is one step, run in a copy
of examples/celery_migration: ``$ cmd &`` starts a process for the step (stopped
at the step's end), ``$ cmd`` runs one and its output must hold the lines that
follow it. ``python``, ``pigeon`` and ``celery`` are this environment's.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from tests.conftest import server_url

ROOT = Path(__file__).parents[2]
GUIDE = ROOT / "docs" / "migrating-from-celery.md"
EXAMPLE = ROOT / "examples" / "celery_migration"


def steps() -> list[tuple[str, str]]:
    text = GUIDE.read_text().split("## A worked migration", 1)[1].split("\n## ", 1)[0]
    found = re.findall(r"### (Step [^\n]*)\n(.*?)(?=\n### |\Z)", text, re.S)
    return [
        (title, block) for title, body in found for block in re.findall(r"```console\n(.*?)```", body, re.S)
    ]


def commands(block: str) -> list[tuple[str, list[str]]]:
    """``(command, expected output lines)`` in order."""
    out: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            out.append((line[2:], []))
        elif line.strip():
            out[-1][1].append(line)
    return out


def resolve(command: str) -> str:
    words = shlex.split(command)
    tools = {
        "python": [sys.executable],
        "pigeon": [sys.executable, "-m", "pigeon"],
        "celery": [sys.executable, "-m", "celery"],
    }
    return shlex.join(tools.get(words[0], [words[0]]) + words[1:])


def test_the_guide_has_every_step() -> None:
    assert [t.split(":")[0] for t, _ in steps()] == ["Step 0", "Step 1", "Step 2", "Step 3"]


@pytest.mark.timeout(300)
def test_the_worked_migration_runs_as_written(tmp_path: Path) -> None:
    pytest.importorskip("celery")
    work = tmp_path / "project"
    shutil.copytree(EXAMPLE, work, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3", "*.db"))
    # The example uses Celery's own queue names: it gets a Redis database of its own, emptied first.
    redis_url = server_url("redis").rsplit("/", 1)[0] + "/5"
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    env = {
        **os.environ,
        "PYTHONPATH": str(work),
        "REDIS_URL": redis_url,
        "PIGEON_URL": f"sqlite:///{tmp_path}/jobs.db",
        "PIGEON_POLL": "0.05",
        "COLUMNS": "250",
    }
    for title, block in steps():
        started: list[subprocess.Popen[bytes]] = []
        try:
            for index, (command, expected) in enumerate(commands(block)):
                if command.startswith("export "):
                    name, _, value = command.removeprefix("export ").partition("=")
                    env[name] = value
                    continue
                line = re.sub(r"\$(\w+)", lambda m: env[m.group(1)], command)
                background = line.endswith(" &")
                argv = resolve(line.removesuffix(" &"))
                if background:
                    with (tmp_path / f"{title[:6].replace(' ', '')}-{index}.log").open("wb") as log:
                        proc = subprocess.Popen(
                            argv,
                            shell=True,
                            cwd=work,
                            env=env,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )
                    started.append(proc)
                    continue
                done = subprocess.run(
                    argv, shell=True, cwd=work, env=env, capture_output=True, text=True, timeout=120
                )
                assert done.returncode == 0, (
                    f"{title}: {command}\n{done.stdout}\n{done.stderr}{_logs(tmp_path)}"
                )
                for want in expected:
                    assert want in done.stdout.splitlines(), (
                        f"{title}: {command}: no line {want!r} in\n{done.stdout}{_logs(tmp_path)}"
                    )
        finally:
            for proc in started:
                os.killpg(proc.pid, signal.SIGTERM)
            for proc in started:  # the whole group, not only its shell: a step's bridge is gone
                _wait_group_gone(proc)


def _wait_group_gone(proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    proc.wait(20)
    while _group_alive(proc.pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
        time.sleep(0.05)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _logs(where: Path) -> str:
    """The background processes' output so far, for a failure's message."""
    return "".join(f"\n--- {log.name}\n{log.read_text()[-3000:]}" for log in sorted(where.glob("Step*.log")))
