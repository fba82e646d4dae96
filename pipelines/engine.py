"""The engine switch: the same verbs on a Dask cluster, with the same answers.

``engine.kind: dask`` (``--engine dask``) splits the customers into ``engine.shards`` shards by
a stable hash of customer_id (``features.shard``) and runs each shard's validation, features,
labels, scores and reasons as a Dask task with the single-machine engine inside it. What is
global is computed once here and handed to every shard:

- the end of the data and the cutoffs (DuckDB over every shard's validated files at once);
- the interaction channels that get their own features (counts added over the shards);
- the BG/NBD parameters of each cutoff (fitted once on the shards' inputs put back in the
  single-machine order: the same sample, the same parameters);
- the quarantine and the reconciliation (added over the shards), and the gate on them;
- at scoring, the one-time buyers' usual gap (a median over every client), which clients
  get reasons (the top of the whole list), the rank and the tiers (the merged list).

So a shard's features, labels, risks and reasons are exactly those of the single-machine
path for its customers. Training runs on one machine: on the stacked training set, or on a
sample of it stratified by cutoff and label (``engine.train_sample`` rows), said in the
model card.

Without ``engine.scheduler`` a ``dask.distributed.LocalCluster`` of ``engine.workers``
processes (one thread each, on 127.0.0.1, no dashboard) is started for the verb and closed
when it ends, also on an error or Ctrl-C. With an address the cluster is the user's: it is
left running, and the run folder (under ``--home``) must be on storage every worker sees.
Inside a Prefect flow run with a Prefect API server, every shard's step is a Prefect task run
(``<step>-shard-<k>``) of a sub-flow run whose task runner is ``prefect_dask.DaskTaskRunner`` on
this same cluster; elsewhere (a verb in a terminal, Prefect's temporary server) a plain Dask
task (``Run.map``). The intermediate files of a run live in ``<home>/runs/<verb>-<time>/``: the shards written
from the input (``input/``, removed at the end), the validated shards (``validated/``, kept
for inspection) and each shard's feature table (``work/``, removed at the end).
"""
from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features import shard as shards_
from features.config import FeatureConfig
from features.inputs import ContractError, ValidatedData
from features.io import write_atomic
from pipelines.orchestration import flow
from pipelines.settings import EngineSettings, Settings



# -- the cluster ----------------------------------------------------------------------------------

@contextlib.contextmanager
def dask_client(engine: EngineSettings) -> Iterator:
    """A ``distributed.Client``: on ``engine.scheduler``, or on a LocalCluster of
    ``engine.workers`` processes started here and closed on leaving (error, Ctrl-C included).
    ``distributed``'s own INFO lines (clients connecting, workers closing) are kept out of the
    verb's log meanwhile: Prefect's console handler would print them."""
    logger = logging.getLogger("distributed")
    level = logger.level
    try:
        with _client(engine) as client:
            logger.setLevel(max(logger.level, logging.WARNING))  # after the start: LocalCluster sets it too
            yield client
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _client(engine: EngineSettings) -> Iterator:
    from distributed import Client, LocalCluster

    if engine.scheduler:
        try:
            client = Client(engine.scheduler, timeout="30s")
        except OSError as exc:
            raise ValueError(f"engine.scheduler {engine.scheduler}: no Dask scheduler answers there ({exc}); "
                             "start one (dask scheduler) or leave engine.scheduler empty for a local cluster") from exc
        try:
            yield client
        finally:
            client.close()
        return
    threads = str(engine.threads)
    env = {"OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    with LocalCluster(n_workers=engine.workers, processes=True, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None, memory_limit=engine.memory_limit, silence_logs=logging.ERROR,
                      env=env, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},  # its HTTP endpoint on a free port
                      ) as cluster, Client(cluster) as client:
        yield client


@contextlib.contextmanager
def bounded_threads(n: int) -> Iterator[None]:
    """Inside one shard's task: NumPy / BLAS / OpenMP pools (threadpoolctl) and every DuckDB
    database the engine opens in this process (``duckdb.connect`` given ``threads`` by
    default) use at most ``n`` threads, so that workers x threads stays within the cores."""
    import duckdb
    from threadpoolctl import threadpool_limits

    plain = duckdb.connect

    def connect(database=":memory:", read_only=False, config=None, **kwargs):
        return plain(database, read_only, {"threads": n, **(config or {})}, **kwargs)

    duckdb.connect = connect
    try:
        with threadpool_limits(n):
            yield
    finally:
        duckdb.connect = plain


def _task(threads: int, fn: Callable, *args, **kwargs):
    """Run one shard's function on a worker with the engine's threads bounded."""
    with bounded_threads(threads):
        return fn(*args, **kwargs)


def step_name(fn: Callable) -> str:
    """The name of a per-shard function as a step: ``_validate_shard`` -> ``validate``,
    ``_features_pass`` -> ``features-pass``."""
    name = getattr(fn, "__name__", "").strip("_")
    name = name[:-len("_shard")] if name.endswith("_shard") else name
    return name.replace("_", "-") or "shard"


def _shard_task_run(shard: int, threads: int, fn: Callable, args: tuple, kwargs: dict):
    """The body of shard ``shard``'s Prefect task run (``<step>-shard-<shard>``) on a worker:
    ``_task``. The keyword arguments scattered by ``Run.map`` arrive resolved by Dask."""
    return _task(threads, fn, *args, **kwargs)


def gather_releasing(futures: list) -> list:
    """The futures' results in order, each fetched as soon as its task ends and then released,
    so that a worker holds a finished shard's result only until the driver has it (gathering
    all at the end kept every shard's list rows on its worker until the last shard ended)."""
    from distributed import as_completed

    position = {future.key: i for i, future in enumerate(futures)}
    results: list = [None] * len(futures)
    for future in as_completed(futures):
        results[position[future.key]] = future.result()
        future.release()
    return results


class Run:
    """One verb's run on the cluster: the client, the engine settings and the run folder."""

    def __init__(self, client, engine: EngineSettings, folder: Path):
        self.client, self.engine, self.folder = client, engine, Path(folder)
        self._said_why = False

    def map(self, fn: Callable, *iterables, **kwargs) -> list:
        """``fn`` over the shards, results in order. The keyword arguments are the same for
        every shard: anything bigger than a number is sent to the workers once (scattered),
        not once per task.

        Inside a Prefect flow run on a Prefect server (``task_runs``) each shard is a Prefect
        task run ``<step>-shard-<k>`` of a sub-flow ``<step>-shards`` whose task runner is
        ``prefect_dask.DaskTaskRunner`` on this run's cluster; otherwise a plain Dask task
        (``client.map``, pure=False: every run computes). The same function runs on the same
        workers either way, so the results are the same."""
        from distributed import Future

        shared = {}
        for name, value in kwargs.items():
            if isinstance(value, (Future, str, int, float, bool, type(None), Path)):
                shared[name] = value
            else:
                [shared[name]] = self.client.scatter([value], broadcast=True, hash=False)
        if self.task_runs():
            return self._map_task_runs(fn, list(zip(*iterables)), shared)
        futures = self.client.map(_task, [self.engine.threads] * len(iterables[0]), [fn] * len(iterables[0]),
                                  *iterables, pure=False, **shared)
        return gather_releasing(futures)

    def task_runs(self) -> bool:
        """Whether the shards run as Prefect task runs: inside a flow run with a Prefect API
        server configured (``PREFECT_API_URL``, a profile, a test harness). Under Prefect's
        temporary local server they do not (every worker process would start a temporary
        server of its own): the run's log says so once."""
        from pipelines.orchestration import orchestrated, run_logger, server_configured

        if not orchestrated():
            return False
        if server_configured():
            return True
        if not self._said_why:
            self._said_why = True
            run_logger().info("engine dask: the shards run as plain Dask tasks, not as Prefect task runs: without "
                              "PREFECT_API_URL every Dask worker process would start a temporary Prefect server of "
                              "its own (set PREFECT_API_URL to a Prefect server to see each shard as a task run)")
        return False

    def _map_task_runs(self, fn: Callable, calls: list[tuple], shared: dict) -> list:
        """``fn`` over ``calls`` (one argument tuple per shard) as the Prefect task runs of a
        sub-flow run on this cluster (``DaskTaskRunner(address=<its scheduler>)``): never
        cached, results not persisted (they travel back through Dask as today)."""
        from prefect import flow, task
        from prefect.cache_policies import NO_CACHE
        from prefect_dask import DaskTaskRunner

        step, threads = step_name(fn), self.engine.threads
        shard_task = task(_shard_task_run, name=f"{step}-shard", task_run_name=f"{step}-shard-{{shard}}",
                          cache_policy=NO_CACHE, persist_result=False)

        def shards(step: str, shards: int) -> list:
            futures = [shard_task.submit(k, threads, fn, args, shared) for k, args in enumerate(calls)]
            return [f.result() for f in futures]

        sub = flow(shards, name=f"{step}-shards", flow_run_name=f"{step}-shards",
                   task_runner=DaskTaskRunner(address=self.client.scheduler.address), persist_result=False,
                   validate_parameters=False)
        return sub(step, len(calls))


@contextlib.contextmanager
def run(engine: EngineSettings, home: Path, verb: str) -> Iterator[Run]:
    """The cluster and a fresh run folder ``<home>/runs/<verb>-<UTC time>``; the shards written
    from the input and the shards' feature tables are removed on leaving."""
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%S%f")
    folder = Path(home).resolve() / "runs" / f"{verb}-{stamp}"
    folder.mkdir(parents=True, exist_ok=False)
    try:
        with dask_client(engine) as client:
            yield Run(client, engine, folder)
    finally:
        for scratch in ("input", "work"):
            shutil.rmtree(folder / scratch, ignore_errors=True)


# -- validation -----------------------------------------------------------------------------------

@dataclass
class Validated:
    """The validation of every shard: the merged result (quarantine and reconciliation over
    the shards), each shard's clean tables, and their globs for the global queries."""
    result: ValidatedData
    parts: list[shards_.ShardValidation]

    @property
    def tables(self) -> dict[str, str]:
        return shards_.shard_globs(self.parts)

    @property
    def shard_tables(self) -> list[dict[str, str]]:
        return [p.tables for p in self.parts]

    def fingerprint(self) -> dict:
        return shards_.fingerprint(self.parts)


def validate(r: Run, settings: Settings, data_dir: Path | None, out_dir: Path,
             data_end: pd.Timestamp | None = None) -> Validated:
    """Shard the input (or open ``engine.dataset``), validate every shard on the cluster, write
    the merged quarantine and summary to ``out_dir`` (``write_quarantine``), apply the gate
    (``ContractError`` as on one machine). ``data_end``: the extract's time (default: now)."""
    from features.inputs import gate_problems, parse_iso, read_source, write_quarantine
    from features.inputs.quarantine import _as_data_end

    engine = settings.engine
    if engine.dataset:
        sharded = shards_.shard_folders(engine.dataset)
    else:
        raw = read_source(settings.source, data_dir)
        sharded = shards_.write_shards(raw, r.folder / "input", engine.shards, settings.source.ids)
        del raw
    n = sharded.shards
    data_end = _as_data_end(data_end)  # the extract's time, one for every shard
    earliest = parse_iso(settings.validation.earliest, "validation.earliest")
    parts = r.map(_validate_shard, sharded.folders, list(range(n)), shards=n, source=settings.source,
                  out_root=r.folder / "validated", data_end=data_end, earliest=earliest,
                  check_placement=bool(engine.dataset))
    fatal = [line for p in parts if isinstance(p, list) for line in p]
    if fatal:
        raise ContractError(list(dict.fromkeys(fatal)))
    result = shards_.merge_validations(parts)
    problems = gate_problems(result, settings.validation)
    write_quarantine(result, Path(out_dir))
    if problems:
        raise ContractError(problems, result=result)
    return Validated(result, parts)


def _validate_shard(folder: str, shard: int, **kwargs) -> shards_.ShardValidation | list[str]:
    """``validate_shard``, its fatal problems returned as lines (an exception crosses processes
    as its message only)."""
    try:
        return shards_.validate_shard(folder, shard, **kwargs)
    except ContractError as exc:
        return exc.problems


# -- features and labels --------------------------------------------------------------------------

def _features_pass(tables: dict, cutoffs: list, path: str, *, config: FeatureConfig, channels, horizon,
                   scoring: bool) -> str:
    """One shard's features without the BG/NBD summaries, kept in ``path``; the BG/NBD inputs
    beside it (``<path>.btyd.parquet``) for the global fit."""
    frame = shards_.shard_features(tables, cutoffs, config, channels=channels, label_horizon_days=horizon,
                                   scoring=scoring)
    _save(frame, path)
    inputs = frame[["cutoff", "customer_id", "btyd_x", "btyd_t_x", "btyd_T"]] if "btyd_x" in frame else frame[["cutoff", "customer_id"]]
    write_atomic(Path(path + ".btyd.parquet"), lambda p: inputs.to_parquet(p, index=False, row_group_size=1 << 18))
    return path


def _btyd_pass(path: str, config: FeatureConfig, fitted: dict) -> dict:
    """A shard's features with the BG/NBD summaries of the whole base; returns its rows per
    (cutoff, label) (the strata of the training sample)."""
    frame = shards_.add_btyd(_load(path), config, fitted)
    _save(frame, path)
    keys = ["cutoff", "label"] if "label" in frame else ["cutoff"]
    return {k if isinstance(k, tuple) else (k,): int(n) for k, n in frame.groupby(keys, observed=True).size().items()}


def _save(frame: pd.DataFrame, path: str) -> None:
    # pickle: the shard's frame exactly as the engine built it (categories, dtypes), for the next pass
    write_atomic(Path(path), lambda p: frame.to_pickle(p))


def _load(path: str) -> pd.DataFrame:
    return pd.read_pickle(path)


def _btyd_inputs(paths: Sequence[str], cutoff: pd.Timestamp) -> pd.DataFrame:
    import pyarrow.parquet as pq

    when = pd.Timestamp(cutoff)
    return pd.concat([pq.read_table(p + ".btyd.parquet", filters=[("cutoff", "==", when)]).to_pandas() for p in paths],
                     ignore_index=True)


def build_shards(r: Run, v: Validated, cutoffs: list[pd.Timestamp], config: FeatureConfig, *,
                 channels: Sequence[str] | None, horizon_days: int | None = None,
                 scoring: bool = False) -> tuple[list[str], list[dict]]:
    """Every shard's features (and labels with ``horizon_days``) at ``cutoffs``, kept on disk:
    (the shards' files, their rows per stratum). ``channels`` None: chosen here over all the
    shards. BG/NBD: fitted once per cutoff on every shard's inputs, then applied per shard."""
    from features import build

    if channels is None:
        counts = r.map(shards_.channel_counts, v.shard_tables, last_cutoff=max(cutoffs))
        channels = build.choose_channels(*shards_.sum_channel_counts(counts), config)
    (r.folder / "work").mkdir(exist_ok=True)
    paths = [str(r.folder / "work" / f"features_{k}.pkl") for k in range(len(v.parts))]
    r.map(_features_pass, v.shard_tables, [list(cutoffs)] * len(paths), paths, config=config, channels=list(channels),
          horizon=horizon_days, scoring=scoring)
    fitted = {}
    if config.btyd:
        for cutoff in sorted(pd.to_datetime(list(cutoffs))):
            fitted.update(shards_.fit_btyd_across({cutoff: [_btyd_inputs(paths, cutoff)]}, config))
    strata = r.map(_btyd_pass, paths, config=config, fitted=fitted)
    return paths, strata


def collect(paths: Sequence[str]) -> pd.DataFrame:
    """The shards' tables as one, in the single-machine order (the whole table in memory)."""
    return shards_.concat_shards([_load(p) for p in paths])


def sample_quotas(strata: Sequence[dict], size: int) -> tuple[list[dict], int]:
    """Rows to draw from each shard's (cutoff, label) strata so that the sample holds about
    ``size`` rows in the proportions of the whole training set (largest remainders within each
    stratum, so a stratum's rows add up exactly); returns the quotas and the set's size."""
    total = sum(sum(s.values()) for s in strata)
    if total <= size:
        return [dict(s) for s in strata], total
    share = size / total
    quotas = [{} for _ in strata]
    for key in sorted({k for s in strata for k in s}):
        counts = np.array([s.get(key, 0) for s in strata], dtype=np.int64)
        want = int(round(counts.sum() * share))
        exact = counts * share
        take = np.floor(exact).astype(np.int64)
        extra = want - int(take.sum())
        if extra > 0:
            take[np.argsort(-(exact - take), kind="stable")[:extra]] += 1
        for k, n in enumerate(np.minimum(take, counts)):
            quotas[k][key] = int(n)
    return quotas, total


def _sample_shard(path: str, quota: dict, shard: int, *, seed: int) -> pd.DataFrame:
    """``quota`` rows of each (cutoff, label) stratum of one shard's table, drawn with a seed of its own."""
    frame = _load(path)
    keys = ["cutoff", "label"] if "label" in frame else ["cutoff"]
    rng = np.random.default_rng([seed, shard])
    picked = []
    for key, rows in frame.groupby(keys, observed=True).indices.items():
        n = quota.get(key if isinstance(key, tuple) else (key,), 0)
        picked.append(rows if n >= len(rows) else np.sort(rng.choice(rows, n, replace=False)))
    return frame.iloc[np.sort(np.concatenate(picked))] if picked else frame.iloc[:0]


def training_set(r: Run, v: Validated, settings: Settings) -> tuple[pd.DataFrame, object, list[str]]:
    """The training set as ``models.train.training_data`` plans it, built shard by shard, and
    what the model is trained on: all of it, or a sample stratified by cutoff and label of
    ``engine.train_sample`` rows (said in the notes, which the model card lists)."""
    from features.labels import default_as_of
    from models import train

    tables, config = v.tables, settings.feature_config()
    horizon = settings.labels.horizon_days
    plan = train.plan_cutoffs(tables, horizon, frequency=settings.cutoffs.frequency,
                              max_cutoffs=settings.cutoffs.max_cutoffs, valid_cutoffs=settings.train.valid_cutoffs)
    labelled = bool(plan.cutoffs)
    cutoffs = plan.cutoffs if labelled else [default_as_of(tables)]
    paths, strata = build_shards(r, v, cutoffs, config, channels=None, horizon_days=horizon if labelled else None)
    quotas, total = sample_quotas(strata, settings.engine.train_sample)
    parts = r.map(_sample_shard, paths, quotas, list(range(len(paths))), seed=settings.engine.seed)
    frame = shards_.concat_shards(parts)
    del parts
    notes = [f"engine dask: {len(paths)} shards of the customers (stable hash of customer_id) on "
             f"{len(r.client.scheduler_info()['workers'])} worker(s)"]
    if len(frame) < total:
        notes.append(f"trained on a sample of {len(frame):,} of the {total:,} rows of the training set (engine."
                     f"train_sample), stratified by cutoff and label (seed {settings.engine.seed}); the metrics are measured "
                     "on the sampled rows of the test cutoff")
    if labelled:
        plan = train.adapt_split(frame, plan, horizon)
    else:
        plan.notes.append(f"no cutoff can be labelled with a {horizon}-day horizon: the champion is set on the "
                          f"clients as of {cutoffs[0].date()} without any outcome to calibrate or measure it on")
    plan.notes[:0] = notes
    return frame, plan, notes


def train_inputs(data_dir: Path | None, settings: Settings, home: Path):
    """``train_flow``'s inputs on the cluster: (the merged validation, the validated tables as
    globs, the training frame, the cutoff plan, the data fingerprint)."""
    with run(settings.engine, home, "train") as r:
        v = validate(r, settings, data_dir, Path(home) / "validation")
        frame, plan, _notes = training_set(r, v, settings)
        return v.result, v.tables, frame, plan, v.fingerprint()


def features_to_file(data_dir: Path | None, settings: Settings, home: Path, cutoffs: list[pd.Timestamp], out: Path,
                     labels: bool) -> tuple[pd.DataFrame, int, list[pd.Timestamp], list[str]]:
    """``churn features --engine dask``: the feature table (with labels: a training set, only the
    cutoffs whose horizon is observed) written shard by shard into ``out`` (.parquet or .csv;
    rows grouped by shard: sort by cutoff and customer_id for the single-machine order).
    Returns (the merged validation's summary, rows, the cutoffs kept, warnings)."""
    from features import build, labels as labels_

    with run(settings.engine, home, "features") as r:
        v = validate(r, settings, data_dir, Path(home) / "validation")
        tables, horizon = v.tables, settings.labels.horizon_days
        warnings: list[str] = []
        if labels:
            kept = labels_._observed(tables, cutoffs, horizon)
        else:
            for c in cutoffs:
                warnings += labels_.check_as_of(tables, c, horizon, name="--cutoff")
            kept = list(cutoffs)
        warnings += [f"skipped feature group {g}: {why}" for g, why in build.skipped_groups(tables).items()]
        if not kept:
            rows = _write_shards_file([], out)
        else:
            paths, strata = build_shards(r, v, kept, settings.feature_config(), channels=None,
                                         horizon_days=horizon if labels else None)
            rows = _write_shards_file(paths, out)
        return v.result, rows, kept, warnings


# ``churn features --engine dask`` as a flow: through Prefect where there is a server, so that its
# shards are task runs (``Run.map``); plain Python otherwise (``pipelines.orchestration.run_flow``)
features_flow = flow(features_to_file, name="features")


def _write_shards_file(paths: Sequence[str], out: Path) -> int:
    """The shards' tables into one Parquet or CSV file, a shard at a time (categories as text,
    as ``features.io.write_frame`` writes them), atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    if out.suffix not in (".parquet", ".csv"):
        raise ValueError(f"cannot write {out}: use a .parquet or .csv file name")
    rows = 0

    def frames():
        for p in paths:
            f = _load(p)
            cats = [c for c in f.columns if isinstance(f[c].dtype, pd.CategoricalDtype)]
            yield f.assign(**{c: f[c].astype("object").where(f[c].notna(), None) for c in cats})

    def write(tmp: Path) -> None:
        nonlocal rows
        schema = writer = None
        for i, f in enumerate(frames()):
            rows += len(f)
            if out.suffix == ".csv":
                f.to_csv(tmp, index=False, mode="w" if i == 0 else "a", header=i == 0)
                continue
            table = pa.Table.from_pandas(f, preserve_index=False)
            if schema is None:
                schema = pa.schema([pa.field(fl.name, pa.string() if pa.types.is_null(fl.type) else fl.type)
                                    for fl in table.schema]).remove_metadata()
                writer = pq.ParquetWriter(tmp, schema, compression="zstd")
            writer.write_table(table.cast(schema))
        if writer is not None:
            writer.close()
        elif out.suffix == ".parquet" or not paths:
            from features.build import _empty

            _empty().to_parquet(tmp, index=False) if out.suffix == ".parquet" else _empty().to_csv(tmp, index=False)

    write_atomic(out, write)
    return rows


# -- scoring --------------------------------------------------------------------------------------

def _predictor(model, wanted: set[str]):
    """The served model as ``models.score.make_lists`` calls it (the columns it was trained on)."""
    from models import registry

    return lambda frame: model.predict(registry.to_model_input(frame[[c for c in frame.columns if c in wanted]]))


def _gaps(path: str) -> np.ndarray:
    from models import score

    return score.known_gaps(_load(path))


def _score_shard(path: str, model, wanted: set[str], rule, contractual: bool, with_cancellations: bool,
                 fallback: float) -> pd.DataFrame:
    """A shard's split (the lapse rule) and first scoring: keeps the kept clients' features and
    risks for the reasons; returns their (customer_id, risk, amount_365d) and the lapsed
    clients' known gaps (``win_back_rows`` needs their median)."""
    from models import score

    features = _load(path).drop(columns="cutoff")
    lapsed = score.split_lists(features, rule, contractual=contractual, rule_with_cancellations=with_cancellations,
                               fallback_gap=fallback)
    keep = pd.isna(lapsed)
    kept = features[keep].reset_index(drop=True)
    first = _predictor(model, wanted)(kept.assign(explain=False))
    _save(kept, path + ".kept")
    _save(first, path + ".first")
    _save(features[~keep].reset_index(drop=True).assign(_lapse=lapsed[~keep]), path + ".lapsed")
    revenue = kept["amount_365d"] if "amount_365d" in kept else pd.Series(0.0, index=kept.index)
    return pd.DataFrame({"customer_id": kept["customer_id"].to_numpy(), "risk": first["risk"].to_numpy(),
                         "revenue": revenue.to_numpy()}), score.known_gaps(features[~keep])


def _list_shard(path: str, explain_ids: set, driver_ids: list, model, wanted: set[str], as_of, version, actions,
                top_k: int, horizon_days: int, risk_bounds, lapsed_gap: float):
    """A shard's rows of both lists: TreeSHAP reasons for its clients among ``explain_ids``,
    the per-client columns (``at_risk_rows``, ``win_back_rows``), and the leading reasons of
    its clients among ``driver_ids`` (the drivers across the base)."""
    from models import score

    predict = _predictor(model, wanted)
    kept, first = _load(path + ".kept"), _load(path + ".first")
    explain = kept["customer_id"].isin(explain_ids).to_numpy()
    scored = score.explain_rows(predict, kept, first, explain)
    at_risk = score.at_risk_rows(scored, kept, as_of=as_of, model_version=version, actions=actions, top_k=top_k,
                                 horizon_days=horizon_days, risk_bounds=risk_bounds)
    lapsed = _load(path + ".lapsed")
    win_back = score.win_back_rows(lapsed.drop(columns="_lapse"), lapsed["_lapse"].to_numpy(dtype=object), as_of=as_of,
                                   actions=actions, fallback_gap=lapsed_gap)
    sample = kept[kept["customer_id"].isin(set(driver_ids))]
    lead = score.leading_reasons(predict, sample) if len(sample) else pd.Series(dtype=object)
    return at_risk, win_back, pd.Series(lead.to_numpy(dtype=object), index=sample["customer_id"].to_numpy())


def fits_on_its_batch(model) -> bool:
    """Whether the served model fits something on the rows it scores (a buy-till-you-die
    candidate, alone or in a stack, fits its parameters on the scored clients' own history):
    its risks then depend on which clients are scored together, so it cannot be scored shard
    by shard. True when the model cannot be looked into."""
    inner = model
    if hasattr(model, "unwrap_python_model"):
        try:
            inner = model.unwrap_python_model()
        except Exception:  # noqa: BLE001 - a model of another flavour: assume the worst
            return True
    serving = getattr(inner, "func", inner)
    serving = getattr(serving, "__wrapped__", serving)
    scorers = getattr(serving, "scorers", None)
    if not isinstance(scorers, dict):
        return True
    return any(getattr(s, "kind", None) == "function" for s in scorers.values())


def lists_on_shards(r: Run, paths: Sequence[str], model, inputs: Sequence[str], *, as_of: pd.Timestamp,
                    version: str | None, settings: Settings, contractual: bool) -> tuple:
    """Both lists from the shards' scoring features (``build_shards``), as
    ``models.score.make_lists`` makes them on one machine: per shard the lapse rule, the risk,
    TreeSHAP for the clients chosen over the whole list and the per-client columns; once, the
    one-time buyers' usual gaps, who gets reasons, the rank, the tiers and the drivers.
    ``model``: ``.predict(frame)`` as the served model; ``inputs``: its input columns."""
    from models import score

    s, horizon = settings.score, settings.labels.horizon_days
    wanted = set(inputs) | {"customer_id", "explain"}
    rule = s.lapse_rule(horizon)
    fallback = score.median_gap(np.concatenate(r.map(_gaps, paths)))
    [model_f] = r.client.scatter([model], broadcast=True)
    first = r.map(_score_shard, paths, model=model_f, wanted=wanted, rule=rule, contractual=contractual,
                  with_cancellations=s.lapsed.with_cancellations, fallback=fallback)
    risks = pd.concat([f for f, _ in first], ignore_index=True)
    risks = risks.iloc[np.argsort(risks["customer_id"].to_numpy(dtype=object), kind="stable")].reset_index(drop=True)
    lapsed_gap = score.median_gap(np.concatenate([g for _, g in first]))
    explain = score.rows_to_explain(risks["risk"], risks["revenue"], rank_by=s.rank_by,
                                    actionable_share=s.actionable_share, explain_all=s.explain_all,
                                    risk_bounds=(s.risk_floor, s.risk_ceiling), max_rows=s.explain_max,
                                    min_rows=s.explain_min)
    explain_ids = set(risks.loc[explain, "customer_id"])
    driver_ids = risks["customer_id"].iloc[score.driver_sample(len(risks))].tolist()
    parts = r.map(_list_shard, paths, explain_ids=explain_ids, driver_ids=driver_ids, model=model_f, wanted=wanted,
                  as_of=as_of, version=version, actions=s.actions, top_k=s.top_reasons, horizon_days=horizon,
                  risk_bounds=(s.risk_floor, s.risk_ceiling), lapsed_gap=lapsed_gap)
    at_risk = score.rank_at_risk(pd.concat([p[0] for p in parts], ignore_index=True), rank_by=s.rank_by,
                                 tiers=s.tiers.model_dump())
    win_back = score.rank_win_back(pd.concat([p[1] for p in parts], ignore_index=True))
    lead = pd.concat([p[2] for p in parts])
    base = score.lead_shares(pd.Series(lead.reindex(driver_ids).to_numpy(dtype=object))) if len(lead) else pd.Series(dtype=float)
    return score.Lists(at_risk, win_back, score.driver_table(at_risk, base))


def lists_in_one_place(paths: Sequence[str], model, inputs: Sequence[str], *, as_of: pd.Timestamp,
                       version: str | None, settings: Settings, contractual: bool) -> tuple:
    """Both lists by ``models.score.make_lists`` on the shards' features gathered here: for a
    model that fits on its batch (``fits_on_its_batch``), whose risks change when the clients
    are scored apart."""
    return one_machine_lists(collect(paths).drop(columns="cutoff"), model, inputs, as_of=as_of, version=version,
                             settings=settings, contractual=contractual)


def one_machine_lists(features: pd.DataFrame, model, inputs: Sequence[str], *, as_of: pd.Timestamp,
                      version: str | None, settings: Settings, contractual: bool) -> tuple:
    """``models.score.make_lists`` on a feature table as the single-machine scoring calls it."""
    from models import score

    s, horizon = settings.score, settings.labels.horizon_days
    wanted = set(inputs) | {"customer_id", "explain"}
    return score.make_lists(
        _predictor(model, wanted), features, as_of=as_of, model_version=version, horizon_days=horizon,
        contractual=contractual, lapse=s.lapse_rule(horizon), rule_with_cancellations=s.lapsed.with_cancellations,
        rank_by=s.rank_by, tiers=s.tiers.model_dump(), actionable_share=s.actionable_share, explain_max=s.explain_max,
        explain_min=s.explain_min, explain_all=s.explain_all, actions=s.actions, top_k=s.top_reasons, risk_bounds=(s.risk_floor, s.risk_ceiling))


def score_lists(data_dir: Path | None, settings: Settings, home: Path, out_dir: Path, as_of: pd.Timestamp | None,
                model_uri: str | None):
    """``score_flow``'s validation, features and lists on the cluster: (as_of, warnings, the
    model version, ``models.score.Lists``, the merged ``ValidatedData``), the lists equal to
    the single-machine ones; the quarantine and summary are written to ``out_dir/validation``."""
    from features import build, labels as labels_
    from models import registry

    horizon = settings.labels.horizon_days
    with run(settings.engine, home, "score") as r:
        v = validate(r, settings, data_dir, Path(out_dir) / "validation")
        tables = v.tables
        as_of = pd.Timestamp(as_of) if as_of is not None else labels_.default_as_of(tables)
        warnings = labels_.check_as_of(tables, as_of, horizon)
        registry.configure_tracking(home)
        model, version = registry.load_model(settings.registry.model_name, uri=model_uri)
        inputs = registry.input_columns(model)
        paths, _strata = build_shards(r, v, [as_of], settings.feature_config(), channels=build.channel_list(inputs),
                                      scoring=True)
        contractual = build.is_contractual(tables)
        if fits_on_its_batch(model):
            warnings.append(f"model version {version} fits its buy-till-you-die part on the clients it scores: its lists "
                            "were made on one machine from the shards' features (train a LightGBM champion to score "
                            "shard by shard)")
            lists = lists_in_one_place(paths, model, inputs, as_of=as_of, version=version, settings=settings,
                                       contractual=contractual)
        else:
            lists = lists_on_shards(r, paths, model, inputs, as_of=as_of, version=version, settings=settings,
                                    contractual=contractual)
        return as_of, warnings, version, lists, v.result
