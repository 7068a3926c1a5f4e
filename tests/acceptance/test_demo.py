"""`make demo` runs end to end: the NFC stations and the tour."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_nfc_demo_answers_every_read(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pigeon", "demo", "--stations", "5", "--seconds", "2", "--interval", "0.2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
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
