"""The NFC station: many badge readers, one process, one SQLite file, no server.

Each station is a supervised service that reads tags at random and publishes a
frozen ``TagRead``. Three handlers react, each as its own job:

- ``play_sound`` writes a short tone to the station's (simulated) speaker;
- ``look_up_badge`` queries a real SQLite table of badges and a simulated LDAP
  server, then publishes ``access.granted`` or ``access.denied``;
- ``light_led`` turns the station's (simulated) LED green or red for 2 seconds.

``pigeon demo --stations 200 --seconds 20`` runs it with a live view and checks
at the end that every read was answered by a light.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import random
import sqlite3
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from rich.console import Console
from rich.live import Live
from rich.table import Table

from pigeon import App
from pigeon.brokers.base import takes_store

app = App(os.environ.get("PIGEON_DEMO_URL", "sqlite:///nfc-demo.db"))
BADGES = Path(os.environ.get("PIGEON_DEMO_BADGES", "badges.db"))
LDAP_LATENCY = 0.005
LED_SECONDS = 2.0


class TagRead(msgspec.Struct, frozen=True):
    station: str
    uid: str
    at: datetime


class Access(msgspec.Struct, frozen=True):
    station: str
    uid: str
    holder: str | None
    read_at: datetime


@dataclass
class Hardware:
    """The simulated devices, inspectable while the demo runs."""

    leds: dict[str, tuple[str, float]] = field(default_factory=dict)
    tones: dict[str, int] = field(default_factory=dict)
    reads: int = 0
    answered: int = 0
    latencies: list[float] = field(default_factory=list)
    reading: bool = True
    all_answered: asyncio.Event = field(default_factory=asyncio.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


hw = Hardware()
_local = threading.local()


@app.service(restart="on-failure", backoff=(0.5, 5.0))
async def reader(station: str, mean_interval: float) -> None:
    """A reader loop: a tag every ``mean_interval`` seconds on average."""
    uids = _known_uids(BADGES)
    while hw.reading:
        await asyncio.sleep(random.expovariate(1 / mean_interval))
        if not hw.reading:
            return
        uid = random.choice(uids) if random.random() < 0.8 else f"FF:{random.randrange(1 << 16):04X}"
        hw.reads += 1
        await app.apublish("nfc.tag_read", TagRead(station, uid, datetime.now(UTC)))


@app.on("nfc.tag_read")
async def play_sound(event: TagRead) -> None:
    """A 40 ms beep at 8 kHz into the station's speaker buffer."""
    tone = bytes(int(127 + 100 * math.sin(2 * math.pi * 880 * i / 8000)) for i in range(320))
    hw.tones[event.station] = hw.tones.get(event.station, 0) + len(tone)


@app.on("nfc.tag_read", max_attempts=5)
def look_up_badge(event: TagRead) -> None:
    """Blocking code, as an ORM query would be: it runs in the worker's thread pool."""
    db = getattr(_local, "db", None)
    if db is None:
        db = _local.db = sqlite3.connect(BADGES)
    row = db.execute("SELECT holder FROM badges WHERE uid = ?", (event.uid,)).fetchone()
    time.sleep(LDAP_LATENCY)  # the LDAP round trip
    topic = "access.granted" if row else "access.denied"
    app.publish(topic, Access(event.station, event.uid, row[0] if row else None, event.at))


@app.on("access.*")
async def light_led(event: Access) -> None:
    color = "green" if event.holder else "red"
    now = time.time()
    hw.leds[event.station] = (color, now + LED_SECONDS)
    with hw.lock:
        hw.latencies.append(now - event.read_at.timestamp())
        hw.answered += 1
    if not hw.reading and hw.answered >= hw.reads:
        hw.all_answered.set()


@functools.cache
def _known_uids(path: Path) -> list[str]:
    """The badges on file, read once for all readers (2,000 reads would stall the loop at start)."""
    with sqlite3.connect(path) as db:
        return [uid for (uid,) in db.execute("SELECT uid FROM badges")]


def _make_badges(path: Path, count: int = 500) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE IF NOT EXISTS badges (uid TEXT PRIMARY KEY, holder TEXT)")
        db.executemany(
            "INSERT OR IGNORE INTO badges VALUES (?, ?)",
            [(f"04:{i:04X}", f"employee {i}") for i in range(count)],
        )


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _view(stations: int, started: float, in_flight: int) -> Table:
    elapsed = max(time.monotonic() - started, 1e-9)
    now = time.time()
    lit = [c for c, until in hw.leds.values() if until > now]
    with hw.lock:
        lat = list(hw.latencies[-5000:])
    table = Table(title="pigeon NFC station — one process, one SQLite file")
    for col in ("stations", "reads", "reads/s", "jobs in flight", "LEDs green/red", "p50", "p99"):
        table.add_column(col, justify="right")
    table.add_row(
        str(stations),
        str(hw.reads),
        f"{hw.reads / elapsed:.0f}",
        str(in_flight),
        f"{lit.count('green')}/{lit.count('red')}",
        f"{_percentile(lat, 0.5) * 1000:.1f} ms",
        f"{_percentile(lat, 0.99) * 1000:.1f} ms",
    )
    return table


async def run(stations: int, seconds: float, mean_interval: float, console: Console) -> bool:
    """Run the stations for ``seconds``, then wait for every read to be answered."""
    app.service_group(reader, [(f"door-{i}", mean_interval) for i in range(stations)])
    started = time.monotonic()
    async with app.worker(concurrency=1000, poll=0.05) as worker:
        with Live(_view(stations, started, 0), console=console, refresh_per_second=4) as live:
            while time.monotonic() - started < seconds:
                await asyncio.sleep(0.25)
                live.update(_view(stations, started, len(worker._running)))
            hw.reading = False
            if hw.answered < hw.reads:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(10):
                        await hw.all_answered.wait()
            live.update(_view(stations, started, len(worker._running)))
    await app.aclose()
    return _summary(console)


def _summary(console: Console) -> bool:
    lat = hw.latencies
    ok = hw.answered == hw.reads and hw.reads > 0
    console.print()
    console.print(
        f"reads {hw.reads}, answered {hw.answered}"
        + (f", tag→LED p50 {statistics.median(lat) * 1000:.1f} ms" if lat else "")
        + (f", p99 {_percentile(lat, 0.99) * 1000:.1f} ms, max {max(lat) * 1000:.1f} ms" if lat else "")
    )
    if ok:
        console.print("[bold green]every read was answered by a light[/]")
    else:
        console.print(f"[bold red]{hw.reads - hw.answered} reads were not answered[/]")
    return ok


def main(
    stations: int = 10,
    seconds: float = 10.0,
    mean_interval: float = 2.0,
    *,
    url: str | None = None,
    store: str | None = None,
) -> bool:
    """Run the demo in a fresh directory; True when every read was answered.

    ``url`` picks another broker (default a fresh SQLite file); RabbitMQ keeps its record in
    ``store``, else ``$PIGEON_STORE``, else a fresh SQLite file.
    """
    console = Console()
    with tempfile.TemporaryDirectory(prefix="pigeon-nfc-") as tmp:
        global BADGES
        BADGES = Path(tmp) / "badges.db"
        _make_badges(BADGES)
        app.url = url or f"sqlite:///{Path(tmp) / 'jobs.db'}"
        if takes_store(app.url):
            app.store = store or os.environ.get("PIGEON_STORE") or f"sqlite:///{Path(tmp) / 'jobs.db'}"
        console.rule(
            f"[bold]{stations} stations, {seconds:.0f} s, a read every {mean_interval} s per station"
        )
        try:
            return asyncio.run(run(stations, seconds, mean_interval, console))
        finally:
            app.close()
