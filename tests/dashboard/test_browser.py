"""The dashboard in headless Chromium after `infersight demo` traffic: every page draws charts
with data, a filter changed in the header narrows the charts and lands in the URL, and the
browser logs no console error.

Needs Debian's `chromium` and `chromium-driver` (.ci/run installs them). Set
INFERSIGHT_SCREENSHOTS=docs/screenshots to keep a screenshot of each page there.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from infersight_dashboard.app import create_app, serve_dashboard
from infersight_dashboard.auth import Protection

PAGES = {"overview": "/", "cost": "/cost", "degradation": "/degradation", "traces": "/traces"}
# How many plotly charts with at least one trace of data each page must show.
MIN_CHARTS = {"overview": 7, "cost": 5, "degradation": 6, "traces": 0}
_CHARTS_WITH_DATA = """return Array.from(document.querySelectorAll('.js-plotly-plot'))
    .filter(g => (g._fullData || []).some(t => (t._length || 0) > 0)).length"""


@pytest.fixture
def dashboard_url(collector, store):
    result = subprocess.run(
        [sys.executable, "-m", "infersight_collector.cli", "demo",
         "--endpoint", f"http://{collector.endpoint}", "--duration", "4", "--rate", "60"],
        capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    app = create_app(store, Protection())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    threading.Thread(target=serve_dashboard, args=(app, "127.0.0.1", port), daemon=True).start()
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    driver_path = shutil.which("chromedriver")
    assert driver_path, "chromedriver not found: apt-get install -y chromium chromium-driver"
    options = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-quic", "--no-first-run",
                 "--disable-component-update", "--disable-sync", "--window-size=1440,1100",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    global _driver
    _driver = driver
    yield driver
    driver.quit()


_driver = None


def _diagnosis() -> str:
    """What the page looked like, for a failure message."""
    if _driver is None:
        return ""
    charts = _driver.execute_script(_CHARTS_WITH_DATA)
    return (f"url {_driver.current_url}, {charts} charts with data, console: "
            f"{_driver.get_log('browser')[-5:]}, text: {_driver.find_element('tag name', 'body').text[:600]!r}")


def _wait(condition, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; {_diagnosis()}")
        time.sleep(0.2)


def _settled(browser) -> bool:
    """No callback in flight (Dash marks the document while it waits for one)."""
    return not browser.execute_script(
        "return document.querySelector('[data-dash-is-loading=\"true\"]') !== null")


def test_every_page_draws_data_and_a_filter_narrows_it(dashboard_url, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    shots = os.environ.get("INFERSIGHT_SCREENSHOTS")
    for name, path in PAGES.items():
        browser.get(dashboard_url + path + "?range=15m")
        content = _wait(lambda: browser.find_elements(By.ID, f"{name}-content"),
                        what=f"the page {path}")[0]
        _wait(lambda: (browser.execute_script(_CHARTS_WITH_DATA) >= MIN_CHARTS[name]
                       and _settled(browser)), what=f"charts with data on {path}")
        assert not content.get_attribute("hidden")
        if name == "traces":
            link = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#traces-table a"),
                         what="a trace in the table")[0]
            link.click()
            _wait(lambda: browser.execute_script(_CHARTS_WITH_DATA) == 1 and _settled(browser),
                  what="the trace waterfall")
            assert "trace=" in browser.current_url
        if shots:
            time.sleep(0.5)  # let plotly finish its transitions
            Path(shots).mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(str(Path(shots) / f"{name}.png"))

    # A degradation control lands in the URL, and Back returns to the view before it.
    browser.get(dashboard_url + "/degradation?range=15m")
    _wait(lambda: browser.execute_script(_CHARTS_WITH_DATA) >= MIN_CHARTS["degradation"]
          and _settled(browser), what="the degradation charts")
    browser.find_element(By.CSS_SELECTOR, "#degradation-reference input[value=baseline]").click()
    _wait(lambda: "ref=baseline" in browser.current_url, what="the reference in the URL")
    browser.back()
    # The URL changes at once; the controls follow when the page's callback answers.
    _wait(lambda: "ref=baseline" not in browser.current_url and _settled(browser)
          and browser.find_element(By.CSS_SELECTOR,
                                   "#degradation-reference input[value=previous]").is_selected(),
          what="Back to the previous-version reference")

    browser.get(dashboard_url + "/cost?range=15m")
    _wait(lambda: browser.execute_script(_CHARTS_WITH_DATA) >= MIN_CHARTS["cost"],
          what="the cost charts")
    browser.find_element(By.CSS_SELECTOR, "#filter-feature").click()
    # The dropdown focuses its search box a frame after it opens; keys sent before go nowhere.
    search = _wait(lambda: browser.find_elements(By.CSS_SELECTOR,
                                                 "input.dash-dropdown-search:focus"),
                   what="the dropdown's search box")[0]
    search.send_keys("translate")
    search.send_keys(Keys.ENTER)
    _wait(lambda: "feature=translate" in browser.current_url, what="the filter in the URL")
    # The page is rebuilt for the new URL and its chart redrawn with the one feature.
    _wait(lambda: _settled(browser) and browser.execute_script(
        "const g = document.querySelector('#cost-chart .js-plotly-plot');"
        "return g && g._fullData && g._fullData.length > 0 &&"
        " g._fullData.every(t => t.name === 'translate')"),
        what="the cost chart redrawn for one feature")
    nav = browser.find_element(By.ID, "nav-0").get_attribute("href")
    assert nav.endswith("/?range=15m&feature=translate")

    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
