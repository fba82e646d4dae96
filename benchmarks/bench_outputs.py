"""Publishing a scoring's files as one set: what it costs at size.

A synthetic retention list of --rows clients (the 1,000,000-customer company's 463,351 by
default; 50,000 explained rows with reasons) is written by ``report.write_outputs`` twice
into a fresh folder: a new date (the set moved into history/<as_of>/ and shown at OUT/ by
one link swap), then the same date again (the two history folders exchanged). Reported
beside it: the parts the set adds (fsync of every file, the sha256 of every output for
lineage.json) and the part it removes (the copy of every file from history/<as_of>/ to OUT/
that the file-by-file publication made), and the input fingerprint of the 1,000,000-customer
data folder (sha256 of its files' bytes) when it exists.

    .venv/bin/python benchmarks/bench_outputs.py [--rows 463351] [--data .churn/bench/sim-1000000-1]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def synthetic_lists(n: int, explained: int, as_of: pd.Timestamp):
    from models.score import build_at_risk

    rng = np.random.default_rng(0)
    ids = np.char.add("C", np.arange(n).astype(str)).astype(object)
    groups = np.array(["complaints", "nps", "purchases", "contacts"], dtype=object)
    scored = pd.DataFrame({"customer_id": ids, "risk": rng.beta(2, 5, n),
                           "reason_group_1": groups[rng.integers(0, 4, n)], "reason_group_2": groups[rng.integers(0, 4, n)],
                           "reason_group_3": None})
    scored.loc[explained:, ["reason_group_1", "reason_group_2"]] = None
    features = pd.DataFrame({"customer_id": ids, "amount_365d": rng.uniform(10, 900, n),
                             "days_since_last_order": rng.integers(1, 300, n).astype(float),
                             "orders_total": rng.integers(1, 40, n).astype(float), "tenure_days": 400.0,
                             "complaints_open": rng.integers(0, 3, n).astype(float),
                             "oldest_open_complaint_days": 9.0, "nps_last_score": rng.integers(0, 11, n).astype(float),
                             "lifecycle_stage": "regular", "segment": "smb"})
    return build_at_risk(scored, features, as_of=as_of, model_version="1")


def timed(label: str, fn, rows: list):
    t0 = time.perf_counter()
    out = fn()
    rows.append((label, time.perf_counter() - t0))
    print(f"{label}: {rows[-1][1]:.2f} s", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=463_351)
    parser.add_argument("--explained", type=int, default=50_000)
    parser.add_argument("--data", type=Path, default=ROOT / ".churn" / "bench" / "sim-1000000-1")
    args = parser.parse_args()
    from models import history, lineage, report

    as_of = pd.Timestamp("2025-12-31")
    at_risk = synthetic_lists(args.rows, args.explained, as_of)
    out = Path(tempfile.mkdtemp(prefix="bench-outputs-"))
    rows: list = []
    try:
        timed(f"write_outputs, a new date ({len(at_risk):,} rows): every file, lineage.json, fsync, move, link swap",
              lambda: report.write_outputs(at_risk, out, model_version="1", metrics={}, as_of=as_of), rows)
        timed("write_outputs, the same date again (history folders exchanged)",
              lambda: report.write_outputs(at_risk, out, model_version="1", metrics={}, as_of=as_of), rows)
        kept = history.history_dir(out, as_of)
        files = lineage.outputs_written(kept)
        size = sum(f["bytes"] for f in files)
        timed(f"  of which: sha256 of the {len(files)} outputs ({size / 1e6:,.0f} MB) for lineage.json",
              lambda: lineage.outputs_written(kept), rows)
        copies = out / "copies"
        copies.mkdir()
        timed("what the set no longer does: copy every file from history/<as_of>/ to OUT/",
              lambda: [shutil.copyfile(kept / f["path"], copies / Path(f["path"]).name) for f in files
                       if "/" not in f["path"]], rows)
        timed(f"fsync of {size / 1e6:,.0f} MB just written (the copies), as the set is flushed before it is published",
              lambda: history.sync_tree(copies), rows)
        if (args.data / "orders.parquet").is_file():
            data = sorted(p for p in args.data.iterdir() if p.is_file())
            mb = sum(p.stat().st_size for p in data) / 1e6
            timed(f"input fingerprint: sha256 of the {len(data)} files of {args.data.name} ({mb:,.0f} MB)",
                  lambda: [lineage.file_sha256(p) for p in data], rows)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    print("\n| step | seconds |\n|---|---|")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
