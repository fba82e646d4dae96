"""``monitor.html``: one self-contained page (no network needed) of a monitoring run: the
alerts first, then the label-free estimate of the latest list, the realised-versus-estimated
history as a chart and a table, and the drift of every feature sorted by PSI."""
from __future__ import annotations

import html
from pathlib import Path

from features.io import write_atomic

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1f2933;max-width:1200px}
h1{font-size:1.5rem;margin:0 0 4px} h2{font-size:1.15rem;margin:28px 0 8px}
p.sub{color:#52606d;margin:0 0 16px}
.alerts{border-left:4px solid #c81e1e;background:#fdf2f2;padding:10px 16px;margin:12px 0}
.ok{border-left:4px solid #0e7c3a;background:#f0faf3;padding:10px 16px;margin:12px 0}
.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{border:1px solid #d9e2ec;border-radius:6px;padding:10px 14px;min-width:150px;color:#52606d;font-size:.85rem}
.card b{display:block;font-size:1.4rem;color:#1f2933}
table{border-collapse:collapse;font-size:.85rem} th,td{padding:4px 10px;border-bottom:1px solid #e4e7eb;text-align:left}
th{background:#f5f7fa} td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.flag td{background:#fde8e8} tr.warn td{background:#fff8e1}
abbr{text-decoration:underline dotted}
"""

WORDS = {
    "roc_auc": ("ROC-AUC", "how well the list ranks leavers above stayers: 0.5 is a coin toss, 1.0 perfect"),
    "pr_auc": ("PR-AUC", "average precision: how concentrated the leavers are at the top of the list"),
    "ece": ("calibration error", "mean gap between the risk shown and the share who really left, over risk bands"),
    "precision_high_tier": ("leavers in the high tier", "share of the high tier who really left within the horizon"),
    "positive_rate": ("leaver share", "share of the listed clients who left within the horizon"),
    "psi": ("PSI", "population stability index: 0.1 a moderate shift against the training data, 0.2 a large one"),
}


def _term(key: str) -> str:
    word, meaning = WORDS.get(key, (key, ""))
    return f'<abbr title="{html.escape(meaning)}">{html.escape(word)}</abbr>' if meaning else html.escape(word)


def _num(value, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _pct(value) -> str:
    return "" if value is None else f"{value:.1%}"


def _chart(realised: list[dict], width: int = 640, height: int = 220) -> str:
    """Realised and estimated ROC-AUC per list date, as two lines (inline SVG)."""
    points = [(r["as_of"], r.get("roc_auc"), r.get("expected_roc_auc")) for r in realised]
    values = [v for _, a, e in points for v in (a, e) if v is not None]
    if len(points) < 1 or not values:
        return "<p>No list has reached the end of its horizon in the data yet: realised figures follow once it has.</p>"
    low, high = min(values + [0.5]) - 0.02, max(values + [1.0])
    pad = 40
    step = (width - 2 * pad) / max(len(points) - 1, 1)
    y = lambda v: height - pad - (v - low) / (high - low) * (height - 2 * pad)  # noqa: E731
    def line(index: int, colour: str, dash: str) -> str:
        coords = [(pad + i * step, y(p[index])) for i, p in enumerate(points) if p[index] is not None]
        path = " ".join(f"{x:.1f},{yy:.1f}" for x, yy in coords)
        dots = "".join(f'<circle cx="{x:.1f}" cy="{yy:.1f}" r="3" fill="{colour}"/>' for x, yy in coords)
        return f'<polyline fill="none" stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}" points="{path}"/>{dots}'
    labels = "".join(f'<text x="{pad + i * step:.1f}" y="{height - 12}" font-size="11" text-anchor="middle">'
                     f'{html.escape(p[0])}</text>' for i, p in enumerate(points))
    ticks = "".join(f'<text x="4" y="{y(v) + 4:.1f}" font-size="11">{v:.2f}</text>'
                    for v in (low + 0.02, (low + high) / 2, high))
    legend = ('<text x="{0}" y="16" font-size="12" fill="#1f4e8c">— realised</text>'
              '<text x="{1}" y="16" font-size="12" fill="#b7791f">- - estimated before the labels</text>').format(pad, pad + 90)
    return (f'<svg width="{width}" height="{height}" role="img" aria-label="realised and estimated ROC-AUC by list date">'
            f'{legend}{ticks}{labels}{line(1, "#1f4e8c", "")}{line(2, "#b7791f", "6 4")}</svg>')


def write_monitor_html(report: dict, path: Path) -> Path:
    """The page of one ``monitor.json`` document (``models.monitor.monitor_report``)."""
    alerts = report["alerts"]
    alert_block = ('<div class="alerts"><b>Needs attention</b><ul>' + "".join(f"<li>{html.escape(a)}</li>" for a in alerts)
                   + "</ul></div>") if alerts else '<div class="ok">No alert: no large drift, and the estimated and ' \
                                                   'realised performance are within the limits.</div>'
    e = report["expected"]
    cards = "".join(f'<div class="card">{_term(k)} (estimated)<b>{f(e.get(k))}</b></div>'
                    for k, f in (("roc_auc", _num), ("pr_auc", _num), ("positive_rate", _pct), ("precision_high_tier", _pct)))
    champion = report.get("champion_test_roc_auc")
    realised_rows = "".join(
        f"<tr><td>{html.escape(r['as_of'])}</td><td>{html.escape(str(r.get('model_version') or ''))}</td>"
        f"<td class=num>{r['rows']:,}</td><td class=num>{_num(r.get('roc_auc'))}</td>"
        f"<td class=num>{_num(r.get('expected_roc_auc'))}</td><td class=num>{_num(r.get('pr_auc'))}</td>"
        f"<td class=num>{_num(r.get('ece'))}</td><td class=num>{_pct(r.get('precision_high_tier'))}</td>"
        f"<td class=num>{_pct(r.get('positive_rate'))}</td><td class=num>{r.get('touched_rows', 0):,}</td>"
        f"<td class=num>{_num(r.get('untouched_roc_auc'))}</td></tr>" for r in reversed(report["realised"]))
    realised_table = (f"<table><tr><th>list of</th><th>model version</th><th>clients judged</th><th>{_term('roc_auc')}</th>"
                      f"<th>estimated then</th><th>{_term('pr_auc')}</th><th>{_term('ece')}</th>"
                      f"<th>{_term('precision_high_tier')}</th><th>{_term('positive_rate')}</th>"
                      "<th>contacted during the horizon</th><th>ROC-AUC, clients not contacted</th></tr>"
                      f"{realised_rows}</table>") if report["realised"] else ""
    drift_rows = "".join(
        f'<tr class="{"flag" if d["flag"] else "warn" if d.get("warn") else ""}"><td>{html.escape(name)}</td>'
        f'<td class=num>{d["psi"]:.3f}</td><td>{"large shift" if d["flag"] else "moderate shift" if d.get("warn") else "stable"}</td></tr>'
        for name, d in report["drift"].items())
    s = report["score_drift"]
    score_line = (f"<p>Risk distribution: {_term('psi')} {s['psi']:.3f} "
                  f"({'large shift' if s['flag'] else 'moderate shift' if s.get('warn') else 'stable'}).</p>"
                  if s.get("psi") is not None else "")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Model monitoring as of {html.escape(report['as_of'])}</title>
<style>{STYLE}</style></head><body>
<h1>Is the churn model still right? As of {html.escape(report['as_of'])}</h1>
<p class="sub">Model version {html.escape(str(report['model_version']))}; its test ROC-AUC at training:
{_num(champion)}. Alerts fire for a {_term('psi')} of {report['thresholds']['psi_alert']} or more, or a ROC-AUC more than
{report['thresholds']['max_auc_drop']} below the test ROC-AUC.</p>
{alert_block}
<h2>The latest list, before its outcomes are known</h2>
<div class="cards">{cards}</div>
<h2>Past lists: what really happened</h2>
{_chart(report['realised'])}
{realised_table}
<h2>Drift against the training data</h2>
{score_line}
<table><tr><th>feature</th><th>{_term('psi')}</th><th></th></tr>{drift_rows}</table>
</body></html>
"""
    return write_atomic(Path(path), lambda tmp: tmp.write_text(page, encoding="utf-8"))
