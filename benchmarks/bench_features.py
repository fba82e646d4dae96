"""Feature engine benchmark at 1,000,000 customers (about 30M events).

Simulates the data once (cached under .churn/bench/), then times in separate processes
(so each peak memory is its own): a raw DuckDB scan of the columns the features need,
reading and validating the tables into pandas, the features at one cutoff and a 12-cutoff
training set (labels + features) read by DuckDB straight from the Parquet files, with the
BG/NBD fits timed separately. Prints a markdown table for benchmarks/README.md.

    .venv/bin/python benchmarks/bench_features.py [--customers 1000000] [--repeat 5]
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def phase(name: str, data: str, customers: int) -> dict:
    """Run one measured phase in this process and return its figures."""
    import duckdb

    from features.build import build_features
    from features.inputs import load_data
    from features.labels import build_training_set, labelled_cutoffs

    t0 = time.perf_counter()
    if name == "scan":
        con = duckdb.connect()
        cols = {"orders": "customer_id, ordered_at, amount, status", "interactions": "customer_id, occurred_at, direction, channel",
                "nps": "customer_id, answered_at, score", "complaints": "customer_id, opened_at, resolved_at, severity, public",
                "cancellations": "customer_id, cancelled_at"}
        rows = 0
        for table, c in cols.items():
            rows += con.execute(f"SELECT count(*), count(DISTINCT customer_id) FROM (SELECT {c} FROM '{data}/{table}.parquet')").fetchone()[0]
        return {"phase": name, "seconds": time.perf_counter() - t0, "rows": rows, **_mem()}
    if name == "load":
        loaded = load_data(Path(data))
        return {"phase": name, "seconds": time.perf_counter() - t0, "rows": int(loaded.summary["rows_read"].sum()), **_mem()}
    # the feature phases read the validated Parquet files directly (DuckDB), as a scheduled
    # run does after `churn validate`; the tables never sit in pandas
    tables = {p.stem: p for p in sorted(Path(data).glob("*.parquet")) if p.stem != "truth"}
    base_rss = _mem()["peak_rss_gb"]
    cutoffs = labelled_cutoffs(tables, 90)
    import features.build as fb

    spent: list[float] = []
    fit_and_apply = fb._btyd_features

    def timed_btyd(*args, **kwargs):  # the BG/NBD fits, timed inside the same run
        t = time.perf_counter()
        out = fit_and_apply(*args, **kwargs)
        spent.append(time.perf_counter() - t)
        return out

    fb._btyd_features = timed_btyd
    if name == "one_cutoff":
        t1 = time.perf_counter()
        f = build_features(tables, [cutoffs[-1]])
        return {"phase": name, "seconds": time.perf_counter() - t1, "btyd_seconds": sum(spent), "rows": len(f),
                "columns": f.shape[1], "rss_before_gb": base_rss, **_mem()}
    if name == "twelve_cutoffs":
        t1 = time.perf_counter()
        f = build_training_set(tables, cutoffs[-12:], horizon_days=90)
        return {"phase": name, "seconds": time.perf_counter() - t1, "btyd_seconds": sum(spent), "rows": len(f),
                "columns": f.shape[1], "labelled": float(f["label"].mean()), "rss_before_gb": base_rss, **_mem()}
    raise ValueError(name)


def _mem() -> dict:
    """Peak resident memory of this process (VmHWM: unlike ru_maxrss it is not inherited
    from the parent that started the phase)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return {"peak_rss_gb": int(line.split()[1]) / 1024 ** 2}
    return {"peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1,
                        help="run each phase this many times (each in its own process): the table shows the median "
                             "and, with --repeat > 1, the range (a shared 2-core box varies by 10-20%% between runs)")
    parser.add_argument("--truth-rollouts", type=int, default=0,
                        help="Monte-Carlo rollouts of the simulated truth (default 0: the events are the same, "
                             "only truth.parquet's true_risk columns are left empty)")
    parser.add_argument("--only-simulate", action="store_true", help="build the cached simulation, time nothing")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.data, args.customers)))
        return
    data = ROOT / ".churn" / "bench" / f"sim-{args.customers}-{args.seed}"
    if not (data / "orders.parquet").exists():
        from features.simulate import simulate, write_dataset

        t0 = time.perf_counter()
        # the engines are timed here, not the truth: no Monte-Carlo rollouts (bench_truth.py measures those)
        tables = simulate(args.customers, args.seed, progress=True, truth_rollouts=args.truth_rollouts)
        t_sim = time.perf_counter() - t0
        write_dataset(tables, data)
        events = sum(len(tables[t]) for t in ("orders", "interactions", "nps", "complaints", "cancellations"))
        print(f"simulated {args.customers:,} customers, {events:,} events in {t_sim:.0f} s "
              f"(+{time.perf_counter() - t0 - t_sim:.0f} s to write), peak {_mem()['peak_rss_gb']:.1f} GB", flush=True)
        del tables
    if args.only_simulate:
        return
    runs: dict[str, list[dict]] = {}
    for _ in range(max(args.repeat, 1)):  # interleaved, so a slow spell of the box hits every phase
        for name in ("scan", "load", "one_cutoff", "twelve_cutoffs"):
            out = subprocess.run([sys.executable, __file__, "--phase", name, "--data", str(data), "--customers", str(args.customers)],
                                 capture_output=True, text=True, check=True)
            runs.setdefault(name, []).append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(runs[name][-1]), flush=True)
    for name in ("one_cutoff", "twelve_cutoffs"):  # the features without the BG/NBD fits
        for r in runs[name]:
            r["features_seconds"] = r["seconds"] - r["btyd_seconds"]
    results = {name: {key: statistics.median([r[key] for r in rs]) if isinstance(rs[0][key], float) else rs[0][key] for key in rs[0]}
               for name, rs in runs.items()}
    spread = {name: {key: (min(r[key] for r in rs), max(r[key] for r in rs)) for key in ("seconds", "features_seconds",
              "btyd_seconds", "peak_rss_gb") if key in rs[0]} for name, rs in runs.items()}
    scan = results["scan"]["seconds"]
    one, twelve = results["one_cutoff"], results["twelve_cutoffs"]
    repeat = max(args.repeat, 1)
    what = "median of" if repeat > 1 else "one run,"
    print(f"\n| step ({args.customers:,} customers, {results['scan']['rows']:,} event rows; {what} {repeat} run{'s' * (repeat > 1)}) "
          "| wall s | peak RSS GB | x raw scan |")
    print("|---|---|---|---|")
    rows = [
        ("raw DuckDB scan of the needed columns (Parquet)", "scan", "seconds", True),
        ("read + validate into pandas (contract, quarantine, reconciliation)", "load", "seconds", True),
        (f"features at one cutoff from the Parquet files ({one['rows']:,} clients x {one['columns']} columns), without the BG/NBD fit",
         "one_cutoff", "features_seconds", True),
        ("- the BG/NBD fit (sample of 50,000) and its application, one cutoff", "one_cutoff", "btyd_seconds", False),
        (f"labels + features at 12 monthly cutoffs ({twelve['rows']:,} rows), without the BG/NBD fits",
         "twelve_cutoffs", "features_seconds", True),
        ("- the 12 BG/NBD fits and their application", "twelve_cutoffs", "btyd_seconds", False),
    ]
    for label, name, key, memory in rows:
        seconds, (low, high) = results[name][key], spread[name][key]
        rss, (rss_low, rss_high) = results[name]["peak_rss_gb"], spread[name]["peak_rss_gb"]
        wall = f"{seconds:.1f}" + (f" ({low:.1f}-{high:.1f})" if repeat > 1 else "")
        peak = (f"{rss:.2f}" + (f" ({rss_low:.2f}-{rss_high:.2f})" if repeat > 1 else "")) if memory else ""
        print(f"| {label} | {wall} | {peak} | {seconds / scan:.1f} |")



if __name__ == "__main__":
    main()
