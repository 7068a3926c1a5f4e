"""The test suite cleans up after itself, and what the examples write stays out of git."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_the_django_tests_leave_no_temporary_folders(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PIGEON_TEST_"))}
    env["TMPDIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/django/test_backend.py",
         "-k", "test_capabilities", "--basetemp", str(tmp_path / "pytest")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("pigeon-")) == []


def test_what_the_shop_example_writes_is_ignored_by_git() -> None:
    shop = "examples/django_shop"
    paths = [f"{shop}/shop.sqlite3", f"{shop}/sent_emails/20260101-000000-1.log"]
    done = subprocess.run(["git", "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True)
    assert done.stdout.split() == paths
