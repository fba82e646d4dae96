"""Dask engine benchmark: the 12-cutoff training set, a model and both lists for millions of
customers on a LocalCluster, against the single-machine path.

The company is simulated in blocks (``--block`` customers, each block its own seed, its ids
prefixed ``B<block>-``), never as one frame: each block's rows are appended to the flat input
(one Parquet file per table, for the single-machine path) and to a sharded input
(``shard=<k>/<table>.parquet``, by the project's hash). Each path runs in its own process:

- ``local``: validation, ``training_data`` at 12 monthly cutoffs, LightGBM on a stratified
  sample of ``--sample`` rows, ``features_for_scoring`` and ``make_lists``;
- ``dask``: the same steps through ``pipelines.engine`` on a LocalCluster of ``--workers``
  processes, the input read as an existing sharded dataset.

Each reports wall time per step, customers per second over the whole run, and peak memory
(VmHWM: the driver's, and each worker process's, read on the workers at the end).

    .venv/bin/python benchmarks/bench_dask.py simulate --customers 1000000 --shards 8 --out .churn/bench-dask/1m
    .venv/bin/python benchmarks/bench_dask.py local --data .churn/bench-dask/1m
    .venv/bin/python benchmarks/bench_dask.py dask --data .churn/bench-dask/1m [--workers 2]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ID_COLUMNS = ("customer_id", "order_id", "complaint_id")


def peak_gb() -> float:
    """This process's peak resident memory (VmHWM), GB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024 ** 2
    return float("nan")


def reset_peak() -> None:
    """Start this process's peak memory afresh (Linux: 5 > /proc/self/clear_refs resets VmHWM)."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def simulate_blocks(customers: int, block: int, shards: int, out: Path, seed: int = 20261203) -> dict:
    """Simulate ``customers`` in blocks into ``out/flat`` and ``out/sharded`` (see the module doc)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from features.shard import canonical_ids, shard_ids
    from features.simulate import simulate

    flat, sharded = out / "flat", out / "sharded"
    for folder in (flat, sharded):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    for k in range(shards):
        (sharded / f"shard={k}").mkdir()
    writers, schemas, rows = {}, {}, {}
    t0 = time.perf_counter()
    for b, start in enumerate(range(0, customers, block)):
        n = min(block, customers - start)
        tables = simulate(n, seed=seed + b, truth_rollouts=0)
        tables.pop("truth", None)
        for name, frame in tables.items():
            frame = frame.assign(**{c: f"B{b:03d}-" + frame[c].astype(str) for c in ID_COLUMNS if c in frame})
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if name not in schemas:
                schemas[name] = pa.schema([pa.field(f.name, pa.string() if pa.types.is_large_string(f.type) else f.type)
                                           for f in table.schema])
                writers[(name, "flat")] = pq.ParquetWriter(flat / f"{name}.parquet", schemas[name], compression="zstd")
                for k in range(shards):
                    writers[(name, k)] = pq.ParquetWriter(sharded / f"shard={k}" / f"{name}.parquet", schemas[name],
                                                          compression="zstd")
            table = table.cast(schemas[name])
            writers[(name, "flat")].write_table(table)
            of = shard_ids(canonical_ids(frame["customer_id"]), shards)
            for k in range(shards):
                writers[(name, k)].write_table(table.take(pa.array(np.flatnonzero(of == k))))
            rows[name] = rows.get(name, 0) + len(frame)
        del tables
        print(f"block {b}: {start + n:,} customers simulated, {time.perf_counter() - t0:.0f} s", flush=True)
    for w in writers.values():
        w.close()
    info = {"customers": customers, "shards": shards, "block": block, "rows": rows,
            "simulate_s": round(time.perf_counter() - t0, 1)}
    (out / "dataset.json").write_text(json.dumps(info, indent=2))
    return info


def _settings(args):
    from pipelines.settings import Settings

    return Settings().with_overrides(**{
        "engine.kind": "dask", "engine.workers": args.workers, "engine.train_sample": args.sample,
        "engine.memory_limit": "0", "train.num_boost_round": args.rounds, "cutoffs.max_cutoffs": 12})


def _fit(frame, plan, settings):
    from features.build import feature_columns
    from models import candidates

    report = candidates.fit_evaluate(frame, plan.split, feature_columns(frame), settings.train.model_params(),
                                     baselines=False, stack=False, horizon_days=settings.labels.horizon_days,
                                     contractual=True)
    return candidates.serving_model(report)


def run_local(args) -> dict:
    from features import build, labels
    from features.inputs import validate_source
    from models import train
    from pipelines import engine

    settings, log, t_all = _settings(args), {}, time.perf_counter()
    out = Path(tempfile.mkdtemp(prefix="bench-dask-local-"))
    try:
        t = time.perf_counter()
        result, _ = validate_source(settings.source, settings.validation, Path(args.data) / "flat", out / "validation")
        log["validate"] = time.perf_counter() - t
        t = time.perf_counter()
        frame, plan = train.training_data(result.sources, horizon_days=90, max_cutoffs=12, config=settings.feature_config())
        log["training set (12 cutoffs)"] = time.perf_counter() - t
        rows = len(frame)
        t = time.perf_counter()
        strata = [frame.groupby(["cutoff", "label"], observed=True).size().to_dict()]
        quotas, _ = engine.sample_quotas([{k: v for k, v in strata[0].items()}], args.sample)
        import numpy as np

        rng, picked = np.random.default_rng([0, 0]), []
        for key, idx in frame.groupby(["cutoff", "label"], observed=True).indices.items():
            n = quotas[0].get(key, 0)
            picked.append(idx if n >= len(idx) else np.sort(rng.choice(idx, n, replace=False)))
        sample = frame.iloc[np.sort(np.concatenate(picked))]
        del frame
        served = _fit(sample, plan, settings)
        log[f"fit LightGBM ({len(sample):,} sampled rows)"] = time.perf_counter() - t
        del sample
        t = time.perf_counter()
        as_of = labels.default_as_of(result.sources)
        features = build.features_for_scoring(result.sources, as_of, config=settings.feature_config(),
                                              channels=build.channel_list(served.inputs)).drop(columns="cutoff")
        lists = engine.one_machine_lists(features, SimpleNamespace(predict=served), served.inputs, as_of=as_of,
                                         version="bench", settings=settings, contractual=True)
        log["score (features, risk, reasons, lists)"] = time.perf_counter() - t
        total = time.perf_counter() - t_all
        return {"path": "local", "steps_s": {k: round(v, 1) for k, v in log.items()}, "total_s": round(total, 1),
                "training_rows": rows, "listed": len(lists.at_risk), "win_back": len(lists.win_back),
                "peak_gb": round(peak_gb(), 2)}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def run_dask(args) -> dict:
    from features import build, labels
    from pipelines import engine

    settings = _settings(args)
    if not args.reshard:
        settings = settings.with_overrides(**{"engine.dataset": str(Path(args.data) / "sharded")})
    else:
        settings = settings.with_overrides(**{"engine.shards": args.reshard})
    log, t_all = {}, time.perf_counter()
    home = Path(tempfile.mkdtemp(prefix="bench-dask-"))
    try:
        phases = {}
        with engine.run(settings.engine, home, "bench") as r:
            base = sorted(round(g, 2) for g in r.client.run(peak_gb).values())

            def phase(name):  # each worker's peak memory during one step
                phases[name] = sorted(round(g, 2) for g in r.client.run(peak_gb).values())
                r.client.run(reset_peak)

            r.client.run(reset_peak)
            t = time.perf_counter()
            v = engine.validate(r, settings, Path(args.data) / "flat", home / "validation")
            log["shard + validate" if args.reshard else "validate"] = time.perf_counter() - t
            phase("validate")
            t = time.perf_counter()
            sample, plan, _ = engine.training_set(r, v, settings)
            log["training set (12 cutoffs) + stratified sample"] = time.perf_counter() - t
            phase("training set")
            t = time.perf_counter()
            served = _fit(sample, plan, settings)
            log[f"fit LightGBM ({len(sample):,} sampled rows, driver)"] = time.perf_counter() - t
            del sample
            t = time.perf_counter()
            as_of = labels.default_as_of(v.tables)
            paths, _ = engine.build_shards(r, v, [as_of], settings.feature_config(),
                                           channels=build.channel_list(served.inputs), scoring=True)
            lists = engine.lists_on_shards(r, paths, SimpleNamespace(predict=served), served.inputs, as_of=as_of,
                                           version="bench", settings=settings, contractual=True)
            log["score (features, risk, reasons, lists)"] = time.perf_counter() - t
            phase("score")
            shards = len(v.parts)
        workers = {"after start": base, **phases}
        total = time.perf_counter() - t_all
        return {"path": "dask", "workers": args.workers, "shards": shards,
                "steps_s": {k: round(v, 1) for k, v in log.items()}, "total_s": round(total, 1),
                "listed": len(lists.at_risk), "win_back": len(lists.win_back), "driver_peak_gb": round(peak_gb(), 2),
                "worker_peak_gb": workers}
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["simulate", "local", "dask"])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--block", type=int, default=250_000)
    parser.add_argument("--shards", type=int, default=8, help="simulate: shards of the sharded input")
    parser.add_argument("--reshard", type=int, default=0, help="dask: shard the flat input into this many shards "
                                                                "in the run instead of reading the sharded input")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if args.what == "simulate":
        print(json.dumps(simulate_blocks(args.customers, args.block, args.shards, args.out), indent=2))
        return
    info = json.loads((Path(args.data) / "dataset.json").read_text())
    out = run_local(args) if args.what == "local" else run_dask(args)
    out["customers"] = info["customers"]
    out["customers_per_s"] = round(info["customers"] / out["total_s"])
    out["load_avg_1m_at_end"] = os.getloadavg()[0]
    print(json.dumps(out, indent=2), flush=True)


if __name__ == "__main__":
    main()
