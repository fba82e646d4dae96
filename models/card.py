"""The model card logged with every model: intended use, data window, metrics, baselines, limits."""
from __future__ import annotations

from pathlib import Path

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


def candidates_table(candidates: pd.DataFrame) -> str:
    """The candidates as a markdown table: validation (chooses) and test (measures) metrics."""
    if candidates is None or not len(candidates):
        return "(no candidate)"
    rows = []
    for r in candidates.to_dict("records"):
        rows.append({"candidate": r["candidate"], "what": r.get("label", r["candidate"]),
                     "kind": "baseline" if r.get("baseline") else "model",
                     "status": r.get("status", ""), "valid ROC-AUC": r.get("valid_roc_auc"),
                     "valid PR-AUC": r.get("valid_pr_auc"), "test ROC-AUC": r.get("test_roc_auc"),
                     "test PR-AUC": r.get("test_pr_auc"), "champion": "**yes**" if r.get("champion") else ""})
    return markdown_table(pd.DataFrame(rows))


def model_card(*, model_name: str, horizon_days: int, cutoffs: dict[str, list[str]], metrics: dict[str, float],
               breakdowns: dict[str, pd.DataFrame], backtest: pd.DataFrame | None, fingerprint: dict,
               skipped_groups: dict[str, str], contractual: bool, champion: str = "LightGBM",
               choice: str = "", candidates: pd.DataFrame | None = None, notes: list[str] | None = None,
               horizon=None, frequency: str = "month starts") -> str:
    """Markdown model card of one training. ``champion``/``choice``: the chosen candidate and why;
    ``candidates``: ``TrainingReport.candidates``; ``notes``: fallbacks taken (cutoffs, split);
    ``horizon``: a ``models.evaluate.HorizonCheck``."""
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
        "## Champion",
        f"- **{champion}**" + (f": {choice.split(': ', 1)[-1]}" if choice else ""),
        "- the candidates are compared on the validation cutoffs only; the test cutoff measures them afterwards "
        "and never chooses",
    ]
    lines += [f"- {note}" for note in (notes or [])]
    if any(str(s).startswith("failed") for s in (candidates["status"] if candidates is not None and len(candidates)
                                                    else [])):
        lines.append("- candidates that could not be fitted or gave non-finite scores are listed below with the "
                     "reason; they were left out, the training went on")
    lines += [
        "",
        "## Data window",
        f"- cutoffs: {frequency}",
        f"- training cutoffs: {', '.join(cutoffs['train']) or 'none'}",
        f"- validation cutoffs (early stopping, choosing the champion, calibration): {', '.join(cutoffs['valid']) or 'none'}",
        f"- test cutoff (holdout, never seen in fitting or choosing): {(cutoffs['test'] or ['none'])[0]}",
        "- input tables: " + ", ".join(f"{t} ({v['rows']:,} rows)" for t, v in fingerprint.items()),
    ]
    if skipped_groups:
        lines.append("- feature groups skipped: " + "; ".join(f"{g} ({why})" for g, why in skipped_groups.items()))
    if horizon is not None:
        lines += ["", "## Horizon", f"- {horizon.summary()}"]
        if horizon.test_leaver_share == horizon.test_leaver_share:
            lines.append(f"- at the test cutoff: {horizon.test_leaver_share:.1%} leavers")
        lines += [f"- **warning**: {w}" for w in horizon.warnings]
    lines += ["", "## Candidates (validation chooses, test measures)", candidates_table(candidates)]
    test_keys = [k for k in m if k.startswith("test_")]
    if test_keys:
        lines += [
            "",
            "## Holdout metrics of the champion (test cutoff)",
            "| metric | value |", "|---|---|",
            *[f"| {k[5:]} | {_fmt(m[k])} |" for k in test_keys],
        ]
    else:
        lines += ["", "## Holdout metrics", "No labelled test cutoff: the history is shorter than one horizon after "
                  "the first clients, so no outcome could be measured."]
    lines += [
        "",
        "## Baselines on the same rows",
        "| score | ROC-AUC | PR-AUC | champion ahead by (ROC-AUC) | (PR-AUC) |", "|---|---|---|---|---|",
    ]
    for name in ("recency", "logistic", "pnbd", "btyd"):
        if f"baseline_{name}_roc_auc" in m:
            lines.append(f"| {name} | {_fmt(m[f'baseline_{name}_roc_auc'])} | {_fmt(m.get(f'baseline_{name}_pr_auc'))} | "
                         f"{_fmt(m.get(f'lift_over_{name}_roc_auc'))} | {_fmt(m.get(f'lift_over_{name}_pr_auc'))} |")
    if "champion_margin_roc_auc" in m:
        lines.append(f"\nChampion minus the best baseline on the test cutoff: ROC-AUC {m['champion_margin_roc_auc']:+.4f}, "
                     f"PR-AUC {m.get('champion_margin_pr_auc', float('nan')):+.4f}; mean predicted risk minus the "
                     f"realised share: {m.get('test_calibration_in_the_large', float('nan')):+.4f}.")
    for by, frame in breakdowns.items():
        lines += ["", f"## By {by.replace('_', ' ')}", markdown_table(frame)]
    if backtest is not None and len(backtest):
        cols = [c for c in ("test_cutoff", "champion", "test_roc_auc", "test_pr_auc", "test_ece", "best_baseline_test_roc_auc",
                            "champion_margin_roc_auc") if c in backtest.columns]
        lines += ["", "## Rolling-origin backtest", markdown_table(backtest[cols])]
    lines += [
        "",
        "## Limits",
        "- Trained on the history it was given: a change in the business (pricing, product, outreach policy) "
        "needs a retraining and a fresh look at calibration.",
        "- Reasons are log-odds contributions grouped by driver, a group ranked by what its features add to the "
        "risk (TreeSHAP for LightGBM, exact for the linear and single-score candidates): associations the model "
        "learned, not causes. A buy-till-you-die or recency "
        "champion has one reason, the purchases group.",
        "- Customers whose first order is very recent have little history: their risk leans on attention and "
        "lifecycle features.",
    ]
    return "\n".join(lines) + "\n"


def training_artifacts(report, test: pd.DataFrame, feature_cols: list[str], *, plots_dir: Path, model_name: str,
                       horizon_days: int, cutoffs: dict, backtest: pd.DataFrame | None, fingerprint: dict,
                       skipped_groups: dict, contractual: bool, notes: list[str], horizon, frequency: str,
                       validation_summary: pd.DataFrame, lapse, rule_with_cancellations: bool = False) -> tuple[str, dict]:
    """What a training run stores with its model: the model card (markdown) and every artifact
    by file name (the card, the feature catalogue, the candidates, the data fingerprint, the
    cutoffs, the validation summary, the holdout and explanation plots drawn into ``plots_dir``,
    the metrics by segment, the backtest, and the monitoring reference of the test cutoff)."""
    import json

    from features.catalogue import catalogue_frame
    from models import evaluate, monitor, registry

    plots = {}
    if len(report.test_scores):
        plots = evaluate.save_plots(report.test_scores["label"], report.test_scores["risk"], plots_dir,
                                    champion=report.champion,
                                    baselines={k[9:]: report.test_scores[k].to_numpy() for k in report.test_scores
                                               if k in ("baseline_logistic", "baseline_btyd", "baseline_pnbd")})
    plots |= evaluate.save_explanation_plots(report.model, test, plots_dir)
    card = model_card(model_name=model_name, horizon_days=horizon_days, cutoffs=cutoffs, metrics=report.metrics,
                      breakdowns=report.breakdowns, backtest=backtest, fingerprint=fingerprint,
                      skipped_groups=skipped_groups, contractual=contractual, champion=report.champion_label,
                      choice=report.choice, candidates=report.candidates, notes=notes, horizon=horizon,
                      frequency=frequency)
    artifacts = {"model_card.md": card, "feature_catalogue.csv": catalogue_frame(), "candidates.csv": report.candidates,
                 "data_fingerprint.json": json.dumps(fingerprint, indent=2), "cutoffs.json": json.dumps(cutoffs, indent=2),
                 "validation_summary.csv": validation_summary, **{f"{k}.png": v for k, v in plots.items()},
                 **{f"metrics_by_{k}.csv": v for k, v in report.breakdowns.items()}}
    if backtest is not None:
        artifacts["backtest.csv"] = backtest
    scored = report.test_scores["risk"].to_numpy() if len(report.test_scores) == len(test) else None
    artifacts[registry.REFERENCE_ARTIFACT] = monitor.to_json(monitor.retention_reference(
        test, feature_cols, scored, lapse=lapse, contractual=contractual, rule_with_cancellations=rule_with_cancellations))
    return card, artifacts
