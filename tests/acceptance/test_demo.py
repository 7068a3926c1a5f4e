"""`make demo` runs end to end: the NFC stations and the tour."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from tests.conftest import server_url, with_namespace


def test_nfc_demo_answers_every_read(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pigeon", "demo", "--stations", "5", "--seconds", "2", "--interval", "0.2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every read was answered by a light" in done.stdout
    # Where a slow read's time went: a row for all reads and one for the slowest, by leg.
    assert "where a read's time went" in done.stdout
    assert "slowest 1%" in done.stdout and "CPU per read" in done.stdout


def test_nfc_demo_runs_on_rabbitmq(tmp_path: Path) -> None:
    url = with_namespace(server_url("rabbitmq"), f"t_{uuid.uuid4().hex[:12]}")
    done = subprocess.run(
        [sys.executable, "-m", "pigeon", "demo", "--seconds", "2", "--interval", "0.2", "--url", url],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every read was answered by a light" in done.stdout


def test_nfc_demo_runs_on_rabbitmq_alone(tmp_path: Path) -> None:
    url = with_namespace(server_url("rabbitmq"), f"t_{uuid.uuid4().hex[:12]}")
    command = ["demo", "--seconds", "2", "--interval", "0.2", "--url", url, "--store", "none"]
    done = subprocess.run(
        [sys.executable, "-m", "pigeon", *command], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every read was answered by a light" in done.stdout


def test_tour_runs(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pigeon", "demo", "--tour"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "second send returned the first job" in done.stdout
