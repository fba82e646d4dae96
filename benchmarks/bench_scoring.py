"""Scoring benchmark: the at-risk list for 1,000,000 clients, how stable its reasons are week
to week, and whether they find the simulator's true drivers.

A model is trained on a simulated company of --train-customers and registered in a
temporary MLflow store; the scoring data is the feature benchmark's simulated company
(benchmarks/bench_features.py, cached under .churn/bench/). Times are after the features
are built: loading the registered model, risk for everyone, TreeSHAP reasons for the
actionable top 20% of the retention list, both lists with sentences and actions, and writing
every file (the history copy included). The quality of the lists' reasons (true drivers,
stability a week apart) is measured on the training company (see bench_lists.py).

    .venv/bin/python benchmarks/bench_scoring.py [--customers 1000000] [--train-customers 50000]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


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

    from features.build import build_features, channel_list, feature_columns, features_for_scoring
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
    print(f"model: {fitted.model.best_iteration_} trees, {fitted.model.num_leaves_} leaves, test ROC-AUC {fitted.metrics['test_roc_auc']:.3f}")
    test = frame[frame["cutoff"] == split.test]
    registry.configure_tracking(home)
    registry.log_training_run(fitted, experiment="bench", model_name="bench", home=home, params={}, config={}, tags={},
                              test_inputs=test[["customer_id", *cols]])

    # -- the lists' reasons on the training company: true drivers, and stability a week apart
    import sys
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_lists import driver_recovery, stability
    from features.build import is_contractual

    model, version = registry.load_model("bench")
    channels = channel_list(registry.input_columns(model))
    predict = lambda frame: model.predict(registry.to_model_input(frame))  # noqa: E731

    def lists(as_of, **kw):
        f = build_features(tables, [as_of], channels=channels).drop(columns="cutoff")
        return score.make_lists(predict, f, as_of=as_of, model_version=version, contractual=is_contractual(tables), **kw), 0.0
    print(driver_recovery(lists, sim["truth"]))
    print(stability(lists, default_as_of(tables)))

    # -- scoring at size
    data = ROOT / ".churn" / "bench" / f"sim-{args.customers}-1"
    if not (data / "orders.parquet").exists():
        raise SystemExit(f"{data} is missing: run benchmarks/bench_features.py --customers {args.customers} --only-simulate first")
    big = load_data(data).tables
    as_of = default_as_of(big)
    contractual = is_contractual(big)
    features = timed(f"features for {args.customers:,} customers (not part of scoring)",
                     lambda: features_for_scoring(big, as_of, channels=channels), log)
    big = None  # the validated tables are not needed for scoring
    features = features.drop(columns="cutoff")
    scoring = []
    model, version = timed("load the registered model", lambda: registry.load_model("bench"), scoring)
    spent = {"risk": 0.0, "reasons": 0.0, "rows": 0}

    def timed_predict(frame):
        t0 = time.perf_counter()
        out = model.predict(registry.to_model_input(frame))
        key = "reasons" if frame["explain"].any() else "risk"
        spent[key] += time.perf_counter() - t0
        spent["rows"] += int(frame["explain"].sum())
        return out
    t0 = time.perf_counter()
    at_risk, win_back, drivers = score.make_lists(timed_predict, features, as_of=as_of, model_version=version,
                                                  contractual=contractual, explain_max=settings.score.explain_max)
    total_lists = time.perf_counter() - t0
    scoring += [(f"risk for the {len(at_risk):,} clients on the retention list (of {len(features):,})", spent["risk"]),
                (f"TreeSHAP reasons for {spent['rows']:,} rows (the top 20%, at most 50,000, and a sample of 2,000 for the drivers)",
                 spent["reasons"]),
                ("the lapse rule, both lists: ranks, tiers, sentences, actions, profile",
                 total_lists - spent["risk"] - spent["reasons"])]
    for label, seconds in scoring[1:]:
        print(f"{label}: {seconds:.1f} s")
    out_dir = home / "lists"
    timed("write both lists: parquet, csv, xlsx (first 50,000 of each), html (first 10,000), summary; history copy",
          lambda: report.write_outputs(at_risk, out_dir, model_version=version, metrics={}, as_of=as_of,
                                       win_back=win_back, drivers=drivers), scoring)
    total = sum(s for _, s in scoring)
    sample = registry.to_model_input(features.head(100_000)).assign(explain=True)
    t0 = time.perf_counter()
    model.predict(sample)
    rate = len(sample) / (time.perf_counter() - t0)
    print(f"\nscoring and writing (after features): {total:.1f} s for {len(features):,} clients "
          f"({len(at_risk):,} on the retention list, {len(win_back):,} on the win-back list)")
    print(f"reasons for everyone (score.explain_all): {rate:,.0f} rows/s -> {len(at_risk) / rate:.0f} s for all {len(at_risk):,}")
    print("\n| step | seconds |\n|---|---|")
    for label, seconds in [*log, *scoring]:
        print(f"| {label} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
