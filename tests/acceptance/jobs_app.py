"""The app the acceptance tests run in real worker processes."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from pigeon import App, Fixed

app = App(os.environ.get("PIGEON_URL", "sqlite:///acceptance.db"))


@app.task
def mark(path: str, hold: float = 0.0) -> int:
    """Appends this worker's pid to ``path`` (a record of who ran it), then holds."""
    with Path(path).open("a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(hold)
    return os.getpid()


@app.task
async def mark_async(path: str, hold: float = 0.0) -> int:
    """``mark`` on the worker's event loop."""
    await asyncio.to_thread(_append, Path(path), f"{os.getpid()}\n")
    await asyncio.sleep(hold)
    return os.getpid()


@app.task
def add(a: int, b: int) -> int:
    return a + b


@app.task(max_attempts=2, backoff=Fixed(0))
def broken(what: str) -> None:
    raise ValueError(f"no {what}")


@app.task(executor="process", timeout=0.5, max_attempts=1)
def spin(seconds: float) -> str:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return "done"


@app.task(executor="process")
def square(n: int) -> int:
    return n * n


def _append(path: Path, line: str) -> None:
    with path.open("a") as f:
        f.write(line)
