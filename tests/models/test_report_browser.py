"""The HTML report in a real headless Chromium (Debian's chromium + chromedriver, via Selenium):
it loads without console errors, shows the expected top customer, and sorting and search work."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from models.report import write_html, write_outputs
from models.score import build_at_risk

AS_OF = pd.Timestamp("2025-10-20")


@pytest.fixture(scope="module")
def at_risk():
    rng = np.random.default_rng(0)
    n = 60
    ids = [f"C{i:04d}" for i in range(n)]
    risk = rng.uniform(0.01, 0.9, n)
    risk[17] = 0.99  # the expected top customer
    scored = pd.DataFrame({"customer_id": ids, "risk": risk, "reason_group_1": rng.choice(["nps", "complaints", "purchases"], n),
                           "reason_group_2": "attention", "reason_group_3": None})
    features = pd.DataFrame({"customer_id": ids, "amount_365d": rng.uniform(0, 500, n), "days_since_last_order": rng.uniform(1, 200, n),
                             "orders_total": rng.integers(1, 6, n).astype(float), "tenure_days": 300.0,
                             "first_outbound_observed": 1.0, "days_since_last_outbound": 70.0,
                             "nps_last_score": rng.integers(0, 11, n).astype(float), "days_since_last_nps": 10.0,
                             "complaints_open": rng.integers(0, 3, n).astype(float), "oldest_open_complaint_days": 12.0,
                             "lifecycle_stage": rng.choice(["buyer", "regular", "adherent"], n)})
    return build_at_risk(scored, features, as_of=AS_OF, model_version="4", explain_all=True)


def test_all_outputs_are_written_and_readable(at_risk, tmp_path):
    paths = write_outputs(at_risk, tmp_path, model_version="4", metrics={"test_roc_auc": 0.81}, as_of=AS_OF)
    assert pd.read_parquet(paths["parquet"])["customer_id"].iloc[0] == "C0017"
    sheet = pd.read_excel(paths["xlsx"])
    assert len(sheet) == len(at_risk) and sheet["customer_id"].iloc[0] == "C0017"
    from openpyxl import load_workbook
    ws = load_workbook(paths["xlsx"])["at risk"]
    assert ws.freeze_panes == "A2" and ws.auto_filter.ref
    page = paths["html"].read_text()
    assert "http://" not in page and "https://" not in page and "<script src" not in page  # self-contained


@pytest.fixture(scope="module")
def browser():
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("Debian's chromium and chromium-driver are not installed (`make test` installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield driver
    driver.quit()


def test_report_in_headless_chromium(at_risk, tmp_path, browser):
    from selenium.webdriver.common.by import By

    path = write_html(at_risk, tmp_path / "report.html", model_version="4", metrics={"test_roc_auc": 0.81}, as_of=AS_OF)
    browser.get(path.as_uri())
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    rows = lambda: browser.find_elements(By.CSS_SELECTOR, "#at-risk tbody tr")  # noqa: E731
    first_id = lambda: [r for r in rows() if r.is_displayed()][0].find_elements(By.TAG_NAME, "td")[1].text  # noqa: E731
    assert len(rows()) == len(at_risk) and first_id() == "C0017"
    headers = browser.find_elements(By.CSS_SELECTOR, "#at-risk thead th")
    risk_header = [h for h in headers if h.text.startswith("risk")][0]
    risk_header.click()  # ascending: the lowest risk first
    assert first_id() == at_risk.sort_values("risk")["customer_id"].iloc[0]
    risk_header.click()  # descending again
    assert first_id() == "C0017"
    search = browser.find_element(By.ID, "search")
    search.send_keys("C0042")
    visible = [r for r in rows() if r.is_displayed()]
    assert len(visible) == 1 and "C0042" in visible[0].text
    assert browser.find_elements(By.CSS_SELECTOR, "svg rect")  # the risk distribution is drawn
