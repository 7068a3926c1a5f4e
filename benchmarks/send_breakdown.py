"""Where one synchronous ``send()`` spends its time: pigeon's Python, the driver, the server.

    .venv/bin/python -m benchmarks.send_breakdown URL [--sends 5000] [--profile] [--pgqueuer PYTHON]

One thread sends ``--sends`` no-op jobs one by one (after a warm-up send) and prints,
per send, in µs: the wall time, the client process's CPU time, the server's CPU time
(Redis: ``INFO cpu`` and ``INFO commandstats``; PostgreSQL: the producer's backend's
``/proc/<pid>/schedstat`` when the server runs on this machine), and what is left (waiting
on the network and on scheduling). ``--profile`` adds cProfile's top entries by own
time, to tell pigeon's layers from the driver's. ``--pgqueuer`` (a Python with pgqueuer and
asyncpg, such as ``benchmarks/.envs/pgqueuer/bin/python``) times as many of pgqueuer's
``Queries.enqueue`` the same way, after pigeon's, in the same database.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from typing import Any

from pigeon import App


def noop() -> None:
    return None


def _redis_server(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url.split("?")[0])


def _redis_figures(client: Any) -> dict[str, float]:
    cpu = client.info("cpu")
    stats = client.info("commandstats")
    out = {"cpu": float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])}
    for name, row in stats.items():
        out[name] = float(row["usec"])
        out[f"{name}:calls"] = float(row["calls"])
    return out


def _backend_cpu(pid: int) -> float:
    """A PostgreSQL backend's CPU seconds, from /proc (the server on this machine).

    The scheduler's count in ns (``schedstat``), not ``stat``'s ticks: these are sampled
    every 10 ms, too coarse for a few thousand statements of a few hundred µs.
    """
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--sends", type=int, default=5000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--pgqueuer", metavar="PYTHON", help="a Python with pgqueuer and asyncpg")
    args = parser.parse_args()
    n: int = args.sends
    app = App(args.url)
    if args.url.startswith("postgres"):
        app.migrate()
    task = app.task(name="bench.noop")(noop)
    task.send()
    redis_client = _redis_server(args.url) if args.url.startswith("redis") else None
    backends: list[int] = []
    if args.url.startswith("postgres"):
        import psycopg

        with psycopg.connect(args.url.split("?")[0], autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'pigeon%%'"
            ).fetchall()
        backends = [r[0] for r in rows]
    before_redis = _redis_figures(redis_client) if redis_client is not None else {}
    before_pg = sum(_backend_cpu(p) for p in backends)
    profiler = cProfile.Profile() if args.profile else None
    cpu, wall = time.process_time(), time.perf_counter()
    if profiler is not None:
        profiler.enable()
    for _ in range(n):
        task.send()
    if profiler is not None:
        profiler.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    per = 1e6 / n
    print(f"{n} sends: {n / wall:,.0f}/s; per send: wall {wall * per:.0f} µs, client CPU {cpu * per:.0f} µs")
    if redis_client is not None:
        after = _redis_figures(redis_client)
        server = (after["cpu"] - before_redis["cpu"]) * per
        print(f"  redis server CPU {server:.0f} µs per send (INFO cpu)")
        for name in sorted(after):
            if name.endswith(":calls") or name == "cpu":
                continue
            calls = after[f"{name}:calls"] - before_redis.get(f"{name}:calls", 0.0)
            if calls >= n / 2:
                usec = after[name] - before_redis.get(name, 0.0)
                print(f"  {name}: {calls:.0f} calls, {usec / calls:.1f} µs each (commandstats)")
    if backends:
        server = (sum(_backend_cpu(p) for p in backends) - before_pg) * per
        print(f"  postgres backends CPU {server:.0f} µs per send ({len(backends)} backends)")
    if profiler is not None:
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats("pigeon|redis|psycopg", 40)
    app.close()
    if args.pgqueuer:
        import subprocess

        from benchmarks.insert_cost import PGQUEUER

        url = args.url.split("?")[0]
        out = subprocess.run(
            [args.pgqueuer, "-c", PGQUEUER, url, str(n)], check=True, capture_output=True, text=True
        )
        wall_us, client_us, server_us = (float(x) for x in out.stdout.split()[-3:])
        print(
            f"pgqueuer, {n} Queries.enqueue: {1e6 / wall_us:,.0f}/s; per send: wall {wall_us:.0f} µs,"
            f" client CPU {client_us:.0f} µs\n  postgres backend CPU {server_us:.0f} µs per send"
        )


if __name__ == "__main__":
    main()
