"""The NFC station: many badge readers, one process, one SQLite file, no server.

Each station is a supervised service that reads tags at random and publishes a
frozen ``TagRead``. Handlers react, each as its own job:

- ``play_sound`` writes a short tone to the station's (simulated) speaker;
- ``look_up_badge`` queries a real SQLite table of badges and a simulated LDAP
  server, then sends the answer to the door's queue (``door.<box>``);
- ``light_led`` turns the station's (simulated) LED green or red for 2 seconds. It runs
  where the door's box is: in this process here, in the readers' process with
  ``--role readers`` (``nfc_roles.py``).

``pigeon demo --stations 200 --seconds 20`` runs it with a live view and checks
at the end that every read was answered by a light, then prints where a read's
time went (``nfc_clock.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import os
import random
import resource
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import msgspec
from rich.console import Console
from rich.live import Live
from rich.table import Table

from pigeon import App, JobContext
from pigeon.brokers.base import takes_store
from pigeon.demo.nfc_clock import Breakdown, ClaimClock
from pigeon.errors import BrokerError
from pigeon.worker.loop import Worker

app = App(os.environ.get("PIGEON_DEMO_URL", "sqlite:///nfc-demo.db"))
BADGES = Path(os.environ.get("PIGEON_DEMO_BADGES", "badges.db"))
LDAP_LATENCY = 0.005
LED_SECONDS = 2.0
LOCAL_BOX = "local"
QUANTILES = (("p50", 0.5), ("p99", 0.99), ("max", 1.0))
_TONE = bytes(int(127 + 100 * math.sin(2 * math.pi * 880 * i / 8000)) for i in range(320))


class TagRead(msgspec.Struct, frozen=True):
    station: str
    uid: str
    at: datetime
    box: str = LOCAL_BOX
    read: str = ""


class Answer(msgspec.Struct, frozen=True):
    """The look-up's answer to one read, sent to the door's box with the read's marks so far."""

    station: str
    uid: str
    holder: str | None
    read: str
    marks: tuple[float, ...]


@dataclass
class Hardware:
    """The simulated devices of this process, inspectable while the demo runs."""

    leds: dict[str, tuple[str, float]] = field(default_factory=dict)
    tones: dict[str, int] = field(default_factory=dict)
    reads: set[str] = field(default_factory=set)
    answered: set[str] = field(default_factory=set)
    latencies: list[float] = field(default_factory=list)
    breakdown: Breakdown = field(default_factory=Breakdown)
    clock: ClaimClock = field(default_factory=ClaimClock)
    retries: int = 0
    reading: bool = True
    all_answered: asyncio.Event = field(default_factory=asyncio.Event)
    journal: tuple[IO[str], IO[str]] | None = None  # published reads, lit reads (--journal)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def unanswered(self) -> int:
        with self.lock:
            return len(self.reads - self.answered)


hw = Hardware()
_local = threading.local()


def door_queue(box: str) -> str:
    return f"door.{box}"


@app.service(restart="on-failure", backoff=(0.5, 5.0))
async def reader(station: str, mean_interval: float, box: str = LOCAL_BOX) -> None:
    """A reader loop: a tag every ``mean_interval`` seconds on average."""
    uids = _known_uids(BADGES)
    while hw.reading:
        await asyncio.sleep(random.expovariate(1 / mean_interval))
        if not hw.reading:
            return
        uid = random.choice(uids) if random.random() < 0.8 else f"FF:{random.randrange(1 << 16):04X}"
        read = TagRead(station, uid, datetime.now(UTC), box, os.urandom(8).hex())
        await _publish(read)


async def _publish(read: TagRead) -> None:
    """Publish a read, trying again while the broker cannot be reached: a read is never dropped."""
    pause = 0.05
    while True:
        try:
            await app.apublish("nfc.tag_read", read)
            break
        except BrokerError:
            hw.retries += 1
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)
    with hw.lock:
        hw.reads.add(read.read)
    if hw.journal is not None:
        hw.journal[0].write(read.read + "\n")
        hw.journal[0].flush()


@app.on("nfc.tag_read")
async def play_sound(event: TagRead) -> None:
    """A 40 ms beep at 8 kHz into the station's speaker buffer."""
    hw.tones[event.station] = hw.tones.get(event.station, 0) + len(_TONE)


@app.on("nfc.tag_read", max_attempts=5)
def look_up_badge(ctx: JobContext, event: TagRead) -> None:
    """Blocking code, as an ORM query would be: it runs in the worker's thread pool."""
    claim_out, claim_back = hw.clock.pop(ctx.job_id)
    started = time.time()
    db = getattr(_local, "db", None)
    if db is None:
        db = _local.db = sqlite3.connect(BADGES)
    row = db.execute("SELECT holder FROM badges WHERE uid = ?", (event.uid,)).fetchone()
    time.sleep(LDAP_LATENCY)  # the LDAP round trip
    marks = (event.at.timestamp(), claim_out, claim_back, started, time.time())
    answer = Answer(event.station, event.uid, row[0] if row else None, event.read, marks)
    light_led.options(queue=door_queue(event.box)).send(answer)


@app.task(queue=door_queue(LOCAL_BOX))
async def light_led(ctx: JobContext, answer: Answer) -> None:
    """The door's LED: green for a badge on file, red otherwise."""
    claim_out, claim_back = hw.clock.pop(ctx.job_id)
    now = time.time()
    hw.leds[answer.station] = ("green" if answer.holder else "red", now + LED_SECONDS)
    with hw.lock:
        if answer.read in hw.answered:
            return  # run again after its worker was lost: lit once
        hw.answered.add(answer.read)
        hw.latencies.append(hw.breakdown.add((*answer.marks, claim_out, claim_back, now)))
        if not hw.reading and not hw.reads - hw.answered:
            hw.all_answered.set()
    if hw.journal is not None:
        hw.journal[1].write(answer.read + "\n")
        hw.journal[1].flush()


@functools.cache
def _known_uids(path: Path) -> list[str]:
    """The badges on file, read once for all readers (2,000 reads would stall the loop at start)."""
    with sqlite3.connect(path) as db:
        return [uid for (uid,) in db.execute("SELECT uid FROM badges")]


def make_badges(path: Path, count: int = 500) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE IF NOT EXISTS badges (uid TEXT PRIMARY KEY, holder TEXT)")
        db.executemany(
            "INSERT OR IGNORE INTO badges VALUES (?, ?)",
            [(f"04:{i:04X}", f"employee {i}") for i in range(count)],
        )


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _view(title: str, stations: int, started: float, in_flight: int) -> Table:
    elapsed = max(time.monotonic() - started, 1e-9)
    now = time.time()
    lit = [c for c, until in hw.leds.values() if until > now]
    with hw.lock:
        lat = list(hw.latencies[-5000:])
        reads = len(hw.reads)
    table = Table(title=title)
    for col in ("stations", "reads", "reads/s", "jobs in flight", "LEDs green/red", "p50", "p99"):
        table.add_column(col, justify="right")
    table.add_row(
        str(stations),
        str(reads),
        f"{reads / elapsed:.0f}",
        str(in_flight),
        f"{lit.count('green')}/{lit.count('red')}",
        f"{percentile(lat, 0.5) * 1000:.1f} ms",
        f"{percentile(lat, 0.99) * 1000:.1f} ms",
    )
    return table


@contextlib.asynccontextmanager
async def observed_worker(**config: Any) -> AsyncIterator[Worker]:
    """A worker of the demo's app whose claims :attr:`Hardware.clock` times."""
    worker = app.make_worker(**config)
    worker.observer = hw.clock
    hw.clock.seam = await app.client.connection()
    runner = asyncio.create_task(worker.run(install_signals=False), name="pigeon-worker")
    try:
        await worker.started.wait()
        yield worker
    finally:
        worker.stop()
        await runner


async def read_for(seconds: float, title: str, stations: int, console: Console, worker: Worker) -> None:
    """Let the readers read for ``seconds`` with a live view, then wait (10 s at most) for answers."""
    started = time.monotonic()
    with Live(_view(title, stations, started, 0), console=console, refresh_per_second=4) as live:
        while time.monotonic() - started < seconds:
            await asyncio.sleep(0.25)
            live.update(_view(title, stations, started, len(worker._running)))
        hw.reading = False
        if hw.unanswered():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await hw.all_answered.wait()
        live.update(_view(title, stations, started, len(worker._running)))


async def run(
    stations: int, seconds: float, mean_interval: float, console: Console, report: Path | None = None
) -> bool:
    """Run the stations for ``seconds``, then wait for every read to be answered."""
    app.service_group(reader, [(f"door-{i}", mean_interval) for i in range(stations)])
    queues = ("default", door_queue(LOCAL_BOX))
    async with observed_worker(queues=queues, concurrency=1000, poll=0.05) as worker:
        title = "pigeon NFC station — one process, one SQLite file"
        await read_for(seconds, title, stations, console, worker)
    await app.aclose()
    return summary(console, report)


def figures() -> dict[str, float]:
    """This process's reads, answers, tag→LED percentiles (ms) and CPU per read (ms)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with hw.lock:
        reads, answered = len(hw.reads), len(hw.reads & hw.answered)
    lat = hw.latencies
    return {
        "reads": reads,
        "answered": answered,
        **{k: percentile(lat, q) * 1000 for k, q in QUANTILES},
        "cpu_per_read": (usage.ru_utime + usage.ru_stime) / max(reads, 1) * 1000,
    }


def summary(console: Console, report: Path | None = None) -> bool:
    """Print the reads, their latencies and where the time went; True when every read was answered."""
    lat = hw.latencies
    with hw.lock:
        reads, missing = len(hw.reads), len(hw.reads - hw.answered)
    if report is not None:
        report.write_text(json.dumps(figures()))
    console.print()
    console.print(
        f"reads {reads}, answered {reads - missing}"
        + (f", tag→LED p50 {statistics.median(lat) * 1000:.1f} ms" if lat else "")
        + (f", p99 {percentile(lat, 0.99) * 1000:.1f} ms, max {max(lat) * 1000:.1f} ms" if lat else "")
        + (f"; publishes retried {hw.retries} times" if hw.retries else "")
        + f"; CPU per read {figures()['cpu_per_read']:.2f} ms"
    )
    hw.breakdown.print(console)
    if missing == 0 and reads > 0:
        console.print("[bold green]every read was answered by a light[/]")
        return True
    console.print(f"[bold red]{missing} reads were not answered[/]")
    return False


def main(
    stations: int = 10,
    seconds: float = 10.0,
    mean_interval: float = 2.0,
    *,
    url: str | None = None,
    store: str | None = None,
    report: Path | None = None,
) -> bool:
    """Run the demo in a fresh directory; True when every read was answered.

    ``url`` picks another broker (default a fresh SQLite file); RabbitMQ keeps its record in
    ``store``, else ``$PIGEON_STORE``, else a fresh SQLite file (``"none"``: RabbitMQ alone).
    ``report``: a JSON file for the figures (:func:`figures`).
    """
    console = Console()
    with tempfile.TemporaryDirectory(prefix="pigeon-nfc-") as tmp:
        use_badges(Path(tmp) / "badges.db")
        app.url = url or f"sqlite:///{Path(tmp) / 'jobs.db'}"
        if takes_store(app.url) and store != "none":  # "none": RabbitMQ alone
            app.store = store or os.environ.get("PIGEON_STORE") or f"sqlite:///{Path(tmp) / 'jobs.db'}"
        console.rule(
            f"[bold]{stations} stations, {seconds:.0f} s, a read every {mean_interval} s per station"
        )
        try:
            return asyncio.run(run(stations, seconds, mean_interval, console, report))
        finally:
            app.close()


def use_badges(path: Path) -> None:
    """Make the badge table at ``path`` and look badges up there."""
    global BADGES
    BADGES = path
    make_badges(path)
