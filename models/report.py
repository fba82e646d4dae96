"""Outputs people open: the at-risk list as Parquet, CSV and Excel, and one self-contained
HTML page (no network needed to view it). Every file is written atomically."""
from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pandas as pd

from features.io import write_atomic, write_frame

HTML_ROWS = 5000
EXCEL_ROWS = 50_000  # a spreadsheet is for the actionable part; the full list is in CSV and Parquet


def nps_score(scores: pd.Series) -> float:
    """Net Promoter Score: % promoters (9-10) - % detractors (0-6) among those who answered."""
    s = scores.dropna()
    if s.empty:
        return float("nan")
    return float(100 * ((s >= 9).mean() - (s <= 6).mean()))


def stage_summary(at_risk: pd.DataFrame) -> pd.DataFrame:
    """Clients, mean risk, expected leavers and NPS by lifecycle stage."""
    rows = []
    for stage, part in at_risk.groupby("lifecycle_stage", sort=True):
        rows.append({"lifecycle_stage": stage, "clients": len(part), "mean_risk": part["risk"].mean(),
                     "expected_leavers": part["risk"].sum(), "nps": nps_score(part["last_nps"]),
                     "nps_answered": int(part["last_nps"].notna().sum())})
    return pd.DataFrame(rows)


def driver_summary(at_risk: pd.DataFrame) -> pd.DataFrame:
    """How often each driver group leads, among all clients and among the high tier."""
    lead = at_risk["reason_group_1"].fillna("none")
    high = at_risk["tier"] == "high"
    out = pd.DataFrame({"all_clients": lead.value_counts(normalize=True),
                        "high_tier": lead[high].value_counts(normalize=True)}).fillna(0.0)
    return out.sort_values("all_clients", ascending=False).rename_axis("leading_reason_group").reset_index()


def write_excel(at_risk: pd.DataFrame, path: Path, max_rows: int = EXCEL_ROWS) -> Path:
    """The list as a spreadsheet: formatted header, frozen first row, filters; the first
    ``max_rows`` of the ranking (a note on a second sheet says so when the list is longer)."""
    def write(tmp: Path) -> None:
        frame = at_risk.head(max_rows).copy()
        for col in frame.columns:
            if isinstance(frame[col].dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(frame[col]):
                frame[col] = frame[col].dt.tz_localize(None) if hasattr(frame[col].dt, "tz") and frame[col].dt.tz else frame[col]
        with pd.ExcelWriter(tmp, engine="openpyxl") as writer:
            frame.to_excel(writer, sheet_name="at risk", index=False)
            sheet = writer.sheets["at risk"]
            from openpyxl.styles import Font, PatternFill

            for cell in sheet[1]:
                cell.font = Font(bold=True, color="FFFFFF")
                cell.fill = PatternFill("solid", fgColor="305496")
            sheet.freeze_panes = "A2"
            sheet.auto_filter.ref = sheet.dimensions
            widths = {"customer_id": 14, "reason_1": 60, "reason_2": 50, "reason_3": 50, "action": 50}
            for i, col in enumerate(frame.columns, start=1):
                sheet.column_dimensions[sheet.cell(1, i).column_letter].width = widths.get(col, 14)
            for row in sheet.iter_rows(min_row=2, min_col=frame.columns.get_loc("risk") + 1, max_col=frame.columns.get_loc("risk") + 1):
                for cell in row:
                    cell.number_format = "0.0%"
            if len(at_risk) > max_rows:
                pd.DataFrame({"note": [f"The first {max_rows:,} of {len(at_risk):,} clients by rank; "
                                       "the full list is in at_risk.csv and at_risk.parquet."]}).to_excel(
                    writer, sheet_name="about", index=False)
    return write_atomic(Path(path), write)


def _svg_histogram(values: np.ndarray, bins: int = 20, width: int = 520, height: int = 160) -> str:
    counts, edges = np.histogram(values, bins=bins, range=(0, 1))
    top = max(int(counts.max()), 1)
    bar_w = width / bins
    bars = "".join(
        f'<rect x="{i * bar_w:.1f}" y="{height - 20 - (c / top) * (height - 30):.1f}" width="{bar_w - 2:.1f}" '
        f'height="{(c / top) * (height - 30):.1f}" fill="#305496"><title>{edges[i]:.2f}-{edges[i + 1]:.2f}: {c:,}</title></rect>'
        for i, c in enumerate(counts))
    ticks = "".join(f'<text x="{x * width:.0f}" y="{height - 4}" font-size="10" text-anchor="middle">{x:.1f}</text>'
                    for x in (0.0, 0.25, 0.5, 0.75, 1.0))
    return f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="risk distribution">{bars}{ticks}</svg>'


def _table(frame: pd.DataFrame, *, table_id: str | None = None, formats: dict | None = None) -> str:
    formats = formats or {}
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = []
        for col, value in zip(frame.columns, row):
            if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
                text, key = "", ""
            elif col in formats:
                text, key = formats[col](value), str(value)
            elif isinstance(value, pd.Timestamp):
                text, key = value.strftime("%Y-%m-%d"), value.isoformat()
            elif isinstance(value, float):
                text, key = f"{value:,.3f}", repr(value)
            else:
                text, key = str(value), str(value)
            cells.append(f'<td data-key="{html.escape(key)}">{html.escape(text)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    ident = f' id="{table_id}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


SCRIPT = """
const table = document.getElementById('at-risk');
const rows = Array.from(table.tBodies[0].rows);
document.getElementById('search').addEventListener('input', e => {
  const q = e.target.value.toLowerCase();
  rows.forEach(r => { r.style.display = r.textContent.toLowerCase().includes(q) ? '' : 'none'; });
});
Array.from(table.tHead.rows[0].cells).forEach((th, i) => {
  th.addEventListener('click', () => {
    const asc = th.dataset.dir !== 'asc';
    Array.from(table.tHead.rows[0].cells).forEach(h => delete h.dataset.dir);
    th.dataset.dir = asc ? 'asc' : 'desc';
    const key = r => r.cells[i].dataset.key;
    const numeric = rows.every(r => key(r) === '' || !isNaN(parseFloat(key(r))));
    rows.sort((a, b) => {
      const x = key(a), y = key(b);
      if (x === '' || y === '') return x === y ? 0 : (x === '' ? 1 : -1);
      const c = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
      return asc ? c : -c;
    });
    rows.forEach(r => table.tBodies[0].appendChild(r));
  });
});
"""

STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}
table{border-collapse:collapse;font-size:13px}th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left}
th{background:#305496;color:#fff;position:sticky;top:0;cursor:pointer}
th[data-dir=asc]::after{content:' \\25B2'}th[data-dir=desc]::after{content:' \\25BC'}
.cards{display:flex;gap:16px;flex-wrap:wrap}.card{border:1px solid #ddd;border-radius:6px;padding:10px 14px}
.card b{display:block;font-size:20px}.high{color:#b00020}#search{padding:6px;width:320px;margin:8px 0}
"""


def write_html(at_risk: pd.DataFrame, path: Path, *, model_version: str | None, metrics: dict[str, float] | None,
               as_of: pd.Timestamp) -> Path:
    """One self-contained page: the ranked list (sortable, searchable), the risk distribution,
    the main drivers, NPS and risk by lifecycle stage, and the model's version and metrics."""
    metrics = metrics or {}
    stages = stage_summary(at_risk)
    drivers = driver_summary(at_risk)
    n_high = int((at_risk["tier"] == "high").sum())
    shown = at_risk.head(HTML_ROWS)
    cols = ["rank", "customer_id", "risk", "tier", "lifecycle_stage", "value_at_risk", "reason_1", "reason_2",
            "reason_3", "action", "last_order_at", "last_nps", "open_complaints"]
    pct = lambda v: f"{v:.1%}"  # noqa: E731
    metric_rows = pd.DataFrame([{"metric": k.removeprefix("test_"), "value": v} for k, v in metrics.items()
                                if k.startswith("test_") and not k.startswith("test_raw")])
    note = (f"<p>Showing the first {HTML_ROWS:,} of {len(at_risk):,} clients; the full list is in at_risk.csv / .xlsx.</p>"
            if len(at_risk) > HTML_ROWS else "")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>At-risk clients as of {as_of.date()}</title>
<style>{STYLE}</style></head><body>
<h1>Clients at risk of leaving, as of {as_of.date()}</h1>
<div class="cards">
<div class="card">clients scored<b>{len(at_risk):,}</b></div>
<div class="card">high tier<b class="high">{n_high:,}</b></div>
<div class="card">expected to leave<b>{at_risk['risk'].sum():,.0f}</b></div>
<div class="card">value at risk<b>{at_risk['value_at_risk'].sum():,.0f}</b></div>
<div class="card">NPS (last answers)<b>{nps_score(at_risk['last_nps']):.0f}</b></div>
<div class="card">model version<b>{html.escape(str(model_version))}</b></div>
</div>
<h2>Ranked list</h2>
<input id="search" type="search" placeholder="Search customer, reason, action ...">
{note}
{_table(shown[cols], table_id="at-risk", formats={"risk": pct, "value_at_risk": lambda v: f"{v:,.0f}", "last_nps": lambda v: f"{v:.0f}", "open_complaints": lambda v: f"{v:.0f}"})}
<h2>Risk distribution</h2>
{_svg_histogram(at_risk['risk'].to_numpy())}
<h2>Main drivers across the base (leading reason group)</h2>
{_table(drivers, formats={"all_clients": pct, "high_tier": pct})}
<h2>NPS and churn risk by lifecycle stage</h2>
{_table(stages, formats={"mean_risk": pct, "nps": lambda v: f"{v:.0f}"})}
<h2>Model</h2>
<p>Version {html.escape(str(model_version))}; test metrics on its holdout cutoff:</p>
{_table(metric_rows) if len(metric_rows) else '<p>no metrics recorded</p>'}
<script>{SCRIPT}</script>
</body></html>
"""
    return write_atomic(Path(path), lambda tmp: tmp.write_text(page, encoding="utf-8"))


def write_outputs(at_risk: pd.DataFrame, out_dir: Path, *, model_version: str | None, metrics: dict | None,
                  as_of: pd.Timestamp) -> dict[str, Path]:
    """at_risk.parquet, at_risk.csv, at_risk.xlsx and report.html under ``out_dir``."""
    out_dir = Path(out_dir)
    return {
        "parquet": write_frame(at_risk, out_dir / "at_risk.parquet"),
        "csv": write_frame(at_risk, out_dir / "at_risk.csv"),
        "xlsx": write_excel(at_risk, out_dir / "at_risk.xlsx"),
        "html": write_html(at_risk, out_dir / "report.html", model_version=model_version, metrics=metrics, as_of=as_of),
        "summary": write_atomic(out_dir / "summary.json", lambda tmp: tmp.write_text(json.dumps({
            "as_of": str(as_of.date()), "clients": len(at_risk), "model_version": model_version,
            "high_tier": int((at_risk["tier"] == "high").sum()), "expected_leavers": float(at_risk["risk"].sum()),
            "value_at_risk": float(at_risk["value_at_risk"].sum()), "nps": nps_score(at_risk["last_nps"]),
        }, indent=2))),
    }
