"""A real headless Chromium (Debian's), a dashboard process, and jobs to look at."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import url_for

ROOT = Path(__file__).parent.parent.parent
APP = "tests.browser.dash_app:app"
USER, PASSWORD = "admin", "s3cret-pass"


def _binaries() -> tuple[str, str]:
    driver = os.environ.get("PIGEON_TEST_CHROMEDRIVER")
    browser = os.environ.get("PIGEON_TEST_CHROMIUM")
    if not driver or not browser:
        reason = (
            "no browser: PIGEON_TEST_CHROMEDRIVER/PIGEON_TEST_CHROMIUM are not set (`make test` sets them)"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; under CI a missing browser is a failure")
        pytest.skip(reason)
    return driver, browser


@pytest.fixture
def browser() -> Iterator[Any]:
    driver_path, browser_path = _binaries()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser_path  # Debian's Chromium: nothing is downloaded
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,860",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


@pytest.fixture(params=["sqlite", "redis"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PIGEON_URL": url_for(request.param, tmp_path),
        "PYTHONPATH": str(ROOT),
        "PIGEON_POLL": "0.05",
    }


class Dashboard:
    """A ``pigeon dashboard`` process on a free port."""

    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc, self.url = proc, url

    def status(self, path: str) -> int:
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code


@pytest.fixture
def dashboard(env: dict[str, str], shop: Any) -> Iterator[Dashboard]:
    cmd = [sys.executable, "-m", "pigeon", "dashboard", APP, "--port", "0", "--auth", f"{USER}:{PASSWORD}"]
    proc = subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()  # the process prints its address once it listens
    assert first.startswith("pigeon dashboard on http://"), first
    yield Dashboard(proc, first.split(" on ", 1)[1].strip().rstrip("/"))
    proc.terminate()
    proc.wait(timeout=30)
    proc.stdout.close()


@pytest.fixture
def shop(env: dict[str, str]) -> Iterator[Any]:
    """The test app pointed at this test's broker, its schema created."""
    from tests.browser import dash_app

    dash_app.app.url = env["PIGEON_URL"]
    dash_app.app.migrate()
    yield dash_app
    dash_app.app.close()


def run_worker(env: dict[str, str], until: Any = None, timeout: float = 60) -> None:
    """``pigeon worker --burst``, again until ``until()`` holds: a burst worker may stop before
    it claims a retry it has just settled (on Redis the settle and the claim use two connections)."""
    deadline = time.monotonic() + timeout
    while True:
        cmd = [sys.executable, "-m", "pigeon", "worker", APP, "--burst"]
        subprocess.run(cmd, env=env, cwd=ROOT, check=True, timeout=120)
        if until is None or until():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the jobs were not done within {timeout} s of burst workers")


def sign_in(driver: Any, base: str, path: str = "/") -> None:
    from selenium.webdriver.common.by import By

    driver.get(base + path)
    driver.find_element(By.ID, "user").send_keys(USER)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "sign-in").click()
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "header .who form"))


def wait_for(driver: Any, condition: Any, timeout: float = 15) -> Any:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # The live pages replace their rows as they refresh: an element found a moment before
    # may be gone by the time it is read, so such a condition is simply checked again.
    wait = WebDriverWait(
        driver, timeout, poll_frequency=0.05, ignored_exceptions=(StaleElementReferenceException,)
    )
    return wait.until(condition)


def click(driver: Any, css: str) -> None:
    """Click the element ``css`` finds; found again if a live refresh replaced it meanwhile."""
    from selenium.webdriver.common.by import By

    def clicked(d: Any) -> bool:
        d.find_element(By.CSS_SELECTOR, css).click()
        return True

    wait_for(driver, clicked)


def attribute(driver: Any, css: str, name: str) -> str:
    """An attribute of the element ``css`` finds, read again if a live refresh replaced it."""
    from selenium.webdriver.common.by import By

    return str(
        wait_for(driver, lambda d: [d.find_element(By.CSS_SELECTOR, css).get_attribute(name) or ""])[0]
    )


def screenshot(driver: Any, name: str) -> None:
    """Saves the page to $PIGEON_SCREENSHOTS/name.png when that is set (`make screenshots`)."""
    folder = os.environ.get("PIGEON_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"{name}.png"))
