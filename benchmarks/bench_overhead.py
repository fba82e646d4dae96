"""What orchestration costs a verb typed in a terminal without a Prefect server.

Times, as a user runs them (subprocesses, wall seconds), on a small simulated company
trained once under .churn/bench/overhead/:

- ``churn --help`` (start-up) and ``python -c "import pipelines.flows"`` (whether Prefect is
  imported, and the import time);
- ``churn score`` and ``churn monitor`` as plain Python (the default without
  ``PREFECT_API_URL``: ``CHURN_ORCHESTRATION=auto``), and the same with Prefect's temporary
  local server forced (``CHURN_ORCHESTRATION=prefect``: what every verb paid before);
- ``churn validate`` (which never ran a flow) for reference;
- ``churn score`` as plain Python on a larger company (``--cache-customers``, the same
  model) with the feature cache off (``cache: {features: false}``) and warm (the same data
  scored before): what a rerun saves.

The overhead is the median with the server minus the median without. Every scoring but the
first reads its features from the cache, so both paths are timed on equal terms.

    .venv/bin/python benchmarks/bench_overhead.py [--customers 1000] [--cache-customers 20000] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
ENV = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "CHURN_ORCHESTRATION")}
ENV |= {"DO_NOT_TRACK": "true", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}


def run(command: list[str], **extra: str) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(command, env={**ENV, **extra}, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode not in (0, 3):  # 3: the monitor raised alerts, a normal outcome
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cache-customers", type=int, default=20000, help="size of the company the cache is timed on")
    args = parser.parse_args()
    work = ROOT / ".churn" / "bench" / "overhead"
    data, home, lists = work / f"sim-{args.customers}", work / "home", work / "lists"
    config = work / "config.yaml"
    work.mkdir(parents=True, exist_ok=True)
    config.write_text("train: {num_boost_round: 100, backtest_folds: 0}\nregistry: {model_name: bench-overhead}\n")
    churn = str(BIN / "churn")
    if not (data / "orders.parquet").exists():
        run([churn, "simulate", "--out", str(data), "--customers", str(args.customers), "--seed", "1",
             "--truth-rollouts", "0"])
    if not (home / "mlflow" / "mlflow.db").exists():
        print(f"training once on {args.customers:,} customers ...", file=sys.stderr)
        run([churn, "train", "--data", str(data), "--config", str(config), "--home", str(home)])
        run([churn, "score", "--data", str(data), "--config", str(config), "--home", str(home), "--out", str(lists)])

    probe = subprocess.run([str(BIN / "python"), "-c", "import sys, time; t = time.perf_counter(); import pipelines.flows; "
                            "print(round(time.perf_counter() - t, 2), 'prefect' in sys.modules)"],
                           env=ENV, cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    verbs = {
        "churn --help": [churn, "--help"],
        "churn validate": [churn, "validate", "--data", str(data), "--home", str(home)],
        "churn score": [churn, "score", "--data", str(data), "--config", str(config), "--home", str(home),
                        "--out", str(lists)],
        "churn monitor": [churn, "monitor", "--data", str(data), "--lists", str(lists), "--config", str(config),
                          "--home", str(home)],
    }
    print(f"import pipelines.flows: {probe[0]} s, Prefect imported: {probe[1]}")
    print(f"| verb ({args.customers:,} customers) | plain Python (s) | Prefect's temporary server (s) | overhead (s) |")
    print("|---|---:|---:|---:|")
    for name, command in verbs.items():
        plain = [run(command, CHURN_ORCHESTRATION="auto") for _ in range(args.repeat)]
        if name in ("churn score", "churn monitor"):
            served = [run(command, CHURN_ORCHESTRATION="prefect") for _ in range(args.repeat)]
            a, b = statistics.median(plain), statistics.median(served)
            print(f"| `{name}` | {a:.1f} | {b:.1f} | {b - a:+.1f} |", flush=True)
        else:
            print(f"| `{name}` | {statistics.median(plain):.1f} | (no flow) | |", flush=True)
    big = work / f"sim-{args.cache_customers}"
    if not (big / "orders.parquet").exists():
        run([churn, "simulate", "--out", str(big), "--customers", str(args.cache_customers), "--seed", "2",
             "--truth-rollouts", "0"])
    uncached = work / "config-nocache.yaml"
    uncached.write_text(config.read_text() + "cache: {features: false}\n")
    score = [churn, "score", "--data", str(big), "--home", str(home), "--out", str(work / "lists-big"), "--config"]
    off = [run([*score, str(uncached)]) for _ in range(args.repeat)]
    run([*score, str(config)])  # fills the cache
    warm = [run([*score, str(config)]) for _ in range(args.repeat)]
    print(f"\n| `churn score` ({args.cache_customers:,} customers, plain) | feature cache off (s) | warm (s) |")
    print("|---|---:|---:|")
    print(f"| median of {args.repeat} | {statistics.median(off):.1f} | {statistics.median(warm):.1f} |")


if __name__ == "__main__":
    main()
