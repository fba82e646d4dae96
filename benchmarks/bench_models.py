"""Model quality on every data shape: each candidate's holdout metrics, the champion chosen on the
validation cutoffs, its margin over the best baseline and its calibration on the test cutoff.

Data sets: the real CDNOW purchase log, and simulated companies of several shapes (the default
20,000-customer contractual company, a small base of 600 without cancellations, a five-month
history with a 45-day horizon, low purchase frequency, seasonal purchases). Every set goes the
way `churn train` goes: cutoffs adapted to the history (``models.train.training_data``), every
candidate fitted, the champion chosen on the validation cutoffs only, all measured on the test
cutoff. A shape the installed simulator cannot make is reported as skipped.

    .venv/bin/python benchmarks/bench_models.py [--sets cdnow,default,small,short,low,seasonal] [--folds 6]
        [--seasonal-folds 8]
"""
from __future__ import annotations

import argparse
import inspect
import time

import numpy as np
import pandas as pd

from features.build import feature_columns, is_contractual
from features.cdnow import load_cdnow_orders
from features.config import FeatureConfig
from models.candidates import LABELS, backtest, fit_evaluate
from models.evaluate import classification_metrics, horizon_check
from models.train import training_data
from pipelines.settings import Settings

SHAPES = {
    # name: (description, customers, horizon_days, simulate() keyword arguments)
    "default": ("simulated, 20,000 customers, contractual, 2 years", 20_000, 90, {}),
    "small": ("simulated, 600 customers, no cancellations, 2 years", 600, 90, {"contractual": False}),
    "short": ("simulated, 3,000 customers, no cancellations, 5 months, 45-day horizon", 3_000, 45,
              {"contractual": False, "history_years": 5 / 12}),
    "low": ("simulated, 6,000 customers, no cancellations, purchase rate x0.3, 2 years", 6_000, 90,
            {"contractual": False, "purchase_rate": 0.3}),
    "seasonal": ("simulated, 6,000 customers, no cancellations, seasonality 0.6, 3 years", 6_000, 90,
                 {"contractual": False, "seasonality": 0.6, "history_years": 3.0}),
}
SEED = 2024


def simulated(name: str) -> tuple[str, dict | None, pd.DataFrame | None, int]:
    from features.simulate import simulate

    description, customers, horizon, kwargs = SHAPES[name]
    accepted = inspect.signature(simulate).parameters
    missing = [k for k in kwargs if k not in accepted]
    if missing:
        return description, None, None, horizon
    extra = {"truth_rollouts": 0} if "truth_rollouts" in accepted and name != "default" else {}
    sim = simulate(customers, seed=SEED, **kwargs, **extra)
    truth = sim.pop("truth")
    return description, sim, truth, horizon


def evaluate_set(name: str, description: str, tables: dict, horizon: int, truth: pd.DataFrame | None,
                 params: dict) -> dict:
    t0 = time.perf_counter()
    settings = Settings()
    frame, plan = training_data(tables, horizon_days=horizon, frequency=settings.cutoffs.frequency,
                                max_cutoffs=settings.cutoffs.max_cutoffs, valid_cutoffs=settings.train.valid_cutoffs,
                                config=settings.feature_config().model_copy(update={"btyd_horizon_days": horizon}))
    contractual = is_contractual(tables)
    report = fit_evaluate(frame, plan.split, feature_columns(frame), params, horizon_days=horizon,
                          capacity=settings.train.capacity, contractual=contractual)
    seconds = time.perf_counter() - t0
    m = report.metrics
    check = horizon_check(frame, horizon, test_cutoff=plan.split.test)
    oracle = None
    if truth is not None and not contractual and "true_no_order_risk" in truth:  # the label is "no order" there
        truth = truth.assign(true_risk=truth["true_no_order_risk"])
    if truth is not None and "true_risk" in truth and truth["true_risk"].notna().any() and len(report.test_scores):
        scored = report.test_scores.merge(truth, left_on=["customer_id", "cutoff"], right_on=["customer_id", "as_of"])
        if len(scored) == len(report.test_scores) and scored["true_risk"].notna().all():
            oracle = classification_metrics(scored["label"], scored["true_risk"])
    print(f"\n### {name}: {description}\n")
    print(f"Cutoffs: {plan.frequency} ({len(plan.cutoffs)} labelled), train {len(plan.split.train)}, validation "
          f"{len(plan.split.valid)}, test {plan.split.test.date() if plan.split.test is not None else 'none'} "
          f"({int(m.get('test_rows', 0)):,} clients, {m.get('test_base_rate', float('nan')):.1%} leave); "
          f"{check.summary()}; {seconds:.0f} s.")
    for note in [*plan.notes, *report.notes]:
        print(f"- {note}")
    for warning in check.warnings:
        print(f"- warning: {warning}")
    print("\n| candidate | kind | status | valid ROC-AUC | test ROC-AUC | test PR-AUC | champion |\n|---|---|---|---|---|---|---|")
    for r in report.candidates.to_dict("records"):
        status = ("not eligible (no training cutoff)" if r["status"].startswith("ok;") else
                  r["status"].split(":")[0])
        print(f"| {LABELS.get(r['candidate'], r['candidate'])} | {'baseline' if r['baseline'] else 'model'} | {status} | "
              f"{_f(r.get('valid_roc_auc'))} | {_f(r.get('test_roc_auc'))} | {_f(r.get('test_pr_auc'))} | "
              f"{'**yes**' if r['champion'] else ''} |")
    row = {"data set": name, "champion": report.champion, "test ROC-AUC": m.get("test_roc_auc"),
           "test PR-AUC": m.get("test_pr_auc"),
           "best baseline": _best_baseline(report.candidates), "margin ROC-AUC": m.get("champion_margin_roc_auc"),
           "margin PR-AUC": m.get("champion_margin_pr_auc"),
           "mean risk - realised": m.get("test_calibration_in_the_large"), "ECE": m.get("test_ece"),
           "model / oracle ROC-AUC": (m["test_roc_auc"] / oracle["roc_auc"]) if oracle else None}
    print(f"\nChampion {report.champion}: {report.choice}. Margin over the best baseline on the test cutoff: ROC-AUC "
          f"{_s(row['margin ROC-AUC'])}, PR-AUC {_s(row['margin PR-AUC'])}; mean predicted risk "
          f"{_f(m.get('test_mean_risk'))} against {_f(m.get('test_base_rate'))} realised ({_s(row['mean risk - realised'])}); "
          f"ECE {_f(row['ECE'], 4)}" + (f"; oracle (the simulator's true_risk) ROC-AUC {oracle['roc_auc']:.3f}, model / "
                                        f"oracle {row['model / oracle ROC-AUC']:.1%}" if oracle else "") + ".")
    return row


def _best_baseline(candidates: pd.DataFrame) -> str:
    base = candidates[candidates["baseline"] & candidates.get("test_roc_auc", pd.Series(dtype=float)).notna()] \
        if "test_roc_auc" in candidates else candidates.iloc[:0]
    if not len(base):
        return "n/a"
    best = base.loc[base["test_roc_auc"].idxmax()]
    return f"{best['candidate']} {best['test_roc_auc']:.3f}"


def _f(v, digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{digits}f}"


def _s(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:+.4f}"


def cdnow_backtest(params: dict, folds: int) -> None:
    t0 = time.perf_counter()
    tables = {"orders": load_cdnow_orders()}
    frame, plan = training_data(tables, horizon_days=90, config=FeatureConfig())
    bt = backtest(frame, plan.cutoffs, feature_columns(frame), params, horizon_days=90, valid_cutoffs=2, folds=folds)
    print(f"\n### CDNOW rolling-origin backtest: each of the last {folds} cutoffs the test cutoff in turn, the champion "
          f"chosen on that fold's validation cutoffs ({time.perf_counter() - t0:.0f} s)\n")
    print("| test cutoff | clients | champion | ROC-AUC | best baseline | margin | PR-AUC | best baseline | margin |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in bt.to_dict("records"):
        print(f"| {r['test_cutoff'].date()} | {int(r['test_rows']):,} | {r['champion']} | {r['test_roc_auc']:.4f} | "
              f"{r['best_baseline_test_roc_auc']:.4f} | {r['champion_margin_roc_auc']:+.4f} | {r['test_pr_auc']:.4f} | "
              f"{r['best_baseline_test_pr_auc']:.4f} | {r['champion_margin_pr_auc']:+.4f} |")


def seasonal_backtest(params: dict, folds: int) -> None:
    """Calibration through the year: each of the last ``folds`` month starts of the seasonal shape
    the test cutoff in turn, with and without the calendar features."""
    from models.candidates import CALENDAR

    description, tables, _, horizon = simulated("seasonal")
    if tables is None:
        print("\n### Seasonal backtest\n\nSkipped: the installed simulator cannot make this shape.")
        return
    t0 = time.perf_counter()
    frame, plan = training_data(tables, horizon_days=horizon, config=FeatureConfig())
    cols = feature_columns(frame)
    runs = {"with": backtest(frame, plan.cutoffs, cols, params, horizon_days=horizon, valid_cutoffs=2, folds=folds),
            "without": backtest(frame, plan.cutoffs, [c for c in cols if c not in CALENDAR], params,
                                horizon_days=horizon, valid_cutoffs=2, folds=folds)}
    print(f"\n### Calibration through the year: {description}, each of the last {folds} month starts the test cutoff "
          f"in turn ({time.perf_counter() - t0:.0f} s)\n")
    print("| test cutoff | realised share | champion | mean risk - realised | ECE | margin ROC-AUC | without calendar "
          "features: champion | mean risk - realised | ECE |")
    print("|---|---|---|---|---|---|---|---|---|")
    w, wo = runs["with"].set_index("test_cutoff"), runs["without"].set_index("test_cutoff")
    for c in w.index:
        a, b = w.loc[c], wo.loc[c]
        print(f"| {c.date()} | {a['test_base_rate']:.3f} | {a['champion']} | {a['test_calibration_in_the_large']:+.3f} | "
              f"{a['test_ece']:.3f} | {a['champion_margin_roc_auc']:+.4f} | {b['champion']} | "
              f"{b['test_calibration_in_the_large']:+.3f} | {b['test_ece']:.3f} |")
    for name, bt in runs.items():
        gap = bt["test_calibration_in_the_large"].abs()
        print(f"\n{name} calendar features: |mean risk - realised| mean {gap.mean():.3f}, max {gap.max():.3f}; "
              f"champion margin over the best baseline min {bt['champion_margin_roc_auc'].min():+.4f}", end="")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="cdnow,default,small,short,low,seasonal")
    parser.add_argument("--folds", type=int, default=6, help="CDNOW rolling-origin folds (0 = none)")
    parser.add_argument("--seasonal-folds", type=int, default=8,
                        help="rolling-origin folds of the seasonal shape, with and without calendar features (0 = none)")
    args = parser.parse_args()
    params = Settings().train.model_params()
    rows = []
    for name in args.sets.split(","):
        if name == "cdnow":
            rows.append(evaluate_set("cdnow", "the real CDNOW purchase log (23,570 customers, orders only)",
                                     {"orders": load_cdnow_orders()}, 90, None, params))
            continue
        description, tables, truth, horizon = simulated(name)
        if tables is None:
            print(f"\n### {name}: {description}\n\nSkipped: the installed simulator cannot make this shape.")
            continue
        rows.append(evaluate_set(name, description, tables, horizon, truth, params))
    if rows:
        print("\n### Summary (test cutoff of each data set)\n")
        summary = pd.DataFrame(rows)
        print("| " + " | ".join(summary.columns) + " |\n|" + "---|" * len(summary.columns))
        for r in summary.to_dict("records"):
            cells = [(_s(v) if k.startswith(("margin", "mean risk")) else _f(v, 4 if k == "ECE" else 3))
                     if isinstance(v, float) or v is None else str(v) for k, v in r.items()]
            print("| " + " | ".join(cells) + " |")
    if args.folds and "cdnow" in args.sets:
        cdnow_backtest(params, args.folds)
    if args.seasonal_folds and "seasonal" in args.sets:
        seasonal_backtest(params, args.seasonal_folds)


if __name__ == "__main__":
    main()
