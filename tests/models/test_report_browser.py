"""The HTML report in a real headless Chromium (Debian's chromium + chromedriver, via Selenium),
in a 1366x768 window: it opens on the summary and "call first", the lists page by 100 rows,
sort, search and filter, nothing reads nan/None/NaT, and the console stays clean. A
screenshot of the first screen is saved (to $CHURN_SCREENSHOT_DIR when set) to look at."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.report import write_outputs
from models.score import build_at_risk, build_win_back

AS_OF = pd.Timestamp("2025-10-20")
N = 250


def _lists(as_of: pd.Timestamp, seed: int):
    rng = np.random.default_rng(seed)
    ids = [f"C{i:04d}" for i in range(N)]
    risk = rng.uniform(0.01, 0.9, N)
    risk[17] = 1.0  # the expected top customer
    scored = pd.DataFrame({"customer_id": ids, "risk": risk,
                           "reason_group_1": rng.choice(["nps", "complaints", "purchases", "attributes"], N),
                           "reason_group_2": "attention", "reason_group_3": None})
    features = pd.DataFrame({"customer_id": ids, "amount_365d": rng.uniform(0, 500, N),
                             "days_since_last_order": rng.uniform(1, 80, N), "orders_total": rng.integers(1, 6, N).astype(float),
                             "tenure_days": rng.choice([40.0, 300.0], N), "mean_gap_days": 20.0, "overdue_ratio": 1.5,
                             "first_outbound_observed": 1.0, "days_since_last_outbound": 70.0,
                             "nps_last_score": np.where(rng.random(N) < 0.5, rng.integers(0, 11, N), np.nan),
                             "days_since_last_nps": 10.0, "complaints_open": rng.integers(0, 3, N).astype(float),
                             "oldest_open_complaint_days": 12.0, "lifecycle_stage": rng.choice(["buyer", "regular", "adherent"], N),
                             "segment": rng.choice(["smb", "trade"], N), "region": rng.choice(["north", "south"], N)})
    at_risk = build_at_risk(scored, features, as_of=as_of, model_version="4", explain_all=True)
    former = features.head(130).assign(customer_id=[f"W{i:04d}" for i in range(130)], days_since_last_order=200.0,
                                       amount_total=rng.uniform(10, 5000, 130), tenure_days=700.0)
    win_back = build_win_back(former, np.array(["no order"] * 130, dtype=object), as_of=as_of)
    return at_risk, win_back


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    last_week = AS_OF - pd.Timedelta(days=7)
    a, w = _lists(last_week, 0)
    write_outputs(a, out, model_version="4", metrics={}, as_of=last_week, win_back=w, currency="GBP", capacity=40)
    a, w = _lists(AS_OF, 1)
    return write_outputs(a, out, model_version="4", metrics={"test_roc_auc": 0.81, "test_pr_auc": 0.7}, as_of=AS_OF,
                         win_back=w, currency="GBP", capacity=40)["html"]


@pytest.fixture(scope="module")
def browser():
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("Debian's chromium and chromium-driver are not installed (`make test` installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
                "--window-size=1366,768"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 1366, "height": 768, "deviceScaleFactor": 1, "mobile": False})
    yield driver
    driver.quit()


def _rows(browser, box: str):
    from selenium.webdriver.common.by import By

    return browser.find_elements(By.CSS_SELECTOR, f"#{box} tbody tr")


def _column(browser, box: str, label: str) -> list[str]:
    from selenium.webdriver.common.by import By

    headers = [h.text for h in browser.find_elements(By.CSS_SELECTOR, f"#{box} thead th")]
    i = headers.index(label)
    return [r.find_elements(By.TAG_NAME, "td")[i].get_attribute("textContent") for r in _rows(browser, box)]


def test_report_opens_on_what_to_do(report, browser, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(report.as_uri())
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    assert browser.execute_script("return [window.innerWidth, window.innerHeight]") == [1366, 768]
    shot = tmp_path / "report-first-screen.png"
    browser.save_screenshot(str(shot))
    if os.environ.get("CHURN_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(os.environ["CHURN_SCREENSHOT_DIR"]) / shot.name)
    in_view = "const r = arguments[0].getBoundingClientRect(); return r.top >= 0 && r.top < window.innerHeight;"
    summary = browser.find_element(By.ID, "summary")
    call = browser.find_element(By.ID, "call-first")
    assert browser.execute_script(in_view, summary) and browser.execute_script(in_view, call)
    first_row = _rows(browser, "call")[0]
    assert browser.execute_script("return arguments[0].getBoundingClientRect().bottom <= window.innerHeight", first_row)
    assert "Clients we can still keep" in summary.text and "£" in summary.text
    assert "C0017" in first_row.text and "99% within 90 days" in first_row.text
    assert len(_rows(browser, "call")) == 10 and "of 40" in browser.find_element(By.CSS_SELECTOR, "#call .info").text
    page = browser.find_element(By.TAG_NAME, "body").text
    for word in ("nan", "NaN", "None", "NaT", "undefined", "null"):
        assert not re.search(rf"\b{word}\b", page), word
    assert browser.find_elements(By.CSS_SELECTOR, "#drivers svg rect") and browser.find_elements(By.CSS_SELECTOR, "#stages svg rect")
    assert "entered the high tier" in browser.find_element(By.ID, "changes").text


def test_lists_page_sort_search_and_filter(report, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(report.as_uri())
    info = lambda: browser.find_element(By.CSS_SELECTOR, "#at-risk .info").text  # noqa: E731
    assert len(_rows(browser, "at-risk")) == 100 and info() == f"Showing 1–100 of {N}"
    browser.find_element(By.CSS_SELECTOR, "#at-risk .next").click()
    assert info() == f"Showing 101–200 of {N}" and _column(browser, "at-risk", "#")[0] == "101"
    browser.find_element(By.CSS_SELECTOR, "#at-risk .next").click()
    assert len(_rows(browser, "at-risk")) == N - 200
    # sorting: risk ascending, then descending
    risk_header = [h for h in browser.find_elements(By.CSS_SELECTOR, "#at-risk thead th") if h.text.startswith("Risk")][0]
    risk_header.click()
    assert info() == f"Showing 1–100 of {N}"  # sorting goes back to the first page
    risks = [int(v.rstrip("%")) for v in _column(browser, "at-risk", "Risk")]
    assert risks == sorted(risks) and risks[0] < risks[-1]
    risk_header.click()
    assert _column(browser, "at-risk", "Customer")[0] == "C0017"
    # search
    search = browser.find_element(By.CSS_SELECTOR, "#at-risk input[type=search]")
    search.send_keys("C0042")
    assert _column(browser, "at-risk", "Customer") == ["C0042"]
    search.clear()
    search.send_keys(" ")  # an input event with an empty query
    assert info() == f"Showing 1–100 of {N}"
    # filters: tier, then action
    Select(browser.find_element(By.CSS_SELECTOR, "#at-risk select[data-col=tier]")).select_by_value("high")
    tiers = set(_column(browser, "at-risk", "Tier"))
    assert tiers == {"high"} and info().endswith(f"of {int(0.3 * N)}")
    action = Select(browser.find_element(By.CSS_SELECTOR, "#at-risk select[data-col=action_label]"))
    assert [o.text for o in action.options][0] == "all" and "Service recovery" in [o.text for o in action.options]
    action.select_by_visible_text("Service recovery")
    assert set(_column(browser, "at-risk", "Action")) == {"Service recovery"}
    # the win-back list pages, ranked by value per year
    assert len(_rows(browser, "win-back-list")) == 100
    browser.find_element(By.CSS_SELECTOR, "#win-back-list .next").click()
    assert len(_rows(browser, "win-back-list")) == 30
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
