from __future__ import annotations

from pigeon import App, JobState
from pigeon.testing import drain, jobs


def test_drain_runs_everything_due() -> None:
    app = App("memory://")

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    handles = [add.send(i, i) for i in range(5)]
    assert [j.job.task for j in jobs(app)] == [add.name] * 5
    assert drain(app) == 5
    assert [h.result(timeout=1) for h in handles] == [0, 2, 4, 6, 8]
    assert len(jobs(app, state=JobState.SUCCEEDED)) == 5
    app.close()


def test_use_memory_swaps_the_broker_and_back(tmp_path: object) -> None:
    from pigeon.testing import use_memory

    app = App(f"sqlite:///{tmp_path}/real.db")

    @app.task
    def ping() -> str:
        return "pong"

    with use_memory(app):
        h = ping.send()
        assert drain(app) == 1 and h.result(timeout=1) == "pong"
    with use_memory(app):
        assert jobs(app) == []  # each block starts empty
    assert app.url.startswith("sqlite:///")
    assert jobs(app) == []  # nothing reached the real file
    app.close()
