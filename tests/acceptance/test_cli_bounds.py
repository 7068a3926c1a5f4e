"""The operator commands stay bounded as a user runs them: pages, bulk actions by page, bounded search."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from pigeon import App, JobState
from tests.acceptance.test_cli import ROOT, pigeon
from tests.conftest import url_for

APP = "tests.acceptance.jobs_app:app"


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The user's shell, on each store an operator may point the CLI at."""
    return {**os.environ, "PIGEON_URL": url_for(request.param, tmp_path), "PYTHONPATH": str(ROOT)}


def listed(env: dict[str, str], *args: str) -> tuple[list[str], str]:
    """The ids ``jobs list --json`` prints, and its notes (on stderr, so stdout stays JSON)."""
    done = pigeon(env, "jobs", "list", APP, "--json", *args)
    return [r["id"] for r in json.loads(done.stdout)], done.stderr


def test_list_pages_with_limit_and_before_and_says_how_to_go_on(app: App, env: dict[str, str]) -> None:
    from tests.acceptance.jobs_app import add

    ids = [h.id for h in add.send_many([(i, i) for i in range(7)])][::-1]  # newest first
    out = pigeon({**env, "COLUMNS": "200"}, "jobs", "list", APP, "--limit", "3").stdout
    assert [i for i in ids if i in out] == ids[:3]
    assert out.rstrip().endswith(f"more jobs: --before {ids[2]}")

    seen: list[str] = []
    before: list[str] = []
    for expected in (ids[:3], ids[3:6], ids[6:]):
        page, note = listed(env, "--limit", "3", *before)
        assert page == expected
        seen += page
        if len(seen) < len(ids):
            assert f"more jobs: --before {page[-1]}" in note
            before = ["--before", page[-1]]
        else:
            assert "more jobs" not in note  # the last page says nothing more
    assert seen == ids
    assert listed(env, "--limit", "7")[1] == ""  # exactly a page: no next page announced


def test_bulk_cancel_and_retry_go_page_by_page(app: App, env: dict[str, str]) -> None:
    from tests.acceptance.jobs_app import add

    ids = [h.id for h in add.send_many([(i, i) for i in range(1100)])]
    out = pigeon(env, "jobs", "cancel", APP, "--queue", "default", "-y").stdout
    lines = out.splitlines()
    assert "1100 jobs match (queued,scheduled,running)" in lines[0]
    pages = [line for line in lines if line.startswith("page ")]
    assert pages == [
        "page 1 (500 at most): cancelled 500, 500 so far",
        "page 2 (500 at most): cancelled 500, 1000 so far",
        "page 3 (500 at most): cancelled 100, 1100 so far",
    ]
    assert lines[-1] == "cancelled 1100 jobs"
    assert {app.job(i).status for i in ids[::100]} == {JobState.CANCELLED}

    out = pigeon(env, "jobs", "retry", APP, "--state", "cancelled", "-y").stdout
    assert re.findall(r"^page (\d) \(500 at most\): retried (\d+)", out, re.M) == [
        ("1", "500"),
        ("2", "500"),
        ("3", "100"),
    ]
    assert "retried 1100 jobs" in out
    assert {app.job(i).status for i in ids[::100]} == {JobState.QUEUED}


def test_search_reads_the_newest_jobs_unless_told_and_says_so(app: App, env: dict[str, str]) -> None:
    from tests.acceptance.jobs_app import add

    old = add.send(1, 0).id
    newer = [h.id for h in add.send_many([(2, i) for i in range(3)])]

    page, note = listed(env, "--search", "a=1")
    assert page == [old]  # 4 jobs: all among the newest 100,000
    assert "searched the newest 100,000 jobs (--scan N or --scan all to look further)" in note
    page, note = listed(env, "--search", "a=1", "--scan", "3")
    assert page == [] and "searched the newest 3 jobs" in note
    page, note = listed(env, "--search", "a=1", "--scan", "all")
    assert page == [old] and "searched" not in note
    assert listed(env, "--search", "a=2", "--scan", "2")[0] == newer[:0:-1]

    out = pigeon(env, "jobs", "cancel", APP, "--search", "a=1", "--scan", "3", "-y").stdout
    assert "0 jobs match" in out and "searched the newest 3 jobs" in out
    assert app.job(old).status is JobState.QUEUED
    out = pigeon(env, "jobs", "cancel", APP, "--search", "a=1", "-y").stdout
    assert "1 jobs match" in out and "searched the newest 100,000 jobs" in out
    assert app.job(old).status is JobState.CANCELLED
    refused = pigeon(env, "jobs", "list", APP, "--search", "a=1", "--scan", "some", check=False)
    assert refused.returncode == 1 and "a number of jobs, or all" in refused.stderr
