"""Simulator truth: the time of a simulation with and without the truth's rollouts, and the
mean true_risk against the share of clients who really leave within the horizon, per month start.

    .venv/bin/python benchmarks/bench_truth.py [--customers 20000] [--rollouts 32] [--seed 2024]
                                               [--seasonality 0.5 --history-months 36 ...]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from features.simulate import TRUTH_ROLLOUTS, simulate, truth_outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--rollouts", type=int, default=TRUTH_ROLLOUTS)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--history-months", type=int, default=None)
    parser.add_argument("--seasonality", type=float, default=0.0)
    parser.add_argument("--purchase-rate", type=float, default=1.0)
    parser.add_argument("--no-cancellations", action="store_true")
    args = parser.parse_args()
    shape = dict(history_months=args.history_months, seasonality=args.seasonality, purchase_rate=args.purchase_rate,
                 contractual=not args.no_cancellations)
    times = {}
    for rollouts in (0, args.rollouts):
        t0, c0 = time.perf_counter(), time.process_time()
        sim = simulate(args.customers, args.seed, truth_rollouts=rollouts, **shape)
        times[rollouts] = time.perf_counter() - t0
        print(f"simulate {args.customers:,} customers, {rollouts} truth rollouts: {times[rollouts]:.1f} s wall, "
              f"{time.process_time() - c0:.1f} s CPU", flush=True)
    end = pd.Timestamp("2025-12-31")
    rows = truth_outcomes(sim["truth"], sim["orders"], end, 90)
    by = rows.groupby("as_of")
    table = pd.DataFrame({
        "clients": by.size(), "true_risk": by["true_risk"].mean(), "left": by["left"].mean(),
        "frozen_hazard_risk": by["frozen_hazard_risk"].mean(),
        "true_no_order_risk": by["true_no_order_risk"].mean(), "silent": by["silent"].mean()})
    table["noise"] = np.sqrt(table["left"] * (1 - table["left"]) / table["clients"])
    from sklearn.metrics import roc_auc_score

    auc = by.apply(lambda g: pd.Series({"auc_true": roc_auc_score(g["left"], g["true_risk"]),
                                        "auc_frozen": roc_auc_score(g["left"], g["frozen_hazard_risk"])}))
    table = table.join(auc)
    print(f"\n{len(rows):,} client-months whose 90-day horizon is observed\n")
    print("| month start | clients | mean true_risk | realised share leaving | difference | realised share's binomial SE "
          "| mean frozen_hazard_risk | mean true_no_order_risk | realised share without an order "
          "| ROC-AUC: true_risk | frozen_hazard_risk |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for as_of, r in table.iterrows():
        print(f"| {as_of.date()} | {r.clients:,.0f} | {r.true_risk:.3f} | {r.left:.3f} | {r.true_risk - r.left:+.3f} "
              f"| {r.noise:.3f} | {r.frozen_hazard_risk:.3f} | {r.true_no_order_risk:.3f} | {r.silent:.3f} "
              f"| {r.auc_true:.3f} | {r.auc_frozen:.3f} |")
    print(f"| all | {len(rows):,} | {rows['true_risk'].mean():.3f} | {rows['left'].mean():.3f} "
          f"| {rows['true_risk'].mean() - rows['left'].mean():+.3f} | | {rows['frozen_hazard_risk'].mean():.3f} "
          f"| {rows['true_no_order_risk'].mean():.3f} | {rows['silent'].mean():.3f} | | |")
    print(f"\nmean true_risk_se {rows['true_risk_se'].mean():.4f}, mean true_no_order_risk_se "
          f"{rows['true_no_order_risk_se'].mean():.4f}")
    print(f"\nROC-AUC for leaving: true_risk {roc_auc_score(rows['left'], rows['true_risk']):.3f}, "
          f"frozen_hazard_risk {roc_auc_score(rows['left'], rows['frozen_hazard_risk']):.3f}; for no order: "
          f"true_no_order_risk {roc_auc_score(rows['silent'], rows['true_no_order_risk']):.3f}")


if __name__ == "__main__":
    main()
