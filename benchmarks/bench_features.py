"""Feature engine benchmark at 1,000,000 customers (about 30M events).

Simulates the data once (cached under .churn/bench/), then times in separate processes
(so each peak memory is its own): a raw DuckDB scan of the columns the features need,
reading and validating the tables into pandas, the features at one cutoff and a 12-cutoff
training set (labels + features) read by DuckDB straight from the Parquet files, with the
BG/NBD fits timed separately. Prints a markdown table for benchmarks/README.md.

    .venv/bin/python benchmarks/bench_features.py [--customers 1000000]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def phase(name: str, data: str, customers: int) -> dict:
    """Run one measured phase in this process and return its figures."""
    import duckdb

    from features.build import build_features
    from features.contract import load_data
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
        tables = simulate(args.customers, args.seed, progress=True)
        t_sim = time.perf_counter() - t0
        write_dataset(tables, data)
        events = sum(len(tables[t]) for t in ("orders", "interactions", "nps", "complaints", "cancellations"))
        print(f"simulated {args.customers:,} customers, {events:,} events in {t_sim:.0f} s "
              f"(+{time.perf_counter() - t0 - t_sim:.0f} s to write), peak {_mem()['peak_rss_gb']:.1f} GB", flush=True)
        del tables
    results = {}
    for name in ("scan", "load", "one_cutoff", "twelve_cutoffs"):
        out = subprocess.run([sys.executable, __file__, "--phase", name, "--data", str(data), "--customers", str(args.customers)],
                             capture_output=True, text=True, check=True)
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(results[name]), flush=True)
    scan = results["scan"]["seconds"]
    one, twelve = results["one_cutoff"], results["twelve_cutoffs"]
    print(f"\n| step ({args.customers:,} customers, {results['scan']['rows']:,} event rows) | wall s | peak RSS GB | x raw scan |")
    print("|---|---|---|---|")
    rows = [
        ("raw DuckDB scan of the needed columns (Parquet)", results["scan"]["seconds"], results["scan"]["peak_rss_gb"]),
        ("read + validate into pandas (contract, quarantine, reconciliation)", results["load"]["seconds"], results["load"]["peak_rss_gb"]),
        (f"features at one cutoff from the Parquet files ({one['rows']:,} clients x {one['columns']} columns), without the BG/NBD fit",
         one["seconds"] - one["btyd_seconds"], one["peak_rss_gb"]),
        ("- the BG/NBD fit (sample of 50,000) and its application, one cutoff", one["btyd_seconds"], None),
        (f"labels + features at 12 monthly cutoffs ({twelve['rows']:,} rows), without the BG/NBD fits",
         twelve["seconds"] - twelve["btyd_seconds"], twelve["peak_rss_gb"]),
        ("- the 12 BG/NBD fits and their application", twelve["btyd_seconds"], None),
    ]
    for label, seconds, rss in rows:
        print(f"| {label} | {seconds:.1f} | {'' if rss is None else f'{rss:.1f}'} | {seconds / scan:.1f} |")


if __name__ == "__main__":
    main()
