"""Where a read's time went: the marks a read collects on its way to the LED, and their summary.

A read is stamped by the reader, by the look-up (claimed, started, done) and by the LED
(claimed, lit). Each claim's time comes from the worker's seam, which this process's
:class:`ClaimClock` observes. Marks made in different processes compare wall clocks: on one
machine that is exact, across machines it is as good as their clock sync.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

from pigeon.job import Claim, Outcome
from pigeon.seam import InstrumentedBroker

SEGMENTS = (
    ("publish + wait", "the reader's publish and the look-up job's wait for a claim"),
    ("claim", "the claim that took the look-up job (its round trip)"),
    ("to thread", "claimed → the look-up starts (thread pool, event loop)"),
    ("look-up", "the badge query and the LDAP call"),
    ("send + wait", "the look-up's send of the LED job and its wait for a claim"),
    ("claim ", "the claim that took the LED job"),
    ("to LED", "claimed → the LED handler starts (event loop)"),
)


class ClaimClock:
    """A seam observer: when each claimed job's claim went out and came back (wall clock)."""

    def __init__(self) -> None:
        self.seam: InstrumentedBroker | None = None
        self._spent = 0.0
        self._calls = 0
        self._at: dict[str, tuple[float, float]] = {}

    def claimed(self, claims: Sequence[Claim]) -> None:
        now = time.time()
        took = 0.0
        if self.seam is not None:  # the seam recorded this claim before telling its observers
            stats = self.seam.metrics().get("claim")
            if stats is not None and stats.calls > self._calls:
                took = (stats.seconds - self._spent) / (stats.calls - self._calls)
                self._spent, self._calls = stats.seconds, stats.calls
        for claim in claims:
            self._at[claim.job.id] = (now - took, now)

    def settled(self, outcomes: Sequence[Outcome]) -> None:
        return None

    def pop(self, job_id: str) -> tuple[float, float]:
        """The claim's start and end for ``job_id`` (now, now if unknown), forgotten after."""
        now = time.time()
        return self._at.pop(job_id, (now, now))


@dataclass
class Breakdown:
    """The segments of every answered read, in milliseconds, beside its tag→LED latency."""

    rows: list[tuple[float, tuple[float, ...]]] = field(default_factory=list)

    def add(self, marks: Sequence[float]) -> float:
        """Record a read from its marks (read, claim out/back, started, done, claim out/back, lit)."""
        steps = [max(0.0, (b - a) * 1000) for a, b in itertools.pairwise(marks)]
        total = (marks[-1] - marks[0]) * 1000
        self.rows.append((total, tuple(steps)))
        return total / 1000

    def table(self, share: float = 0.01) -> Table:
        """Mean segments of all reads and of the slowest ``share`` of them."""
        rows = sorted(self.rows, key=lambda r: r[0])
        slow = rows[-max(1, int(len(rows) * share)) :] if rows else []
        out = Table(title="where a read's time went (ms)")
        out.add_column("reads", justify="left")
        out.add_column("tag→LED", justify="right")
        for name, _ in SEGMENTS:
            out.add_column(name.strip(), justify="right")
        for label, group in (("all", rows), (f"slowest {share:.0%}", slow)):
            if not group:
                continue
            means = [sum(r[1][i] for r in group) / len(group) for i in range(len(SEGMENTS))]
            total = sum(r[0] for r in group) / len(group)
            out.add_row(f"{label} ({len(group)})", f"{total:.1f}", *(f"{m:.1f}" for m in means))
        return out

    def print(self, console: Console) -> None:
        if self.rows:
            console.print(self.table())
            console.print(
                "[dim]"
                + "; ".join(f"{name.strip()}: {what}" for name, what in SEGMENTS[:5])
                + "; then the LED job's claim and start.[/]"
            )
