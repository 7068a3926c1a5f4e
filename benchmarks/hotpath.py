"""The worker's hot path: CPU microseconds per no-op job, on the memory and SQLite brokers.

    .venv/bin/python benchmarks/hotpath.py [--jobs 50000] [--rounds 3] [--against COMMIT]

Each measurement is a fresh process: it stores ``--jobs`` no-op jobs, then one burst
worker (``concurrency=200, batch=200``) drains them in that process, and the figure is
the process's CPU time (``time.process_time``: every thread, the SQLite broker's
included) during the drain, divided by the jobs run. Storing is left out.

CPU time rather than wall time, because the machine running it is usually shared: a
busy neighbour slows a drain's wall clock much more than it changes the CPU a job costs.
Still, compare figures taken in one run, not across runs.

``--against COMMIT`` measures that commit's ``src/`` too (``git archive`` into a
temporary directory, put first on the children's ``PYTHONPATH``), alternating the
two trees round by round, and prints each broker's ratio (this tree / that one, the median
of each round's ratio, so a neighbour's burst of load weighs on both sides of a pair).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BROKERS = ("memory", "sqlite")
CONCURRENCY = 200
FILL_BATCH = 10_000


async def noop() -> None:
    return None


def measure(url: str, jobs: int) -> dict[str, float | str]:
    """Store ``jobs`` no-op jobs at ``url``, drain them with a burst worker: CPU µs per job."""
    import pigeon
    from pigeon import App

    app = App(url)
    task = app.task(name="bench.noop")(noop)
    for start in range(0, jobs, FILL_BATCH):
        task.send_many([()] * min(FILL_BATCH, jobs - start))
    worker = app.make_worker(burst=True, concurrency=CONCURRENCY, batch=CONCURRENCY)

    async def drain() -> tuple[float, float]:
        cpu, wall = time.process_time(), time.perf_counter()
        await worker.run(install_signals=False)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        await app.aclose()
        return cpu, wall

    cpu, wall = asyncio.run(drain())
    app.close()
    if worker.processed != jobs:
        raise SystemExit(f"ran {worker.processed:,} of {jobs:,} jobs")
    where = str(Path(pigeon.__file__).parent)
    return {"cpu_us": cpu / jobs * 1e6, "jobs_per_s": jobs / wall, "pigeon": where}


def child(broker: str, jobs: int, src: Path) -> dict[str, float | str]:
    """One measurement in a fresh process, importing pigeon from ``src``."""
    with tempfile.TemporaryDirectory(prefix="pigeon-hotpath-") as tmp:
        url = "memory://" if broker == "memory" else f"sqlite:///{tmp}/jobs.db"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(ROOT)])}
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.hotpath", "--child", url, str(jobs)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    if out.returncode != 0:
        raise RuntimeError(f"{broker} measurement failed:\n{out.stderr[-2000:]}")
    result: dict[str, float | str] = json.loads(out.stdout.splitlines()[-1])
    if Path(str(result["pigeon"])).resolve() != (src / "pigeon").resolve():
        raise RuntimeError(f"measured {result['pigeon']}, not {src}")
    return result


def archived(commit: str, into: Path) -> Path:
    """``src/`` of ``commit``, unpacked under ``into``."""
    tar = subprocess.run(["git", "archive", commit, "src"], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=tar.stdout, check=True)
    return into / "src"


def run(
    jobs: int, rounds: int, against: str | None = None, say: Callable[[str], object] = print
) -> dict[str, dict[str, float]]:
    """Median CPU µs per job per tree and broker; the trees alternate round by round."""
    with tempfile.TemporaryDirectory(prefix="pigeon-hotpath-src-") as tmp:
        trees = {"this tree": ROOT / "src"}
        if against:
            trees[against] = archived(against, Path(tmp))
        samples: dict[str, dict[str, list[float]]] = {t: {b: [] for b in BROKERS} for t in trees}
        for r in range(rounds):
            for broker in BROKERS:
                for tree, src in trees.items():
                    got = child(broker, jobs, src)
                    samples[tree][broker].append(float(got["cpu_us"]))
                    say(
                        f"  round {r + 1} {broker:6} {tree:>10}: {float(got['cpu_us']):6.1f} CPU µs/job, "
                        f"{float(got['jobs_per_s']):,.0f} jobs/s"
                    )
    medians = {t: {b: statistics.median(v) for b, v in by.items()} for t, by in samples.items()}
    load = f"burst worker c={CONCURRENCY} batch={CONCURRENCY}, median of {rounds}"
    say(f"hot path: {jobs:,} no-op jobs, {load}")
    for broker in BROKERS:
        line = f"  {broker:6} " + ", ".join(f"{t}: {m[broker]:.1f} CPU µs/job" for t, m in medians.items())
        if against:
            paired = [
                a / b for a, b in zip(samples["this tree"][broker], samples[against][broker], strict=True)
            ]
            line += f"; ratio {statistics.median(paired):.3f} (median of the rounds' ratios)"
        say(line)
    say(f"  1-min load {os.getloadavg()[0]:.2f}")
    return medians


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=50_000, help="no-op jobs per drain (default 50,000)")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per tree and broker (default 3)")
    parser.add_argument("--against", metavar="COMMIT", help="also measure this commit's src/, alternating")
    parser.add_argument("--child", nargs=2, metavar=("URL", "JOBS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child[0], int(args.child[1]))))
        return 0
    run(args.jobs, args.rounds, args.against)
    return 0


if __name__ == "__main__":
    sys.exit(main())
