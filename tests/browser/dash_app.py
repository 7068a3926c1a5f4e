"""The app the dashboard's browser tests look at: orders charged, some of them failing."""

from __future__ import annotations

import os

from pigeon import App, Fixed

app = App(os.environ.get("PIGEON_URL", "sqlite:///dashboard.db"))


@app.task
def charge(order_id: int, customer: str) -> dict[str, int]:
    return {"order_id": order_id, "cents": 100 * order_id}


@app.task(max_attempts=2, backoff=Fixed(0))
def refund(order_id: int, customer: str) -> None:
    raise ValueError(f"order {order_id} was never charged")


@app.on("orders.*")
def audit(event: dict[str, int]) -> None:
    del event


app.schedule(charge, cron="0 3 * * *", args=(0, "report"), name="nightly-report")
