"""Reading the input from PostgreSQL vs from Parquet files, at 1,000,000 simulated customers.

Uses the feature benchmark's simulation (/work/main/.churn/bench/sim-N-S/ read-only when it
exists, else this tree's .churn/bench/sim-N-S/, simulated when missing), loads it into a
schema of its own (DuckDB writes each Parquet file as CSV, psycopg2 COPYs it in), then times
in separate processes (so each peak memory is its own) ``read_sql_tables`` +
``validate_tables`` from PostgreSQL and ``load_data`` from the Parquet files, checks both
give the same clean tables' row counts, prints a markdown table and drops the schema.

    .venv/bin/python benchmarks/bench_sql.py [--customers 1000000] [--repeat 3] [--url postgresql+psycopg2://postgres@127.0.0.1:5432/test]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLES = ("customers", "orders", "interactions", "nps", "complaints", "cancellations")
_PG_TYPE = {"string": "text", "large_string": "text", "double": "double precision", "float": "real", "int64": "bigint",
            "int32": "integer", "bool": "boolean", "timestamp[us]": "timestamp", "timestamp[ns]": "timestamp"}


def _mem() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024 ** 2
    return float("nan")


def phase(name: str, data: str, url: str, schema: str) -> dict:
    """One measured phase in this process."""
    from features.inputs import read_sql_tables, read_tables, validate_tables
    from features.inputs.config import SourceConfig

    t0 = time.perf_counter()
    if name == "sql":
        raw = read_sql_tables(SourceConfig.model_validate({"kind": "sql", "url": url, "schema": schema}))
    else:
        raw = read_tables(Path(data))
    t_read = time.perf_counter() - t0
    rss_read = _mem()
    result = validate_tables(raw)
    return {"phase": name, "read_seconds": t_read, "seconds": time.perf_counter() - t0, "read_peak_rss_gb": rss_read,
            "peak_rss_gb": _mem(), "rows": int(result.summary["rows_read"].sum()),
            "kept": {t: len(f) for t, f in result.tables.items()}}


def load_into_postgres(data: Path, url: str, schema: str) -> float:
    """Each Parquet table into ``schema`` (unlogged tables, COPY from DuckDB's CSV); returns seconds."""
    import duckdb
    import pyarrow.parquet as pq
    import sqlalchemy as sa

    t0 = time.perf_counter()
    engine = sa.create_engine(url)
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    with tempfile.TemporaryDirectory(prefix="bench-sql-") as tmp, engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        cursor = conn.connection.dbapi_connection.cursor()
        for table in TABLES:
            path = data / f"{table}.parquet"
            if not path.exists():
                continue
            columns = ", ".join(f'"{f.name}" {_PG_TYPE[str(f.type)]}' for f in pq.read_schema(path))
            cursor.execute(f"CREATE UNLOGGED TABLE {schema}.{table} ({columns})")
            csv = Path(tmp) / f"{table}.csv"
            con.execute(f"COPY (SELECT * FROM read_parquet('{path}')) TO '{csv}' (HEADER false)")
            with open(csv, "rb") as f:
                cursor.copy_expert(f"COPY {schema}.{table} FROM STDIN WITH (FORMAT csv)", f, size=1 << 20)
            csv.unlink()
        cursor.execute(f"ANALYZE {schema}.orders")
    engine.dispose()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each phase (interleaved); the table shows the median")
    parser.add_argument("--url", default="postgresql+psycopg2://postgres@127.0.0.1:5432/test")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--schema", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.data, args.url, args.schema)))
        return
    name = f"sim-{args.customers}-{args.seed}"
    shared = Path("/work/main/.churn/bench") / name
    data = shared if (shared / "orders.parquet").exists() else ROOT / ".churn" / "bench" / name
    if not (data / "orders.parquet").exists():
        from features.simulate import simulate, write_dataset

        t0 = time.perf_counter()
        write_dataset(simulate(args.customers, args.seed, progress=True), data)
        print(f"simulated {args.customers:,} customers into {data} in {time.perf_counter() - t0:.0f} s", flush=True)
    schema = f"churn_bench_{uuid.uuid4().hex[:10]}"
    try:
        loaded = load_into_postgres(data, args.url, schema)
        print(f"loaded {data} into schema {schema} in {loaded:.0f} s", flush=True)
        runs: dict[str, list[dict]] = {}
        for _ in range(max(args.repeat, 1)):
            for which in ("sql", "files"):
                out = subprocess.run([sys.executable, __file__, "--phase", which, "--data", str(data), "--url", args.url,
                                      "--schema", schema], capture_output=True, text=True, check=True)
                runs.setdefault(which, []).append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(json.dumps(runs[which][-1]), flush=True)
    finally:
        import sqlalchemy as sa

        engine = sa.create_engine(args.url)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        engine.dispose()
    if runs["sql"][0]["kept"] != runs["files"][0]["kept"]:
        raise SystemExit(f"the clean tables differ: {runs['sql'][0]['kept']} vs {runs['files'][0]['kept']}")
    med = {w: {k: statistics.median(r[k] for r in rs) for k in ("read_seconds", "seconds", "read_peak_rss_gb", "peak_rss_gb")}
           for w, rs in runs.items()}
    repeat = max(args.repeat, 1)
    print(f"\n| input ({args.customers:,} customers, {runs['sql'][0]['rows']:,} rows; "
          f"{'median of ' + str(repeat) + ' runs' if repeat > 1 else 'one run'}) | read s | read + validate s | peak RSS GB |")
    print("|---|---|---|---|")
    for label, w in (("PostgreSQL: `read_sql_tables` (COPY streamed into Arrow) + `validate_tables`", "sql"),
                     ("Parquet files: `load_data` (`read_tables` + `validate_tables`)", "files")):
        m = med[w]
        print(f"| {label} | {m['read_seconds']:.1f} | {m['seconds']:.1f} | {m['peak_rss_gb']:.2f} |")
    print(f"\nloading the schema (DuckDB CSV + COPY FROM, unlogged tables): {loaded:.0f} s")


if __name__ == "__main__":
    main()
