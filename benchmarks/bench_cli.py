"""`churn features` end to end against a raw DuckDB scan of the same files.

Times, at each size, ``.venv/bin/churn features --data DIR --cutoff DATE --out FILE.parquet``
as a user runs it (a subprocess: Python start-up, reading, validation, features, writing)
at the last labelled cutoff (90-day horizon), and the raw DuckDB scan of the columns the
features need (``bench_features.py``'s ``scan`` phase, in its own process) as the
reference; reports the ratio and the peak memory of each process. The simulations are
cached under .churn/bench/ (``bench_features.py`` builds them).

    .venv/bin/python benchmarks/bench_cli.py [--customers 200000 1000000] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHURN = ROOT / ".venv" / "bin" / "churn"
ENV = {**os.environ, "DO_NOT_TRACK": "true", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
       "MLFLOW_DISABLE_TELEMETRY": "true"}


def data_dir(customers: int, seed: int = 1) -> Path:
    """The cached simulation of ``customers`` (built by bench_features.py when missing)."""
    data = ROOT / ".churn" / "bench" / f"sim-{customers}-{seed}"
    if not (data / "orders.parquet").exists():
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_features.py"), "--customers", str(customers),
                        "--only-simulate"], check=True)
    return data


def last_cutoff(data: Path) -> str:
    """The last monthly cutoff whose 90-day label window is observed (as bench_features uses)."""
    from features.labels import labelled_cutoffs

    tables = {p.stem: p for p in sorted(data.glob("*.parquet")) if p.stem != "truth"}
    return str(labelled_cutoffs(tables, 90)[-1].date())


def timed(command: list[str]) -> dict:
    """Wall seconds and peak resident memory (GB) of one subprocess."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, cwd=ROOT, text=True)
    _pid, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    out, errors = proc.stdout.read(), proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{errors}")
    return {"seconds": seconds, "peak_rss_gb": usage.ru_maxrss / 1024 ** 2, "stdout": out}


def scan(data: Path, customers: int) -> dict:
    """The raw DuckDB scan (bench_features.py's phase, timed inside its process)."""
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_features.py"), "--phase", "scan",
                          "--data", str(data), "--customers", str(customers)], capture_output=True, text=True,
                         check=True, env=ENV, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def features(data: Path, cutoff: str, work: Path, churn: list[str]) -> dict:
    """``churn features`` end to end, as a user runs it."""
    out = work / "features.parquet"
    r = timed([*churn, "features", "--data", str(data), "--cutoff", cutoff, "--out", str(out),
               "--home", str(work / "home")])
    r["rows"] = int(r.pop("stdout").split(" ", 1)[0].replace(",", ""))
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs per step; the table shows the median")
    parser.add_argument("--churn", default=str(CHURN),
                        help="the command to time (default .venv/bin/churn; e.g. a wrapper running an earlier commit)")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        for customers in args.customers:
            data = data_dir(customers)
            cutoff = last_cutoff(data)
            runs = {"scan": [], "features": []}
            for _ in range(args.repeat):
                runs["scan"].append(scan(data, customers))
                runs["features"].append(features(data, cutoff, Path(tmp), shlex.split(args.churn)))
                print(json.dumps({"customers": customers, "cutoff": cutoff, "scan": runs["scan"][-1]["seconds"],
                                  **runs["features"][-1]}), flush=True)
            results[customers] = (cutoff, runs)
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"\n{date}, median of {args.repeat} run(s) (range)\n")
    print("| customers | cutoff | clients | raw scan s | `churn features` s | ratio | peak RSS GB (scan / churn features) |")
    print("|---|---|---|---|---|---|---|")
    for customers, (cutoff, runs) in results.items():
        s = [r["seconds"] for r in runs["scan"]]
        f = [r["seconds"] for r in runs["features"]]
        ratios = [b / a for a, b in zip(s, f)]
        rss_s = statistics.median(r["peak_rss_gb"] for r in runs["scan"])
        rss_f = statistics.median(r["peak_rss_gb"] for r in runs["features"])
        print(f"| {customers:,} | {cutoff} | {runs['features'][0]['rows']:,} | {statistics.median(s):.2f} ({min(s):.2f}-{max(s):.2f}) "
              f"| {statistics.median(f):.2f} ({min(f):.2f}-{max(f):.2f}) | {statistics.median(f) / statistics.median(s):.1f} "
              f"({min(ratios):.1f}-{max(ratios):.1f}) | {rss_s:.2f} / {rss_f:.2f} |")


if __name__ == "__main__":
    main()
