"""The dashboard in a real headless Chromium, against a `pigeon dashboard` process, on SQLite and Redis."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from pigeon import JobState
from tests.browser.conftest import Dashboard, attribute, click, run_worker, screenshot, sign_in, wait_for


def seed(shop: Any, env: dict[str, str]) -> tuple[list[str], list[str]]:
    """Orders 40..44 charged, refunds of orders 40..43 failed (two attempts each), one event unrouted."""
    charged = [shop.charge.send(n, f"customer{n}").id for n in range(40, 45)]
    failed = [shop.refund.send(n, f"customer{n}").id for n in range(40, 44)]
    shop.app.publish("payments.lost", {"order_id": 7})
    run_worker(env, until=lambda: all(shop.app.job(i).status is JobState.FAILED for i in failed))
    return charged, failed


def test_an_anonymous_visitor_gets_401_and_a_sign_in_form(
    browser: Any, dashboard: Dashboard, shop: Any
) -> None:
    for path in ("/", "/jobs", "/jobs/bulk?action=delete", "/schedules", "/events"):
        assert dashboard.status(path) == 401, path
    browser.get(dashboard.url + "/jobs?state=failed")
    assert browser.title == "Sign in · pigeon"
    assert browser.find_elements(By.ID, "jobs") == []
    browser.find_element(By.ID, "user").send_keys("admin")
    browser.find_element(By.ID, "password").send_keys("wrong")
    browser.find_element(By.ID, "sign-in").click()
    assert "wrong user or password" in wait_for(browser, lambda d: d.find_element(By.ID, "login-error")).text


def test_filter_bulk_retry_and_job_page(
    browser: Any, dashboard: Dashboard, shop: Any, env: dict[str, str]
) -> None:
    charged, failed = seed(shop, env)
    sign_in(browser, dashboard.url, "/jobs")
    screenshot(browser, "jobs")

    # A filter typed into the form lands in the URL, and the table shows what it matches.
    Select(browser.find_element(By.ID, "f-state")).select_by_value("failed")
    browser.find_element(By.ID, "f-task").send_keys("refund")
    browser.find_element(By.ID, "f-q").send_keys("order_id=42")
    browser.find_element(By.ID, "apply-filter").click()
    wait_for(browser, lambda d: "order_id" in d.current_url)
    query = parse_qs(urlsplit(browser.current_url).query)
    assert query["state"] == ["failed"] and query["task"] == ["refund"] and query["q"] == ["order_id=42"]
    links = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#jobs a.job-link")]
    assert links == [failed[2]]
    # An argument search reads the newest 100,000 jobs unless told to read them all.
    assert "Searched the newest 100,000 jobs" in browser.find_element(By.ID, "search-scope").text
    click(browser, "#search-all")
    wait_for(browser, lambda d: "scan=all" in d.current_url)
    assert [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#jobs a.job-link")] == [failed[2]]
    assert browser.find_elements(By.ID, "search-scope") == []

    # Bulk retry of everything the (wider) filter matches, behind a confirmation with the count.
    browser.get(dashboard.url + "/jobs?state=failed&task=refund")
    browser.find_element(By.ID, "bulk-retry").click()
    count = wait_for(browser, lambda d: d.find_element(By.ID, "confirm-count"))
    assert "retry 4 jobs" in count.text
    screenshot(browser, "confirm")
    assert all(shop.app.job(i).status is JobState.FAILED for i in failed)  # nothing happens before confirming
    browser.find_element(By.ID, "confirm").click()
    done = wait_for(browser, lambda d: d.find_element(By.ID, "done"))
    assert done.text == "retry: 4 jobs"
    assert all(shop.app.job(i).status is JobState.QUEUED for i in failed)
    assert all(shop.app.job(i).status is JobState.SUCCEEDED for i in charged)

    # A job's page: arguments, every attempt's error with its traceback.
    run_worker(env, until=lambda: all(shop.app.job(i).status is JobState.FAILED for i in failed))
    browser.get(dashboard.url + "/jobs?task=refund&q=order_id%3D41")
    click(browser, "#jobs a.job-link")
    wait_for(browser, lambda d: d.find_element(By.ID, "job-state"))
    assert browser.find_element(By.ID, "job-id").text == failed[1]
    assert browser.find_element(By.ID, "job-state").text == "failed"
    assert '"order_id": 41' in browser.find_element(By.ID, "arguments").text
    errors = browser.find_elements(By.CSS_SELECTOR, "#errors > li")
    assert len(errors) == 4  # two attempts, then two more after the retry
    assert "order 41 was never charged" in errors[0].text and "Traceback" in errors[0].text
    screenshot(browser, "job")


def test_overview_refreshes_itself_and_toggles_a_pause(
    browser: Any, dashboard: Dashboard, shop: Any, env: dict[str, str]
) -> None:
    seed(shop, env)
    shop.charge.options(queue="mail").send(1, "ann")
    sign_in(browser, dashboard.url)
    browser.get_log("browser")  # drains the sign-in page's 401, which is expected
    assert "paused" not in attribute(browser, 'tr[data-queue="default"]', "class")
    # The live script (a static file the CSP allows) replaces the fragment: its counter rises.
    wait_for(
        browser,
        lambda d: int(d.find_element(By.ID, "live-overview").get_attribute("data-refreshed") or 0) >= 1,
    )
    screenshot(browser, "overview")
    click(browser, 'tr[data-queue="mail"] button.pause')
    wait_for(
        browser,
        lambda d: (
            "paused"
            in (d.find_element(By.CSS_SELECTOR, 'tr[data-queue="mail"]').get_attribute("class") or "")
        ),
    )
    browser.get(dashboard.url + "/schedules")
    assert "nightly-report" in browser.find_element(By.ID, "schedules").text
    browser.get(dashboard.url + "/events")
    assert "orders.*" in browser.find_element(By.ID, "topics").text
    assert "payments.lost" in browser.find_element(By.ID, "unrouted").text
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []  # no Content-Security-Policy violation, no script error
