"""The model card logged with every model: intended use, data window, metrics, baselines, limits."""
from __future__ import annotations

import pandas as pd


def markdown_table(frame: pd.DataFrame) -> str:
    """A plain markdown table (numbers to 3 decimals)."""
    def cell(v):
        if isinstance(v, float):
            return _fmt(v)
        return str(v.date()) if isinstance(v, pd.Timestamp) else str(v)
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def _fmt(value) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{value:.3f}"


def model_card(*, model_name: str, horizon_days: int, cutoffs: dict[str, list[str]], metrics: dict[str, float],
               breakdowns: dict[str, pd.DataFrame], backtest: pd.DataFrame | None, fingerprint: dict,
               skipped_groups: dict[str, str], contractual: bool) -> str:
    """Markdown model card of one training."""
    m = metrics
    target = ("a cancellation" if contractual else "no order") + f" within {horizon_days} days after the cutoff"
    lines = [
        f"# Model card: {model_name}",
        "",
        "## Intended use",
        f"Ranks current clients by the risk of becoming former clients ({target}), with the top reasons per "
        "customer, for retention managers planning outreach. Not for decisions about individuals without a person "
        "reviewing the reasons; not for customers without an order before the cutoff.",
        "",
        "## Data window",
        f"- training cutoffs: {', '.join(cutoffs['train'])}",
        f"- validation cutoffs (early stopping, calibration): {', '.join(cutoffs['valid'])}",
        f"- test cutoff (holdout, never seen in fitting): {cutoffs['test'][0]}",
        "- input tables: " + ", ".join(f"{t} ({v['rows']:,} rows)" for t, v in fingerprint.items()),
    ]
    if skipped_groups:
        lines.append("- feature groups skipped: " + "; ".join(f"{g} ({why})" for g, why in skipped_groups.items()))
    lines += [
        "",
        "## Holdout metrics (test cutoff)",
        "| metric | value |", "|---|---|",
        *[f"| {k[5:]} | {_fmt(v)} |" for k, v in m.items() if k.startswith("test_")],
        "",
        "## Baselines on the same rows",
        "| score | ROC-AUC | PR-AUC | LightGBM ahead by (ROC-AUC) |", "|---|---|---|---|",
    ]
    for name in ("recency", "logistic", "pnbd", "btyd"):
        if f"baseline_{name}_roc_auc" in m:
            lines.append(f"| {name} | {_fmt(m[f'baseline_{name}_roc_auc'])} | {_fmt(m.get(f'baseline_{name}_pr_auc'))} | "
                         f"{_fmt(m.get(f'lift_over_{name}_roc_auc'))} |")
    for by, frame in breakdowns.items():
        lines += ["", f"## By {by.replace('_', ' ')}", markdown_table(frame)]
    if backtest is not None and len(backtest):
        cols = [c for c in ("test_cutoff", "test_roc_auc", "test_pr_auc", "test_ece", "baseline_btyd_roc_auc",
                            "baseline_recency_roc_auc") if c in backtest.columns]
        lines += ["", "## Rolling-origin backtest", markdown_table(backtest[cols])]
    lines += [
        "",
        "## Limits",
        "- Trained on the history it was given: a change in the business (pricing, product, outreach policy) "
        "needs a retraining and a fresh look at calibration.",
        "- Reasons are TreeSHAP contributions grouped by driver: associations the model learned, not causes.",
        "- Customers whose first order is very recent have little history: their risk leans on attention and "
        "lifecycle features.",
    ]
    return "\n".join(lines) + "\n"
