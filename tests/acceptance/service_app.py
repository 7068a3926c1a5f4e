"""An app with a service that crashes on each of its first runs (for the dashboard's services table)."""

from __future__ import annotations

import asyncio
import os

from pigeon import App

app = App(os.environ.get("PIGEON_URL", "sqlite:///services.db"))
runs = 0


@app.service(backoff=(0.05, 0.1))
async def flaky() -> None:
    global runs
    runs += 1
    if runs <= 2:
        raise RuntimeError("flaky")
    await asyncio.Event().wait()
