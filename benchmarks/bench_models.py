"""Model quality at full size: simulated data against the simulator's oracle, and the real
CDNOW purchase log against the buy-till-you-die baseline at every backtest cutoff.

    .venv/bin/python benchmarks/bench_models.py [--customers 20000]
"""
from __future__ import annotations

import argparse
import time


from features.build import feature_columns
from features.cdnow import load_cdnow_orders
from features.labels import build_training_set, labelled_cutoffs
from features.simulate import simulate
from models.evaluate import classification_metrics
from models.train import backtest, fit_evaluate, split_cutoffs
from pipelines.settings import Settings


def training_frame(tables, horizon_days=90):
    cutoffs = labelled_cutoffs(tables, horizon_days)
    return build_training_set(tables, cutoffs, horizon_days=horizon_days), cutoffs


def simulated(customers: int, params: dict) -> None:
    t0 = time.perf_counter()
    sim = simulate(customers, seed=2024)
    tables = {k: v for k, v in sim.items() if k != "truth"}
    frame, cutoffs = training_frame(tables)
    split = split_cutoffs(cutoffs, horizon_days=90, valid_cutoffs=2)
    report = fit_evaluate(frame, split, feature_columns(frame), params)
    scores = report.test_scores.merge(sim["truth"], left_on=["customer_id", "cutoff"], right_on=["customer_id", "as_of"])
    oracle = classification_metrics(scores["label"], scores["true_risk"])
    m = report.metrics
    print(f"\n### Simulated, {customers:,} customers (contractual), test cutoff {split.test.date()}, "
          f"{int(m['test_rows']):,} clients, {m['test_base_rate']:.1%} leave ({time.perf_counter() - t0:.0f} s)\n")
    print("| score | ROC-AUC | PR-AUC | ECE |\n|---|---|---|---|")
    print(f"| LightGBM, calibrated | {m['test_roc_auc']:.3f} | {m['test_pr_auc']:.3f} | {m['test_ece']:.4f} |")
    print(f"| oracle: simulator's true_risk at the cutoff (rollouts from the full state) | {oracle['roc_auc']:.3f} | {oracle['pr_auc']:.3f} | |")
    for name in ("logistic", "recency", "pnbd", "btyd"):
        print(f"| baseline {name} | {m[f'baseline_{name}_roc_auc']:.3f} | {m[f'baseline_{name}_pr_auc']:.3f} | |")
    print(f"\nLightGBM / oracle ROC-AUC: {m['test_roc_auc'] / oracle['roc_auc']:.1%}")


def cdnow(params: dict, folds: int, tune_trials: int) -> None:
    t0 = time.perf_counter()
    tables = {"orders": load_cdnow_orders()}
    frame, cutoffs = training_frame(tables)
    bt = backtest(frame, cutoffs, feature_columns(frame), params, horizon_days=90, valid_cutoffs=2, folds=folds,
                  tune_trials=tune_trials)
    how = f"{tune_trials} Optuna trials per fold on its validation cutoffs" if tune_trials else "default parameters"
    print(f"\n### CDNOW purchase log (23,570 customers, orders only), 90-day horizon, rolling-origin backtest, "
          f"LightGBM with {how} ({time.perf_counter() - t0:.0f} s)\n")
    print("| test cutoff | clients | ROC-AUC: LightGBM | Pareto/NBD | BG/NBD | PR-AUC: LightGBM | Pareto/NBD | BG/NBD "
          "| ahead of both on both |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in bt.itertuples():
        ahead = (r.test_roc_auc > max(r.baseline_btyd_roc_auc, r.baseline_pnbd_roc_auc)
                 and r.test_pr_auc > max(r.baseline_btyd_pr_auc, r.baseline_pnbd_pr_auc))
        print(f"| {r.test_cutoff.date()} | {int(r.test_rows):,} | {r.test_roc_auc:.4f} | {r.baseline_pnbd_roc_auc:.4f} | "
              f"{r.baseline_btyd_roc_auc:.4f} | {r.test_pr_auc:.4f} | {r.baseline_pnbd_pr_auc:.4f} | "
              f"{r.baseline_btyd_pr_auc:.4f} | {'yes' if ahead else 'NO'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--folds", type=int, default=6)
    parser.add_argument("--tune", type=int, default=15, help="Optuna trials per CDNOW fold (0 = default parameters too)")
    args = parser.parse_args()
    params = Settings().train.model_params()
    cdnow(params, args.folds, 0)
    if args.tune:
        cdnow(params, args.folds, args.tune)
    simulated(args.customers, params)


if __name__ == "__main__":
    main()
