"""Scoring benchmark: the at-risk list for 1,000,000 clients, how stable its reasons are week
to week, and whether they find the simulator's true drivers.

A model is trained on a simulated company of --train-customers and registered in a
temporary MLflow store; the scoring data is the feature benchmark's simulated company
(benchmarks/bench_features.py, cached under .churn/bench/). Times are after the features
are built: loading the registered model, risk for everyone, TreeSHAP reasons for the
actionable top 20%, the list with sentences and actions, and writing the outputs.

    .venv/bin/python benchmarks/bench_scoring.py [--customers 1000000] [--train-customers 50000]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def timed(label, fn, log):
    t0 = time.perf_counter()
    out = fn()
    log.append((label, time.perf_counter() - t0))
    print(f"{label}: {log[-1][1]:.1f} s", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--train-customers", type=int, default=50_000)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-scoring-"))
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home / 'mlflow.db'}"

    from features.build import build_features, channel_list, feature_columns
    from features.inputs import load_data
    from features.labels import build_training_set, default_as_of, labelled_cutoffs
    from features.simulate import simulate
    from models import registry, report, score
    from models.candidates import fit_evaluate
    from models.train import split_cutoffs
    from pipelines.settings import Settings

    settings = Settings()
    log: list[tuple[str, float]] = []
    # -- train and register a model on a smaller company of the same kind
    sim = timed(f"simulate {args.train_customers:,} customers for training", lambda: simulate(args.train_customers, seed=99), log)
    tables = {k: v for k, v in sim.items() if k != "truth"}
    cutoffs = labelled_cutoffs(tables, 90)[-12:]
    frame = build_training_set(tables, cutoffs, horizon_days=90)
    split = split_cutoffs(cutoffs, horizon_days=90, valid_cutoffs=2)
    cols = feature_columns(frame)
    fitted = timed("train", lambda: fit_evaluate(frame, split, cols, settings.train.model_params(), baselines=False), log)
    print(f"model: {fitted.model.best_iteration_} trees, {settings.train.num_leaves} leaves, test ROC-AUC {fitted.metrics['test_roc_auc']:.3f}")
    test = frame[frame["cutoff"] == split.test]
    registry.configure_tracking(home)
    registry.log_training_run(fitted, experiment="bench", model_name="bench", home=home, params={}, config={}, tags={},
                              test_inputs=test[["customer_id", *cols]])

    # -- driver recovery on the training company's test cutoff
    truth = sim["truth"][sim["truth"]["as_of"] == split.test].set_index("customer_id")
    from models.explain import explain
    reasons = explain(fitted.model, test[cols]).set_index(test["customer_id"])
    contrib = truth[[c for c in truth.columns if c.startswith("contrib_")]].clip(lower=0)
    dominant = contrib.idxmax(axis=1).str.removeprefix("contrib_")
    share = contrib.max(axis=1) / contrib.sum(axis=1).replace(0, np.nan)
    chosen = truth.index[(truth["true_risk"] >= truth["true_risk"].quantile(0.8)) & (share >= 0.6)]
    r = reasons.loc[chosen]
    hit = np.mean([(d in (a, b)) for d, a, b in zip(dominant.loc[chosen], r["reason_group_1"], r["reason_group_2"])])
    print(f"dominant true driver among the top two reason groups: {hit:.1%} of {len(chosen):,} high-risk clients")

    # -- stability: the same company scored a week apart
    model, version = registry.load_model("bench")
    last = default_as_of(tables)
    week = []
    for as_of in (last - pd.Timedelta(days=7), last):
        f = build_features(tables, [as_of], channels=channel_list(registry.input_columns(model)))
        out = model.predict(registry.to_model_input(f.drop(columns="cutoff")))
        week.append(out.set_index("customer_id"))
    both = week[0].index.intersection(week[1].index)
    top = week[1].loc[both].sort_values("risk", ascending=False).head(int(0.2 * len(both))).index
    same = (week[0].loc[top, "reason_group_1"] == week[1].loc[top, "reason_group_1"]).mean()
    print(f"leading reason group unchanged a week later: {same:.1%} of the top 20% ({len(top):,} clients)")

    # -- scoring at size
    data = ROOT / ".churn" / "bench" / f"sim-{args.customers}-1"
    if not (data / "orders.parquet").exists():
        raise SystemExit(f"{data} is missing: run benchmarks/bench_features.py --customers {args.customers} first")
    big = load_data(data).tables
    as_of = default_as_of(big)
    channels = channel_list(registry.input_columns(model))
    features = timed(f"features for {args.customers:,} customers (not part of scoring)",
                     lambda: build_features(big, [as_of], channels=channels), log)
    big = None  # the validated tables are not needed for scoring
    scoring = []
    model, version = timed("load the registered model", lambda: registry.load_model("bench"), scoring)
    inputs = registry.to_model_input(features.drop(columns="cutoff"))
    first = timed(f"risk for all {len(inputs):,} clients", lambda: model.predict(inputs.assign(explain=False)), scoring)
    wanted = score.rows_to_explain(first["risk"], features["amount_365d"], actionable_share=0.2)
    scored = timed(f"TreeSHAP reasons for the top 20% ({wanted.sum():,})", lambda: model.predict(inputs.assign(explain=wanted)), scoring)
    at_risk = timed("the list: ranks, tiers, sentences, actions", lambda: score.build_at_risk(
        scored, features, as_of=as_of, model_version=version), scoring)
    total = sum(s for _, s in scoring)
    out_dir = home / "at_risk"
    timed("write parquet, csv, xlsx (first 50,000), html (first 5,000)", lambda: report.write_outputs(
        at_risk, out_dir, model_version=version, metrics={}, as_of=as_of), log)
    sample = inputs.head(100_000).assign(explain=True)
    t0 = time.perf_counter()
    model.predict(sample)
    rate = len(sample) / (time.perf_counter() - t0)
    print(f"\nscoring total (after features): {total:.1f} s for {len(inputs):,} clients")
    print(f"reasons for everyone (score.explain_all): {rate:,.0f} rows/s -> {len(inputs) / rate:.0f} s for all {len(inputs):,}")
    print("\n| step | seconds |\n|---|---|")
    for label, seconds in [*log, *scoring]:
        print(f"| {label} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
