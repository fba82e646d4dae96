"""Outputs people open: the retention and win-back lists as Parquet, CSV and Excel, a strict
JSON summary and one self-contained HTML page (no network needed to view it).

Every file is written atomically with the user's umask. Text is never a formula: the Excel
sheets hold text cells as text, and in the CSV a text cell beginning with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return is prefixed with a single quote (the OWASP guidance
on CSV injection); Parquet keeps the values as they are.
"""
from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from features.groups import ACTIONS, BY_GROUP
from features.io import write_atomic, write_frame
from models import history
from models.score import driver_table, high_tier_changes

HTML_ROWS = 10_000   # per list in the report; the full lists are in the CSV and Parquet files
EXCEL_ROWS = 50_000  # per sheet: a spreadsheet is for the actionable part
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥", "INR": "₹", "CNY": "¥", "KRW": "₩", "RUB": "₽"}
STAGES = ("buyer", "regular", "adherent")

# column -> (header in the report, kind, hover text)
COLUMNS = {
    "rank": ("#", "int", "Place in the list"),
    "customer_id": ("Customer", "text", "Customer id"),
    "risk": ("Risk", "pct", "Probability of becoming a former client within the horizon: about N in 100 such clients leave"),
    "risk_in_words": ("Risk", "text", "Probability of becoming a former client within the horizon"),
    "tier": ("Tier", "text", "high / medium / low: the share of the list the team works first (README: tiers)"),
    "risk_change": ("Change", "points", "Risk now minus at the previous scoring, in percentage points (empty: new on the list)"),
    "new_high_tier": ("New in high", "flag", "In the high tier now and not at the previous scoring"),
    "new_on_list": ("New", "flag", "Not on this list at the previous scoring"),
    "lifecycle_stage": ("Stage", "text", "buyer (one order), regular (two or more), adherent (a promoting regular), former"),
    "value_at_risk": ("Value at risk", "money", "Risk x the client's revenue of the last 12 months"),
    "value_per_year": ("Value per year", "money", "What the client brought per year while they bought"),
    "amount_total": ("Total bought", "money", "Value of all their orders"),
    "orders_total": ("Orders", "int", "Orders in all"),
    "reason_1": ("Leading reason", "text", "What pushes this client's risk up most, in their own numbers"),
    "reason_2": ("Second reason", "text", ""),
    "reason_3": ("Third reason", "text", ""),
    "action": ("Action", "text", "What to do, fitting the leading reason and where the client is"),
    "action_key": ("Action key", "text", "Machine-readable action"),
    "action_label": ("Action", "text", "What to do (hover for the full words), fitting the leading reason and where the client is"),
    "profile": ("Profile", "text", "Context: segment, channel, region; never a reason to call"),
    "last_order_at": ("Last order", "date", "Day of the last order"),
    "last_contact_at": ("Last contact from us", "date", "Day we last reached out"),
    "last_nps": ("Last NPS", "int", "Last answer to 'how likely are you to recommend us, 0-10'"),
    "open_complaints": ("Open complaints", "int", "Complaints not resolved yet"),
    "days_since_last_order": ("Days since order", "int", "Days since the last order"),
    "usual_gap_days": ("Usual gap", "int", "The client's usual days between orders"),
    "lapse_rule": ("Lapsed by", "text", "Which part of the lapse rule put the client here (README: win-back list)"),
    "previous_risk": ("Risk before", "pct", "Risk at the previous scoring"),
    "previous_rank": ("Rank before", "int", "Place at the previous scoring"),
    "now": ("Now", "text", "Where the client is now"),
}
METRICS = {  # test metrics of the model, in words
    "roc_auc": ("Ranking quality (ROC-AUC)", "How often a client who left is ranked above one who stayed: 0.5 is chance, 1 is perfect", "num"),
    "pr_auc": ("Precision over the list (PR-AUC)", "Average share of leavers among the clients flagged, over every cut of the list", "num"),
    "brier": ("Brier score", "Mean squared error of the risk: lower is better", "num"),
    "log_loss": ("Log loss", "Penalty for confident wrong risks: lower is better", "num"),
    "ece": ("Calibration error", "How far the stated risks are from the share who really left, on average", "pct"),
    "precision_top5": ("Leavers in the top 5%", "Share of the top 5% of the list who left", "pct"),
    "precision_top10": ("Leavers in the top 10%", "Share of the top 10% of the list who left", "pct"),
    "lift_top5": ("Lift in the top 5%", "How many times the average leaving rate the top 5% shows", "x"),
    "lift_top10": ("Lift in the top 10%", "How many times the average leaving rate the top 10% shows", "x"),
    "base_rate": ("Leaving rate", "Share of the clients at the test date who left within the horizon", "pct"),
    "rows": ("Clients at the test date", "Clients scored at the test cutoff", "int"),
}


# -- values as people read them ------------------------------------------------------------------

def money(value, currency: str) -> str:
    """'€1,234' (the currency's symbol when common, else its code: 'CHF 1,234')."""
    if value is None or not np.isfinite(value):
        return "–"
    symbol = SYMBOLS.get(currency)
    sign = "-" if value < 0 else ""
    return f"{sign}{symbol}{abs(value):,.0f}" if symbol else f"{sign}{currency} {abs(value):,.0f}"


def count(value) -> str:
    return f"{int(round(value)):,}"


def percent(value, digits: int = 0) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{100 * value:.{digits}f}%"


def nps_score(scores: pd.Series) -> float | None:
    """Net Promoter Score: % promoters (9-10) - % detractors (0-6) among those who answered
    (None when nobody answered)."""
    s = pd.to_numeric(scores, errors="coerce").dropna()
    if s.empty:
        return None
    return float(100 * ((s >= 9).mean() - (s <= 6).mean()))


def stage_summary(at_risk: pd.DataFrame, win_back: pd.DataFrame | None = None) -> pd.DataFrame:
    """Clients, mean risk, expected leavers and NPS by lifecycle stage (former clients: count only)."""
    rows = []
    stages = [s for s in STAGES if (at_risk["lifecycle_stage"] == s).any()]
    stages += sorted(set(at_risk["lifecycle_stage"].dropna()) - set(STAGES))
    for stage in stages:
        part = at_risk[at_risk["lifecycle_stage"] == stage]
        rows.append({"lifecycle_stage": stage, "clients": len(part), "mean_risk": float(part["risk"].mean()),
                     "expected_leavers": float(part["risk"].sum()), "nps": nps_score(part["last_nps"]),
                     "nps_answered": int(part["last_nps"].notna().sum())})
    if win_back is not None and len(win_back):
        rows.append({"lifecycle_stage": "former", "clients": len(win_back), "mean_risk": None, "expected_leavers": None,
                     "nps": nps_score(win_back["last_nps"]), "nps_answered": int(win_back["last_nps"].notna().sum())})
    return pd.DataFrame(rows, columns=["lifecycle_stage", "clients", "mean_risk", "expected_leavers", "nps", "nps_answered"])


def _clean(value):
    """A JSON-safe value: NaN, NaT and pd.NA become None; numpy scalars become Python ones."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(value) else float(value)
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d")
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def strict_json(obj) -> str:
    """JSON with null for every missing number (never NaN or Infinity)."""
    return json.dumps(_clean(obj), indent=2, allow_nan=False, ensure_ascii=False)


# -- summary -------------------------------------------------------------------------------------

UNTRAINED = {"recency": "the recency rule (days since the last order)",
             "btyd": "the BG/NBD probability of no order", "pnbd": "the Pareto/NBD probability of no order"}
CHANCE_LIKE_ROC_AUC = 0.6
FEW_TEST_ROWS = 500


def model_cautions(metrics: dict | None, champion: str | None) -> list[str]:
    """What a retention manager must know before trusting the order of the list: no model was
    trained (the champion is a rule that learns nothing from labels), the ranking was close to
    chance on the test date, or the test date had few clients. Empty when none applies."""
    metrics = metrics or {}
    out = []
    if champion in UNTRAINED:
        out.append(f"No model was trained on this data (too little labelled history for the horizon; "
                   f"`churn train` says why): the list is ordered by {UNTRAINED[champion]} alone.")
    auc, rows = metrics.get("test_roc_auc"), metrics.get("test_rows")
    if auc is not None and np.isfinite(auc) and auc < CHANCE_LIKE_ROC_AUC:
        out.append(f"On its test date the order was close to chance (ROC-AUC {auc:.2f}; 0.5 is chance): read the "
                   "risks as a rough order, and check the reasons before acting.")
    if rows is not None and np.isfinite(rows) and 0 < rows < FEW_TEST_ROWS:
        out.append(f"The test date had {int(rows):,} clients: its figures are uncertain by several points "
                   "(ROC-AUC about +/-" f"{_auc_margin(metrics):.2f}).")
    return out


def _auc_margin(metrics: dict) -> float:
    """Two standard errors of a ROC-AUC (Hanley & McNeil) on the test rows."""
    auc, n, rate = (metrics.get(k, float("nan")) for k in ("test_roc_auc", "test_rows", "test_base_rate"))
    pos, neg = n * rate, n * (1 - rate)
    if not all(np.isfinite(v) for v in (auc, pos, neg)) or min(pos, neg) < 1:
        return float("nan")
    q1, q2 = auc / (2 - auc), 2 * auc ** 2 / (1 + auc)
    var = (auc * (1 - auc) + (pos - 1) * (q1 - auc ** 2) + (neg - 1) * (q2 - auc ** 2)) / (pos * neg)
    return float(2 * np.sqrt(max(var, 0.0)))


def summarise(at_risk: pd.DataFrame, win_back: pd.DataFrame, *, as_of: pd.Timestamp, model_version: str | None,
              horizon_days: int, currency: str, previous_as_of: str | None = None,
              left_high: int | None = None, cautions: list[str] | None = None) -> dict:
    """The figures of ``summary.json`` and the top of the report."""
    tiers = at_risk["tier"].value_counts()
    n = len(at_risk)
    changed = previous_as_of is not None
    return {
        "as_of": pd.Timestamp(as_of).strftime("%Y-%m-%d"),
        "horizon_days": int(horizon_days),
        "currency": currency,
        "model_version": model_version,
        "clients": n,
        "expected_leavers": round(float(at_risk["risk"].sum()), 1),
        "value_at_risk": round(float(at_risk["value_at_risk"].sum()), 2),
        "tiers": {t: int(tiers.get(t, 0)) for t in ("high", "medium", "low")},
        "tier_shares": {t: (round(int(tiers.get(t, 0)) / n, 4) if n else None) for t in ("high", "medium", "low")},
        "nps": None if (v := nps_score(at_risk["last_nps"])) is None else round(v, 1),
        "win_back_clients": len(win_back),
        "win_back_value_per_year": round(float(win_back["value_per_year"].sum()), 2) if len(win_back) else 0.0,
        "lapsed_by": {k: int(v) for k, v in win_back["lapse_rule"].value_counts().items()} if len(win_back) else {},
        "previous_as_of": previous_as_of,
        "new_on_list": int(at_risk["new_on_list"].fillna(False).sum()) if changed else None,
        "entered_high_tier": int(at_risk["new_high_tier"].fillna(False).sum()) if changed else None,
        "left_high_tier": left_high if changed else None,
        "new_on_win_back_list": int(win_back["new_on_list"].fillna(False).sum()) if changed else None,
        "cautions": list(cautions or []),
    }


# -- CSV and Excel -------------------------------------------------------------------------------

def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells that a spreadsheet would run as a formula prefixed with a single quote (OWASP)."""
    out = {}
    for col in frame.columns:
        s = frame[col]
        if s.dtype == object or pd.api.types.is_string_dtype(s) or isinstance(s.dtype, pd.CategoricalDtype):
            text = s.astype("str")  # missing stays missing
            risky = text.str.startswith(FORMULA_START).fillna(False).astype(bool).to_numpy()
            if risky.any():
                text = text.where(~risky, "'" + text)
            out[col] = text
        else:
            out[col] = s
    return pd.DataFrame(out, index=frame.index)


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    safe = csv_safe(frame)
    return write_atomic(Path(path), lambda tmp: safe.to_csv(tmp, index=False, date_format="%Y-%m-%d"))


def _excel_kind(col: str, s: pd.Series) -> str:
    if col in COLUMNS and COLUMNS[col][1] in ("money", "pct", "points", "date", "int"):
        return COLUMNS[col][1]
    if col == "as_of" or pd.api.types.is_datetime64_any_dtype(s):
        return "date"
    if pd.api.types.is_bool_dtype(s):
        return "flag"
    if pd.api.types.is_integer_dtype(s):
        return "int"
    if pd.api.types.is_float_dtype(s):
        return "num"
    return "text"


def _excel_values(s: pd.Series, kind: str) -> list:
    """A column as Python values for the sheet: numbers, text, or None (an empty cell);
    dates as Excel day numbers (shown with a date format)."""
    if kind == "date":
        days = (pd.to_datetime(s) - pd.Timestamp("1899-12-30")) / pd.Timedelta(days=1)
        return [None if not math.isfinite(v) else float(v) for v in days.to_numpy(dtype=float, na_value=np.nan)]
    if kind == "flag":
        return [None if v is pd.NA or v is None else bool(v) for v in s.astype("object")]
    if kind in ("money", "pct", "points", "int", "num"):
        values = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        return [None if not math.isfinite(v) else v for v in values.tolist()]
    return [None if v is None or v is pd.NA or (isinstance(v, float) and not math.isfinite(v)) else str(v)
            for v in s.astype("object").tolist()]


def _width(header: str, values: list, kind: str) -> float:
    """A column width that fits the header and the values (sampled; long text capped)."""
    if kind == "date":
        longest = 10
    elif kind in ("money",):
        longest = max([len(f"{v:,.0f}") + 2 for v in values[:2000] if v is not None] or [4])
    elif kind in ("pct", "points", "flag"):
        longest = 6
    elif kind in ("int", "num"):
        longest = max([len(f"{v:,.0f}") for v in values[:2000] if v is not None] or [4])
    else:
        longest = max([len(v) for v in values[:2000] if v is not None] or [4])
    return float(min(max(len(header) + 3, longest + 2), 70))


def _letters(n: int) -> list[str]:
    out = []
    for i in range(n):
        name, i = "", i + 1
        while i:
            i, r = divmod(i - 1, 26)
            name = chr(65 + r) + name
        out.append(name)
    return out


XML_INVALID = r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]"


def _cells_xml(values: list, kind: str, letter: str, rows: np.ndarray, style: str | None) -> np.ndarray:
    """One column's cells as sheet XML (an empty string for a missing value), built vectorised:
    text as inline strings (never a formula), numbers and Excel day numbers as values."""
    s = f' s="{style}"' if style is not None else ""
    series = pd.Series(values, dtype="object")
    missing = series.isna().to_numpy()
    ref = "<c r=\"" + letter + rows
    if kind == "text":
        text = series.astype("str")
        if re.search(XML_INVALID, "".join(text.dropna().tolist())):  # control characters are not XML
            text = text.str.replace(XML_INVALID, "", regex=True)
        text = text.str.replace("&", "&amp;", regex=False).str.replace("<", "&lt;", regex=False).str.replace(
            ">", "&gt;", regex=False)
        body = np.asarray(text.fillna("").to_numpy(dtype=object), dtype=object)
        cells = ref + ("\"" + s + " t=\"inlineStr\"><is><t xml:space=\"preserve\">") + body + "</t></is></c>"
    elif kind == "flag":
        body = np.where(series.fillna(False).astype(bool).to_numpy(), "1", "0").astype(object)
        cells = ref + ("\"" + s + " t=\"b\"><v>") + body + "</v></c>"
    else:
        numbers = pd.to_numeric(series, errors="coerce").astype(float)
        body = np.asarray(numbers.map(repr, na_action="ignore").fillna("").to_numpy(dtype=object), dtype=object)
        cells = ref + ("\"" + s + "><v>") + body + "</v></c>"
    return np.where(missing, "", cells).astype(object)


def _fill_sheet(xml: str, part: pd.DataFrame, kinds: list[str], columns: list[list]) -> str:
    """The rows of ``part`` inserted after the header row that xlsxwriter wrote; each cell takes
    its column's style (the ``style`` of the sheet's <col> elements, as xlsxwriter set them)."""
    styles = {}
    for element in re.findall(r"<col [^>]*/>", xml):
        attrs = dict(re.findall(r'(\w+)="([^"]*)"', element))
        for j in range(int(attrs["min"]), int(attrs["max"]) + 1):
            styles[j - 1] = attrs.get("style")
    letters = _letters(len(kinds))
    rows = np.arange(2, len(part) + 2).astype(str).astype(object)
    acc = "<row r=\"" + rows + "\">"
    for j, (kind, values) in enumerate(zip(kinds, columns)):
        acc = acc + _cells_xml(values, kind, letters[j], rows, styles.get(j))
    data = "".join((acc + "</row>").tolist())
    last = f"{letters[-1]}{len(part) + 1}"
    xml = re.sub(r'<dimension ref="[^"]*"/>', f'<dimension ref="A1:{last}"/>', xml, count=1)
    return xml.replace("</sheetData>", data + "</sheetData>", 1)


def write_excel(sheets: dict[str, pd.DataFrame], path: Path, *, currency: str = "EUR", max_rows: int = EXCEL_ROWS,
                notes: list[str] | None = None) -> Path:
    """The lists as one workbook, a sheet each: a formatted frozen header, filters, widths that
    fit, dates as dates, money in the currency, text always text (never a formula); the first
    ``max_rows`` of each list (the "about" sheet says so). xlsxwriter writes the workbook, its
    formats, header, panes and filters; the rows are written into its sheets as XML built
    column by column (inline strings: text is never read as a formula)."""
    import zipfile

    import xlsxwriter

    def write(tmp: Path) -> None:
        raw = Path(str(tmp) + ".raw")
        book = xlsxwriter.Workbook(str(raw), {"strings_to_formulas": False, "strings_to_urls": False,
                                              "strings_to_numbers": False})
        head = book.add_format({"bold": True, "font_color": "#FFFFFF", "bg_color": "#305496", "text_wrap": True,
                                "valign": "top"})
        symbol = SYMBOLS.get(currency)
        money_fmt = f'"{symbol}"#,##0' if symbol else f'"{currency} "#,##0'
        formats = {"date": book.add_format({"num_format": "yyyy-mm-dd"}), "money": book.add_format({"num_format": money_fmt}),
                   "pct": book.add_format({"num_format": "0%"}), "points": book.add_format({"num_format": "+0.0%;-0.0%;0.0%"}),
                   "int": book.add_format({"num_format": "0"}), "num": book.add_format({"num_format": "0.0"}),
                   "flag": None, "text": None}
        about = list(notes or [])
        filled = {}
        for i, (name, frame) in enumerate(sheets.items(), start=1):
            sheet = book.add_worksheet(name)
            part = frame.head(max_rows)
            kinds = [_excel_kind(c, part[c]) for c in part.columns]
            columns = [_excel_values(part[c], k) for c, k in zip(part.columns, kinds)]
            for j, (col, kind, values) in enumerate(zip(part.columns, kinds, columns)):
                sheet.set_column(j, j, _width(col, values, kind), formats[kind])
            sheet.set_row(0, 30)
            for j, col in enumerate(part.columns):
                sheet.write_string(0, j, col, head)
            sheet.freeze_panes(1, 0)
            sheet.autofilter(0, 0, max(len(part), 1), len(part.columns) - 1)
            filled[f"xl/worksheets/sheet{i}.xml"] = (part, kinds, columns)
            if len(frame) > max_rows:
                about.append(f"Sheet '{name}': the first {max_rows:,} of {len(frame):,} clients by rank; the full "
                             f"list is in the CSV and Parquet files.")
        if about:
            sheet = book.add_worksheet("about")
            sheet.set_column(0, 0, 110)
            for i, line in enumerate(about):
                sheet.write_string(i, 0, line)
        book.close()
        try:
            with zipfile.ZipFile(raw) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as dst:
                for item in src.infolist():
                    data = src.read(item.filename)
                    if item.filename in filled and len(filled[item.filename][0]):
                        data = _fill_sheet(data.decode("utf-8"), *filled[item.filename]).encode("utf-8")
                    dst.writestr(item, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)
        finally:
            raw.unlink(missing_ok=True)
    return write_atomic(Path(path), write)


# -- the HTML page -------------------------------------------------------------------------------

def _json_for_script(obj) -> str:
    """JSON safe inside a <script> element."""
    return strict_json(obj).replace("</", "<\\/").replace("<!--", "<\\!--")


ACTION_LABELS = {a.key: a.label for a in ACTIONS}


def _table_data(frame: pd.DataFrame, columns: list[str], limit: int = HTML_ROWS, tips: dict[str, str] | None = None) -> dict:
    """The rows for the page's script: values as JSON (null when missing), each column's
    header, kind and hover text; ``tips``: column -> the column whose value is its cells' hover."""
    tips = tips or {}
    part = frame.head(limit)
    if "action_key" in part.columns:
        part = part.assign(action_label=part["action_key"].map(ACTION_LABELS))
    cols = [c for c in columns if c in part.columns]
    cols += [t for t in tips.values() if t in part.columns and t not in cols]
    data = []
    for c in cols:
        kind = COLUMNS.get(c, (c, "text", ""))[1]
        s = part[c]
        if kind == "date":
            values = [None if pd.isna(v) else pd.Timestamp(v).strftime("%Y-%m-%d") for v in s]
        elif kind in ("pct", "points", "money", "int", "num"):
            arr = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            values = [None if not math.isfinite(v) else (round(v, 6) if kind != "int" else int(round(v))) for v in arr.tolist()]
        elif kind == "flag":
            values = [None if v is pd.NA or v is None else bool(v) for v in s.astype("object")]
        else:
            values = [None if v is None or v is pd.NA or (isinstance(v, float) and not math.isfinite(v)) else str(v)
                      for v in s.astype("object")]
        data.append(values)
    hidden = set(tips.values()) - set(columns)
    return {"columns": [{"key": c, "label": COLUMNS.get(c, (c,))[0], "kind": COLUMNS.get(c, (c, "text"))[1],
                         "title": COLUMNS.get(c, (c, "text", ""))[2], "hide": c in hidden,
                         "tip": cols.index(tips[c]) if c in tips and tips[c] in cols else None} for c in cols],
            "rows": [list(r) for r in zip(*data)] if data else [], "total": len(frame)}


def _bars(items: list[tuple[str, float, str]], *, width: int = 560, label_w: int = 190, fmt=percent,
          color: str = "#305496", max_value: float | None = None, title: str = "") -> str:
    """A horizontal bar chart as inline SVG: (label, value, hover text) per bar."""
    if not items:
        return "<p class='muted'>Nothing to show.</p>"
    top = max_value or max(v for _, v, _ in items) or 1.0
    h = 26
    rows = []
    for i, (label, value, hover) in enumerate(items):
        w = max(0.0, (width - label_w - 70) * value / top)
        y = i * h
        rows.append(f'<g><title>{html.escape(hover)}</title>'
                    f'<text x="{label_w - 8}" y="{y + 17}" text-anchor="end">{html.escape(label)}</text>'
                    f'<rect x="{label_w}" y="{y + 5}" width="{w:.1f}" height="16" fill="{color}" rx="2"></rect>'
                    f'<text x="{label_w + w + 6:.1f}" y="{y + 17}">{html.escape(fmt(value))}</text></g>')
    return (f'<svg class="chart" viewBox="0 0 {width} {h * len(items)}" width="{width}" height="{h * len(items)}" '
            f'role="img" aria-label="{html.escape(title)}">{"".join(rows)}</svg>')


def _histogram(values: np.ndarray, bins: int = 20, width: int = 560, height: int = 150) -> str:
    counts, edges = np.histogram(values, bins=bins, range=(0, 1))
    top = max(int(counts.max()) if len(counts) else 1, 1)
    bar_w = width / bins
    bars = "".join(
        f'<rect x="{i * bar_w:.1f}" y="{height - 20 - (c / top) * (height - 30):.1f}" width="{bar_w - 2:.1f}" '
        f'height="{(c / top) * (height - 30):.1f}" fill="#305496"><title>risk {edges[i]:.0%} to {edges[i + 1]:.0%}: '
        f'{c:,} clients</title></rect>' for i, c in enumerate(counts))
    ticks = "".join(f'<text x="{min(max(x * width, 12), width - 14):.0f}" y="{height - 4}" text-anchor="middle">{x:.0%}</text>'
                    for x in (0.0, 0.25, 0.5, 0.75, 1.0))
    return (f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="risk distribution">{bars}{ticks}</svg>')


def _grouped_bars(labels: list[str], series: list[tuple[str, list[float], str]], *, width: int = 560,
                  label_w: int = 170, title: str = "") -> str:
    """Horizontal bars, one bar per series for each label, with a legend: (name, values, colour)."""
    if not labels:
        return "<p class='muted'>Nothing to show.</p>"
    top = max([v for _, values, _ in series for v in values] or [1.0]) or 1.0
    bar, gap = 12, 10
    h = bar * len(series) + gap
    legend = "".join(f'<rect x="{label_w + i * 190}" y="2" width="12" height="12" fill="{c}"></rect>'
                     f'<text x="{label_w + i * 190 + 17}" y="12">{html.escape(name)}</text>' for i, (name, _, c) in enumerate(series))
    rows = []
    for k, label in enumerate(labels):
        y0 = 22 + k * h
        parts = [f'<text x="{label_w - 8}" y="{y0 + bar * len(series) / 2 + 4:.0f}" text-anchor="end">{html.escape(label)}</text>']
        for i, (name, values, colour) in enumerate(series):
            w = max(0.0, (width - label_w - 50) * values[k] / top)
            y = y0 + i * bar
            parts.append(f'<g><title>{html.escape(f"{label}: leads for {percent(values[k])} ({name})")}</title>'
                         f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar - 2}" fill="{colour}" rx="2"></rect>'
                         f'<text x="{label_w + w + 5:.1f}" y="{y + bar - 3}" font-size="11">{percent(values[k])}</text></g>')
        rows.append("".join(parts))
    height = 22 + h * len(labels)
    return (f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
            f'aria-label="{html.escape(title)}">{legend}{"".join(rows)}</svg>')


def _diverging_bars(items: list[tuple[str, float, str]], *, width: int = 560, label_w: int = 190,
                    title: str = "") -> str:
    """Bars from a zero line, -100 to 100 (NPS): (label, value, hover text) per bar."""
    if not items:
        return "<p class='muted'>No NPS answers.</p>"
    h, half = 26, (width - label_w - 40) / 2
    zero = label_w + half
    rows = []
    for i, (label, value, hover) in enumerate(items):
        w = half * min(abs(value), 100) / 100
        x = zero if value >= 0 else zero - w
        colour = "#2f7d32" if value >= 0 else "#b00020"
        tx, anchor = (zero + w + 5, "start") if value >= 0 else (zero - w - 5, "end")
        rows.append(f'<g><title>{html.escape(hover)}</title><text x="{label_w - 8}" y="{i * h + 17}" text-anchor="end">'
                    f'{html.escape(label)}</text><rect x="{x:.1f}" y="{i * h + 5}" width="{w:.1f}" height="16" '
                    f'fill="{colour}" rx="2"></rect><text x="{tx:.1f}" y="{i * h + 17}" text-anchor="{anchor}">'
                    f'{value:+.0f}</text></g>')
    axis = (f'<line x1="{zero:.1f}" x2="{zero:.1f}" y1="0" y2="{h * len(items)}" stroke="#52606d"></line>'
            f'<text x="{label_w}" y="{h * len(items) + 14}">-100</text><text x="{zero:.1f}" y="{h * len(items) + 14}" '
            f'text-anchor="middle">0</text><text x="{width - 40}" y="{h * len(items) + 14}">+100</text>')
    return (f'<svg class="chart" viewBox="0 0 {width} {h * len(items) + 18}" width="{width}" height="{h * len(items) + 18}" '
            f'role="img" aria-label="{html.escape(title)}">{"".join(rows)}{axis}</svg>')


def _card(label: str, value: str, hover: str, extra: str = "", cls: str = "") -> str:
    return (f'<div class="card {cls}" title="{html.escape(hover)}"><span>{html.escape(label)}</span>'
            f'<b>{html.escape(value)}</b>{f"<small>{html.escape(extra)}</small>" if extra else ""}</div>')


def _group_title(name: str) -> str:
    g = BY_GROUP.get(name)
    return g.title if g else ("No reason we can act on" if name == "none" else name)


SCRIPT = r"""
(function () {
  const currency = document.body.dataset.currency;
  let moneyFmt;
  try { moneyFmt = new Intl.NumberFormat('en', {style: 'currency', currency: currency, maximumFractionDigits: 0}); }
  catch (e) { moneyFmt = {format: v => currency + ' ' + Math.round(v).toLocaleString('en')}; }
  const fmt = {
    text: v => String(v),
    int: v => Math.round(v).toLocaleString('en'),
    num: v => v.toLocaleString('en', {maximumFractionDigits: 1}),
    pct: v => Math.round(v * 100) + '%',
    points: v => (v > 0 ? '+' : v < 0 ? '\u2212' : '\u00b1') + Math.abs(v * 100).toFixed(1) + ' pts',
    money: v => moneyFmt.format(v),
    date: v => v,
    flag: v => v ? 'yes' : '',
  };
  function show(v, kind) { return v === null || v === undefined ? '' : (fmt[kind] || fmt.text)(v); }

  document.querySelectorAll('[data-table]').forEach(function (box) {
    const data = JSON.parse(document.getElementById(box.dataset.table).textContent);
    const cols = data.columns, all = data.rows, size = parseInt(box.dataset.page || '100', 10);
    const table = box.querySelector('table'), tbody = table.tBodies[0];
    const search = box.querySelector('input[type=search]');
    const filters = Array.from(box.querySelectorAll('select[data-col]'));
    const info = box.querySelector('.info'), prev = box.querySelector('.prev'), next = box.querySelector('.next');
    const text = all.map(r => r.map((v, i) => show(v, cols[i].kind)).join(' \u2502 ').toLowerCase());
    let order = all.map((_, i) => i), view = order, page = 0, sortCol = -1, asc = true;

    const headRow = table.tHead.rows[0];
    cols.forEach(function (c, i) {
      const th = document.createElement('th');
      th.textContent = c.label; th.title = (c.title ? c.title + '. ' : '') + 'Click to sort.';
      th.dataset.key = c.key;
      if (['int', 'num', 'pct', 'points', 'money'].includes(c.kind)) th.className = 'num';
      if (c.hide) th.className = 'hide';
      th.addEventListener('click', function () { sortBy(i); });
      headRow.appendChild(th);
    });
    filters.forEach(function (sel) {
      const i = cols.findIndex(c => c.key === sel.dataset.col);
      const first = ['high', 'medium', 'low'];
      const rank = v => first.includes(v) ? first.indexOf(v) : first.length;
      const values = Array.from(new Set(all.map(r => r[i]).filter(v => v !== null)))
        .sort((a, b) => rank(a) - rank(b) || String(a).localeCompare(String(b)));
      values.forEach(function (v) { const o = document.createElement('option'); o.value = v; o.textContent = v; sel.appendChild(o); });
      sel.addEventListener('change', apply);
    });
    if (search) search.addEventListener('input', apply);
    prev.addEventListener('click', function () { if (page > 0) { page--; render(); } });
    next.addEventListener('click', function () { if ((page + 1) * size < view.length) { page++; render(); } });

    function apply() {
      const q = search ? search.value.trim().toLowerCase() : '';
      const wanted = filters.map(sel => [cols.findIndex(c => c.key === sel.dataset.col), sel.value]).filter(f => f[1] !== '');
      view = order.filter(function (r) {
        if (q && !text[r].includes(q)) return false;
        return wanted.every(f => all[r][f[0]] === f[1]);
      });
      page = 0; render();
    }
    function sortBy(i) {
      asc = sortCol === i ? !asc : true; sortCol = i;
      Array.from(headRow.cells).forEach((th, j) => { th.dataset.dir = j === i ? (asc ? 'asc' : 'desc') : ''; });
      const numeric = ['int', 'num', 'pct', 'points', 'money', 'flag'].includes(cols[i].kind);
      order = all.map((_, r) => r).sort(function (a, b) {
        const x = all[a][i], y = all[b][i];
        if (x === null || y === null) return x === y ? a - b : (x === null ? 1 : -1);
        const c = numeric ? (x - y) : String(x).localeCompare(String(y), 'en', {numeric: true});
        return (asc ? c : -c) || a - b;
      });
      apply();
    }
    function render() {
      const start = page * size, rows = view.slice(start, start + size);
      const frag = document.createDocumentFragment();
      rows.forEach(function (r) {
        const tr = document.createElement('tr');
        all[r].forEach(function (v, i) {
          const td = document.createElement('td');
          td.textContent = show(v, cols[i].kind);
          if (['int', 'num', 'pct', 'points', 'money'].includes(cols[i].kind)) td.className = 'num';
          if (cols[i].key === 'tier' && v) td.className = 'tier-' + v;
          if (cols[i].kind === 'points' && v) td.className = 'num ' + (v > 0 ? 'up' : 'down');
          if (cols[i].kind === 'date' || ['action_label', 'lapse_rule', 'lifecycle_stage'].includes(cols[i].key)) td.className = 'date';
          if (cols[i].hide) td.className = 'hide';
          if (cols[i].tip !== null && all[r][cols[i].tip] !== null) td.title = all[r][cols[i].tip];
          tr.appendChild(td);
        });
        frag.appendChild(tr);
      });
      tbody.replaceChildren(frag);
      const total = view.length;
      info.textContent = total ? ('Showing ' + (start + 1).toLocaleString('en') + '\u2013' +
        Math.min(start + size, total).toLocaleString('en') + ' of ' + total.toLocaleString('en')) : 'No client matches';
      prev.disabled = page === 0; next.disabled = start + size >= total;
    }
    render();
  });
})();
"""

STYLE = """
*{box-sizing:border-box}
.caution{background:#fff4e5;border:1px solid #f0b429;border-radius:6px;padding:8px 12px;margin:8px 0}
.caution ul{margin:4px 0 0;padding-left:20px}
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1f2933;background:#f5f7fa;font-size:14px}
main{max-width:1320px;margin:0 auto;padding:12px 20px 40px}
header{display:flex;justify-content:space-between;align-items:baseline;flex-wrap:wrap;gap:8px}
h1{font-size:20px;margin:4px 0}h2{font-size:16px;margin:22px 0 8px}h3{font-size:14px;margin:10px 0 6px}
.muted,header small{color:#616e7c}
.cards{display:grid;grid-template-columns:repeat(6,1fr);gap:10px;margin:8px 0}
.card{background:#fff;border:1px solid #d9e2ec;border-radius:6px;padding:8px 12px;cursor:help}
.card span{display:block;color:#52606d;font-size:12px}.card b{display:block;font-size:21px;margin-top:2px}
.card small{color:#616e7c;font-size:12px}.card.alert b{color:#b00020}
section{background:#fff;border:1px solid #d9e2ec;border-radius:6px;padding:10px 14px;margin:12px 0}
section.first{margin-top:6px}section h2{margin-top:2px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #e4e7eb;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#305496;color:#fff;position:sticky;top:0;cursor:pointer;font-weight:600;white-space:nowrap}
th.num,td.num{text-align:right;white-space:nowrap}
th[data-dir=asc]::after{content:' \\25B2'}th[data-dir=desc]::after{content:' \\25BC'}
td.tier-high{color:#b00020;font-weight:600}td.up{color:#b00020}td.down{color:#2f7d32}
.tools{display:flex;gap:10px;align-items:center;flex-wrap:wrap;margin:4px 0 6px}
.tools input[type=search]{padding:5px 8px;width:280px}.tools select{padding:4px}
.pager{display:flex;gap:8px;align-items:center;margin-top:6px}.pager button{padding:3px 10px}
.grid{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:12px}.grid section{margin:0}
.chart text{font-size:12px;fill:#1f2933}svg.chart{max-width:100%;height:auto}
.list{overflow-x:auto}td{max-width:340px}th.hide,td.hide{display:none}td.date{white-space:nowrap}td[title]{cursor:help}
#call-first td:nth-child(6),#call-first td:nth-child(7){min-width:230px}
dl{display:grid;grid-template-columns:220px 1fr;gap:4px 12px;margin:4px 0}dt{font-weight:600}dd{margin:0}
.note{font-size:12px;color:#616e7c;margin:4px 0}
"""


def _list_box(box_id: str, data_id: str, *, page: int, search: bool = True, filters: tuple[tuple[str, str], ...] = (),
              caption: str = "") -> str:
    tools = ""
    if search or filters:
        parts = [f'<input type="search" placeholder="Search customer, reason, action ..." aria-label="search {box_id}">'
                 if search else ""]
        parts += [f'<label>{html.escape(label)} <select data-col="{col}"><option value="">all</option></select></label>'
                  for col, label in filters]
        tools = f'<div class="tools">{"".join(parts)}</div>'
    return (f'<div class="list" id="{box_id}" data-table="{data_id}" data-page="{page}">{tools}'
            f'{f"<p class=note>{caption}</p>" if caption else ""}'
            f'<table><thead><tr></tr></thead><tbody></tbody></table>'
            f'<div class="pager"><button class="prev" type="button">&larr; Previous</button>'
            f'<button class="next" type="button">Next &rarr;</button><span class="info"></span></div></div>')


def write_html(at_risk: pd.DataFrame, path: Path, *, model_version: str | None, metrics: dict[str, float] | None,
               as_of: pd.Timestamp, win_back: pd.DataFrame | None = None, horizon_days: int = 90,
               currency: str = "EUR", capacity: int = 500, previous: tuple[pd.DataFrame, pd.DataFrame] | None = None,
               previous_as_of: str | None = None, drivers: pd.DataFrame | None = None,
               cautions: list[str] | None = None) -> Path:
    """One self-contained page that opens on what to do: the summary, "call first" (the
    ``capacity``'s worth of clients at the top of the retention list), the drivers and risk by
    lifecycle stage, NPS, the week's changes; then both lists, paginated, sortable,
    searchable and filterable; the model's test metrics in words and a legend."""
    as_of = pd.Timestamp(as_of)
    metrics = metrics or {}
    win_back = win_back if win_back is not None else _empty_win_back()
    entered, left = high_tier_changes(at_risk, win_back, previous)
    facts = summarise(at_risk, win_back, as_of=as_of, model_version=model_version, horizon_days=horizon_days,
                      currency=currency, previous_as_of=previous_as_of, left_high=len(left))
    day = f"{as_of.day} {as_of.strftime('%b %Y')}"
    n = len(at_risk)
    cards = [
        _card("Clients we can still keep", count(n), "Clients on the retention list (at_risk): current clients who "
              "have not lapsed by the lapse rule"),
        _card(f"Expected to leave within {horizon_days} days", count(facts["expected_leavers"]),
              "The sum of the clients' risks: how many of them become former clients within the horizon if nothing is done",
              f"{percent(facts['expected_leavers'] / n) if n else '–'} of the list"),
        _card("Value at risk", money(facts["value_at_risk"], currency),
              "Sum over the list of risk x the client's revenue of the last 12 months", "revenue a year"),
        _card("High tier", count(facts["tiers"]["high"]), "Clients in the high tier: the part of the list the team works first",
              f"{percent(facts['tier_shares']['high']) if n else '–'} of the list", "alert"),
        _card("New in the high tier", "–" if facts["entered_high_tier"] is None else count(facts["entered_high_tier"]),
              "Clients in the high tier now who were not at the previous scoring",
              f"since {previous_as_of}" if previous_as_of else "first scoring in this folder"),
        _card("Win-back list", count(len(win_back)), "Former clients: lapsed by the lapse rule; a different task from "
              "keeping a client", f"brought {money(facts['win_back_value_per_year'], currency)} a year"),
    ]
    call_first = at_risk.head(capacity)
    call_cols = ["rank", "customer_id", "risk_in_words", "tier", "risk_change", "reason_1", "action", "value_at_risk",
                 "lifecycle_stage", "profile"]
    list_cols = ["rank", "customer_id", "risk", "tier", "new_high_tier", "risk_change", "lifecycle_stage", "value_at_risk",
                 "reason_1", "reason_2", "reason_3", "action_label", "last_order_at", "last_nps", "open_complaints", "profile"]
    wb_cols = ["rank", "customer_id", "value_per_year", "amount_total", "orders_total", "last_order_at", "lapse_rule",
               "new_on_list", "reason_1", "reason_2", "reason_3", "action_label", "last_nps", "profile"]
    tips = {"action_label": "action"}
    drivers = drivers if drivers is not None else driver_table(at_risk)
    series = [("across the list (a sample)", drivers["base"].tolist(), "#305496")] if drivers["base"].sum() > 0 else []
    series += [("top of the list (with reasons)", drivers["top_of_list"].tolist(), "#b00020")]
    driver_chart = _grouped_bars([_group_title(g) for g in drivers["leading_reason_group"]], series, title="leading reasons")
    stages = stage_summary(at_risk, win_back)
    kept = stages[stages["lifecycle_stage"] != "former"]
    stage_risk = [(f"{r.lifecycle_stage} ({count(r.clients)})", r.mean_risk,
                   f"{count(r.clients)} {r.lifecycle_stage}s, mean risk {percent(r.mean_risk)}, "
                   f"{count(r.expected_leavers)} expected to leave") for r in kept.itertuples()]
    stage_count = [(r.lifecycle_stage, float(r.clients), f"{count(r.clients)} clients") for r in stages.itertuples()]
    nps_rows = [(f"{r.lifecycle_stage} ({count(r.nps_answered)} answered)", r.nps,
                 f"NPS {r.nps:.0f}: % promoters (9-10) minus % detractors (0-6) among those who answered")
                for r in stages.itertuples() if r.nps is not None and np.isfinite(r.nps)]
    nps_text = "–" if facts["nps"] is None else f"{facts['nps']:+.0f}"
    nps_chart = _diverging_bars(nps_rows, title="NPS by stage")
    if previous_as_of is None:
        changes = ('<section id="changes"><h2>What changed since the previous scoring</h2><p class="muted">This is the '
                   'first scoring kept in this folder: who is new on the list and who entered or left the high tier '
                   'show from the next scoring on.</p></section>')
    else:
        changes = f"""
<section id="changes"><h2>What changed since {html.escape(previous_as_of)}</h2>
<p><b>{count(facts["new_on_list"])}</b> clients new on the retention list, <b>{count(facts["entered_high_tier"])}</b> entered
the high tier, <b>{count(len(left))}</b> left it, <b>{count(facts["new_on_win_back_list"])}</b> new on the win-back list.</p>
<div class="grid"><div><h3>Entered the high tier ({count(len(entered))})</h3>
{_list_box("entered", "data-entered", page=10, search=False)}</div>
<div><h3>Left the high tier ({count(len(left))})</h3>{_list_box("left", "data-left", page=10, search=False)}</div></div>
</section>"""
    metric_items = []
    for key, (label, hover, kind) in METRICS.items():
        value = metrics.get(f"test_{key}")
        if value is None or not np.isfinite(value):
            continue
        shown = {"pct": percent(value, 1), "int": count(value), "x": f"{value:.1f}x"}.get(kind, f"{value:.3f}")
        metric_items.append(f'<dt title="{html.escape(hover)}">{html.escape(label)}</dt><dd>{shown} '
                            f'<span class="muted">({html.escape(hover)})</span></dd>')
    tables = {
        "data-call": _table_data(call_first, call_cols, capacity),
        "data-at-risk": _table_data(at_risk, list_cols, tips=tips),
        "data-win-back": _table_data(win_back, wb_cols, tips=tips),
        "data-entered": _table_data(entered, ["rank", "customer_id", "risk", "risk_change", "reason_1", "action_label"],
                                    tips=tips),
        "data-left": _table_data(left, ["customer_id", "previous_risk", "previous_rank", "now"]),
    }
    scripts = "".join(f'<script type="application/json" id="{k}">{_json_for_script(v)}</script>' for k, v in tables.items())
    more = lambda frame: (f"The first {HTML_ROWS:,} of {len(frame):,}; the full list is in the CSV, Parquet and Excel files."  # noqa: E731
                          if len(frame) > HTML_ROWS else "")
    caution_box = ('<section class="caution" id="cautions"><b>Before you act on this list:</b><ul>'
                   + "".join(f"<li>{html.escape(c)}</li>" for c in cautions) + "</ul></section>") if cautions else ""
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Retention list as of {as_of.strftime('%Y-%m-%d')}</title><style>{STYLE}</style></head>
<body data-currency="{html.escape(currency)}"><main>
<header><h1>Who to call this week: retention list as of {day}</h1>
<small>risk = chance of becoming a former client within {horizon_days} days &middot; model version {html.escape(str(model_version))}
&middot; values in {html.escape(currency)}</small></header>
{caution_box}<div class="cards" id="summary">{''.join(cards)}</div>
<section class="first" id="call-first"><h2>Call first: the top {count(min(capacity, n))} clients the team can reach</h2>
{_list_box("call", "data-call", page=10, search=False)}</section>
<div class="grid">
<section id="drivers"><h2>What drives the risk</h2><p class="note">How often each kind of reason leads: across the
retention list and at its top. The profile (segment, channel, region) is context, never a reason.</p>
{driver_chart}</section>
<section id="stages"><h2>Risk by lifecycle stage</h2><p class="note">Mean risk of leaving within {horizon_days} days;
former clients are on the win-back list.</p>
{_bars(stage_risk, max_value=1.0, title="risk by stage")}<h3>Clients by stage</h3>{_bars(stage_count, fmt=count, title="clients by stage")}</section>
<section id="nps"><h2>Net Promoter Score: {nps_text}</h2><p class="note" title="Promoters answer 9-10, passives 7-8,
detractors 0-6">% promoters minus % detractors among the clients who answered, -100 to 100, by stage.</p>{nps_chart}</section>
<section id="distribution"><h2>How risk is spread</h2><p class="note">Clients on the retention list by risk.</p>
{_histogram(at_risk['risk'].to_numpy(dtype=float))}</section>
</div>
{changes}
<section id="retention"><h2>Retention list: clients who can still be kept ({count(n)})</h2>
{_list_box("at-risk", "data-at-risk", page=100, filters=(("tier", "Tier"), ("action_label", "Action")), caption=more(at_risk))}</section>
<section id="win-back"><h2>Win-back list: former clients, by the value they brought ({count(len(win_back))})</h2>
<p class="note">Clients whose silence is far beyond their own rhythm and the horizon (the lapse rule in README.md):
calling them "at risk" wastes the team's week; win them back instead.</p>
{_list_box("win-back-list", "data-win-back", page=100, filters=(("lapse_rule", "Lapsed by"), ("action_label", "Action")), caption=more(win_back))}</section>
<section id="legend"><h2>How to read this page</h2><dl>
<dt>Risk</dt><dd>About N in 100 such clients become former clients within {horizon_days} days (calibrated; never 0% or 100%).</dd>
<dt>Tier</dt><dd>high, medium, low: the share of the list the team works first, second and last.</dd>
<dt>Value at risk</dt><dd>Risk x the client's revenue of the last 12 months, in {html.escape(currency)}.</dd>
<dt>Expected to leave</dt><dd>The sum of the risks: how many clients of the list leave within the horizon if nothing changes.</dd>
<dt>Change</dt><dd>Risk now minus at the previous scoring, in percentage points; empty for a client new on the list.</dd>
<dt>Reasons</dt><dd>What pushes this client's risk up most (the model's explanation), in their own numbers; the profile
(segment, channel, region) is context, never a reason.</dd>
<dt>NPS</dt><dd>Net Promoter Score: % promoters (9-10) minus % detractors (0-6).</dd>
<dt>Win-back list</dt><dd>Former clients by the lapse rule, ranked by what they brought per year.</dd>
</dl>
<h3>The model (version {html.escape(str(model_version))}), on its test date</h3>
{'<dl>' + ''.join(metric_items) + '</dl>' if metric_items else '<p class="muted">No test metrics recorded.</p>'}</section>
</main>{scripts}<script>{SCRIPT}</script></body></html>
"""
    return write_atomic(Path(path), lambda tmp: tmp.write_text(page, encoding="utf-8"))


def _empty_win_back() -> pd.DataFrame:
    from models.score import WIN_BACK_COLUMNS

    frame = pd.DataFrame({c: pd.Series(dtype="object") for c in WIN_BACK_COLUMNS})
    frame["value_per_year"] = frame["value_per_year"].astype(float)
    return frame


def write_outputs(at_risk: pd.DataFrame, out_dir: Path, *, model_version: str | None, metrics: dict | None,
                  as_of: pd.Timestamp, win_back: pd.DataFrame | None = None, horizon_days: int = 90,
                  currency: str = "EUR", capacity: int = 500, keep_history: bool = True,
                  drivers: pd.DataFrame | None = None, staging: Path | None = None,
                  lineage: dict | None = None, cautions: list[str] | None = None) -> dict[str, Path]:
    """Both lists (Parquet, CSV; one workbook with a sheet each), ``summary.json``,
    ``report.html`` and ``lineage.json``, published as one set (``models.history``): built in
    ``staging`` (a folder from ``history.open_staging(out_dir)`` that may already hold the
    ``validation/`` report; one is opened when None), then moved to
    ``out_dir/history/<as_of>/`` and shown at ``out_dir`` when this is the latest scoring
    there (with ``keep_history`` false: shown at ``out_dir`` without a history folder). The
    lists carry the changes against the previous scoring kept in the folder. ``lineage``: the
    document of ``models.lineage.lineage`` (what was read, the model, the settings hash);
    the files written are added to it. Returns the paths a person opens (in ``out_dir`` when
    this is the latest scoring, else in its history folder), ``"lineage"`` included."""
    from models import lineage as lineage_doc
    from models.score import compare_with_previous

    out_dir = Path(out_dir)
    as_of = pd.Timestamp(as_of)
    own = staging is None
    staging = history.open_staging(out_dir) if own else Path(staging)
    try:
        win_back = win_back if win_back is not None else _empty_win_back()
        previous_dir = history.previous_scoring(out_dir, as_of) if keep_history else None
        previous = history.read_lists(previous_dir)
        at_risk, win_back = compare_with_previous(at_risk, win_back, previous)
        _, left = high_tier_changes(at_risk, win_back, previous)
        facts = summarise(at_risk, win_back, as_of=as_of, model_version=model_version, horizon_days=horizon_days,
                          currency=currency, previous_as_of=previous_dir.name if previous_dir else None,
                          left_high=len(left), cautions=cautions)
        writers = {
            "parquet": lambda: write_frame(at_risk, staging / "at_risk.parquet"),
            "csv": lambda: write_csv(at_risk, staging / "at_risk.csv"),
            "win_back_parquet": lambda: write_frame(win_back, staging / "win_back.parquet"),
            "win_back_csv": lambda: write_csv(win_back, staging / "win_back.csv"),
            "xlsx": lambda: write_excel({"at risk": at_risk, "win back": win_back}, staging / "at_risk.xlsx",
                                        currency=currency,
                                        notes=[f"As of {facts['as_of']}; risk = probability of becoming a former "
                                               f"client within {horizon_days} days; values in {currency}."]),
            "html": lambda: write_html(at_risk, staging / "report.html", model_version=model_version, metrics=metrics,
                                       as_of=as_of, win_back=win_back, horizon_days=horizon_days, currency=currency,
                                       capacity=capacity, previous=previous,
                                       previous_as_of=facts["previous_as_of"], drivers=drivers, cautions=cautions),
            "summary": lambda: write_atomic(staging / "summary.json",
                                            lambda tmp: tmp.write_text(strict_json(facts), encoding="utf-8")),
        }
        names = {}
        for key, write in writers.items():
            names[key] = write().name
            history.step_done()
        doc = lineage or lineage_doc.lineage("score", read={}, model={"version": model_version}, settings_hash="",
                                             as_of=as_of)
        folder = (history.history_dir(out_dir, as_of).relative_to(out_dir).as_posix() if keep_history
                  else ".")
        names["lineage"] = lineage_doc.write_lineage({**doc, "wrote": {"folder": folder}}, staging).name
        history.step_done()
        target = history.publish_set(staging, out_dir, as_of, keep_history=keep_history)
    except BaseException:
        history.discard_staging(staging)
        raise
    shown = out_dir if (not keep_history or (out_dir / history.LATEST).resolve() == target.resolve()) else target
    return {key: shown / name for key, name in names.items()}
