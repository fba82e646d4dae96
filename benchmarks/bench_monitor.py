"""Monitoring against the truth: does the label-free estimate track the realised ROC-AUC, and
does drift light up only when the company changes what it does?

A simulated company is cut at ``--train-end``: the model is trained on the history before it
(so every later list is scored on months it never saw), then a list is scored at every month
start after it on the full history, kept as `churn score` keeps them, and `churn monitor`'s
flow is run. A second copy of the company stops its outbound touches from ``--stop`` on
(the attention policy changes) and is monitored the same way.

    .venv/bin/python benchmarks/bench_monitor.py [--customers 20000]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd

TIME_COLUMNS = {"customers": "created_at", "orders": "ordered_at", "interactions": "occurred_at", "nps": "answered_at",
                "complaints": "opened_at", "cancellations": "cancelled_at"}


def cut(src: Path, dst: Path, end: pd.Timestamp) -> None:
    """The company as its extract looked at ``end``: every table's rows stamped before it."""
    dst.mkdir(parents=True)
    for path in src.glob("*.parquet"):
        if path.stem == "truth":
            continue
        frame = pd.read_parquet(path)
        col = TIME_COLUMNS.get(path.stem)
        (frame[frame[col] < end] if col in frame else frame).to_parquet(dst / path.name, index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--train-end", default="2025-03-01")
    parser.add_argument("--stop", default="2025-04-01", help="the second company stops its outbound touches from this date")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-monitor-"))
    home = work / "home"
    from pipelines.cli import prepare_environment

    prepare_environment(home)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from features.simulate import simulate, write_dataset
    from pipelines.flows import monitor_flow, score_flow, train_flow
    from pipelines.settings import Settings

    t0 = time.perf_counter()
    full = work / "full"
    write_dataset(simulate(args.customers, seed=args.seed), full)
    cut(full, work / "train", pd.Timestamp(args.train_end))
    settings = Settings()
    trained = train_flow(work / "train", settings, home)
    print(f"trained on the history before {args.train_end}: version {trained.version}, test cutoff "
          f"{trained.cutoffs['test'][0]}, test ROC-AUC {trained.metrics['test_roc_auc']:.3f} ({time.perf_counter() - t0:.0f} s)")

    stopped = work / "stopped"
    shutil.copytree(full, stopped)
    touches = pd.read_parquet(stopped / "interactions.parquet")
    gone = (touches["direction"] == "outbound") & (touches["occurred_at"] >= pd.Timestamp(args.stop))
    touches[~gone].to_parquet(stopped / "interactions.parquet", index=False)

    dates = pd.date_range(args.train_end, "2025-10-01", freq="MS")
    for name, data in (("untouched", full), ("stops its outbound touches from " + args.stop, stopped)):
        lists = work / f"lists-{data.name}"
        for day in dates:  # each scoring is kept in lists/history/<as_of>/
            score_flow(data, lists, settings, home, as_of=day)
        result = monitor_flow(data, lists, settings, home)
        doc = result.report
        flagged = [k for k, d in doc["drift"].items() if d["flag"]]
        print(f"\n### {args.customers:,} customers, company {name}\n")
        print(f"features flagged at the latest list ({doc['as_of']}): {len(flagged)} of {len(doc['drift'])}"
              f"{': ' + ', '.join(flagged) if flagged else ''}; score PSI {doc['score_drift']['psi']:.3f}\n")
        print("| list of | clients judged | realised ROC-AUC | estimated before the labels | error | realised leaver share "
              "| estimated | ROC-AUC on clients not contacted |\n|---|---|---|---|---|---|---|---|")
        errors = []
        for r in doc["realised"]:
            err = r["expected_roc_auc"] - r["roc_auc"]
            errors.append(abs(err))
            print(f"| {r['as_of']} | {r['rows']:,} | {r['roc_auc']:.3f} | {r['expected_roc_auc']:.3f} | {err:+.3f} | "
                  f"{r['positive_rate']:.3f} | {r['expected_positive_rate']:.3f} | {r.get('untouched_roc_auc') or float('nan'):.3f} |")
        if errors:
            print(f"\nmean absolute error of the estimate: {statistics.mean(errors):.3f} over {len(errors)} lists; "
                  f"alerts: {len(doc['alerts'])}")
    print(f"\n({time.perf_counter() - t0:.0f} s; work folder {work})")


if __name__ == "__main__":
    main()
