"""The `churn` command: one verb per flow.

Everything a run writes goes under one folder, ``--home`` (default ``./.churn``, or
``$CHURN_HOME``): the Prefect state, the MLflow store, validation reports and the demo's
outputs. The flows run as plain Python (no Prefect server, nothing left running) unless
PREFECT_API_URL names a Prefect server (or CHURN_ORCHESTRATION=prefect asks for Prefect's
temporary local server); MLflow uses a local SQLite store unless MLFLOW_TRACKING_URI says
otherwise; analytics and telemetry are off.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="Churn-risk pipeline: customer records -> point-in-time features -> LightGBM -> "
                       "ranked at-risk list with reasons.")
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)

HomeOpt = Annotated[Path, typer.Option("--home", envvar="CHURN_HOME",
                                       help="Folder for everything a run writes (Prefect state, MLflow store, reports).")]
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="YAML settings file (see configs/default.yaml); flags override it.")]
DataOpt = Annotated[Optional[Path], typer.Option("--data", help="Folder of exports, one Parquet or CSV file per table "
                                                 "(orders required); overrides source.path of the config.")]


def prepare_environment(home: Path) -> Path:
    """Keep Prefect, MLflow and matplotlib state under ``home`` and switch off their network calls.

    Must run before prefect or mlflow is imported: both read their settings at import.
    """
    home = Path(home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    defaults = {
        "DO_NOT_TRACK": "true",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PREFECT_HOME": str(home / "prefect"),
        "MPLCONFIGDIR": str(home / "matplotlib"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "GIT_PYTHON_REFRESH": "quiet",
        # an unreachable tracking server fails in seconds, not after MLflow's default 7 retries (~4 minutes)
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    return home

EngineOpt = Annotated[Optional[str], typer.Option("--engine", help="local (one machine) or dask (the customers in shards on "
                                                  "a Dask cluster; default from config: local).")]
WorkersOpt = Annotated[Optional[int], typer.Option("--workers", min=1, help="--engine dask: worker processes of the local "
                                                   "cluster (default from config: 2).")]
ShardsOpt = Annotated[Optional[int], typer.Option("--shards", min=1, help="--engine dask: shards of the customers (default "
                                                  "from config: 8).")]
SchedulerOpt = Annotated[Optional[str], typer.Option("--scheduler", help="--engine dask: address of an existing Dask "
                                                     "scheduler (default: a local cluster started and stopped here).")]


def _engine(engine, workers, shards, scheduler) -> dict:
    """The engine flags as settings overrides."""
    return {"engine.kind": engine, "engine.workers": workers, "engine.shards": shards, "engine.scheduler": scheduler}


def _settings(config: Optional[Path], **overrides):
    from pipelines.settings import SettingsError, load_settings

    try:
        return load_settings(config).with_overrides(**overrides)
    except (SettingsError, ValueError) as exc:
        err.print(f"[red]config error:[/red] {exc}")
        raise typer.Exit(2) from exc


def _contract_errors(exc) -> None:
    err.print(f"[red]The input data does not meet the contract ({len(exc.problems)} problem(s)):[/red]")
    for problem in exc.problems:
        err.print(f"  - {problem}", highlight=False)
    err.print("See the input contract and `Use your own data` in README.md.")
    raise typer.Exit(2)


def _parse_date(value: Optional[str], name: str):
    """An ISO 8601 date flag as naive UTC (an offset is converted); exit 2 otherwise."""
    from features.inputs.dates import parse_iso

    if value is None:
        return None
    try:
        return parse_iso(value, name)
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from exc


def _data_dir(data: Optional[Path], settings) -> Optional[Path]:
    """The folder of exports: --data, else source.path; None for a SQL source. Exit 2 when a
    files source has neither."""
    if settings.source.kind == "sql":
        if data is not None:
            err.print("[yellow]--data is ignored: the config's source is a SQL database[/yellow]")
        return None
    folder = data if data is not None else settings.source.path
    if folder is None:
        err.print("[red]no data:[/red] give --data DIR or source.path in the --config file")
        raise typer.Exit(2)
    return Path(folder).resolve()


def _warn(lines) -> None:
    for line in lines:
        err.print(f"[yellow]warning:[/yellow] {line}", highlight=False)


def _guarded(verb):
    """A setup problem (a path, a store, a server, a driver, a full or read-only disk) ends the
    verb with one line and exit 2 instead of a traceback."""
    import functools

    @functools.wraps(verb)
    def run(*args, **kwargs):
        from pipelines.preflight import SetupError, describe_os_error

        try:
            return verb(*args, **kwargs)
        except SetupError as exc:
            err.print(f"[red]cannot start:[/red] {exc}", highlight=False)
            raise typer.Exit(2) from exc
        except OSError as exc:
            line = describe_os_error(exc)
            if line is None:
                raise
            err.print(f"[red]cannot write:[/red] {line}", highlight=False)
            raise typer.Exit(2) from exc
        except ModuleNotFoundError as exc:
            err.print(f"[red]missing package:[/red] {exc.name!r} is not installed in this environment "
                      f"(pip install {exc.name}, or run `make install`)", highlight=False)
            raise typer.Exit(2) from exc
    return run


def _preflight(home: Path, *, tracking: bool = True, out_dir: Optional[Path] = None,
               out_file: Optional[Path] = None) -> None:
    """The checks of pipelines.preflight that this verb needs (SetupError: exit 2 via _guarded)."""
    from pipelines import preflight

    if out_dir is not None:
        preflight.check_output_folder(out_dir)
    if out_file is not None:
        preflight.check_output_file(out_file)
    if tracking:
        preflight.check_orchestration()
        preflight.check_tracking(home)
        preflight.check_prefect_home()


def _run(flow, *args, **kwargs):
    """Run a flow of ``pipelines.flows``: through Prefect where there is a server
    (``PREFECT_API_URL``), as plain Python with its log lines on stderr otherwise
    (``pipelines.orchestration``)."""
    from pipelines.orchestration import log_to_terminal, run_flow

    log_to_terminal()
    return run_flow(flow, *args, **kwargs)


@app.command()
def simulate(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the tables and truth.parquet into.")],
    customers: Annotated[int, typer.Option("--customers", min=1, help="Number of customers to simulate.")] = 10_000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: the same seed writes the same bytes.")] = 0,
    end: Annotated[str, typer.Option("--end", help="Last day of the simulated history.")] = "2025-12-31",
    contractual: Annotated[bool, typer.Option("--contractual/--no-cancellations",
                                              help="Write a cancellations table (a contractual business) or not.")] = True,
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv")] = "parquet",
    layout: Annotated[str, typer.Option("--layout", help="contract: one file per contract table; online-retail: a "
                                        "messy retail ERP export (invoice lines in the UCI Online Retail II layout, "
                                        "dd/mm/yyyy dates, 1,857.60 amounts, credit notes, copied lines, guest "
                                        "checkouts, zero-padded ids) and a CRM customers file, read with "
                                        "configs/online-retail.yaml.")] = "contract",
    history_months: Annotated[Optional[int], typer.Option("--history-months", min=2, help="Length of the history in "
                                                          "calendar months, ending on --end (default: 730 days, about "
                                                          "two years); 5 gives a short log.")] = None,
    seasonality: Annotated[float, typer.Option("--seasonality", min=0.0, max=0.99, help="Amplitude of a yearly cycle "
                                               "on purchase rates and acquisitions, peaking in November-December: "
                                               "0.5 = half as many again at the peak, half as many in early June "
                                               "(default 0: none).")] = 0.0,
    purchase_rate: Annotated[float, typer.Option("--purchase-rate", min=0.01, help="Multiplier on every customer's "
                                                 "purchase rate (default 1: an order every 45-60 days; 0.3: every few "
                                                 "months). A one-order buyer's wait for the second order counts in "
                                                 "proportion.")] = 1.0,
    nps: Annotated[bool, typer.Option("--nps/--no-nps", help="Send NPS surveys (an nps table, an NPS term in the "
                                      "hazard) or not.")] = True,
    orders_only: Annotated[bool, typer.Option("--orders-only", help="Write only orders (and cancellations) besides "
                                              "truth.parquet: the rest of the company happens but is not exported.")] = False,
    truth_rollouts: Annotated[int, typer.Option("--truth-rollouts", min=0, help="Monte-Carlo rollouts per client and "
                                                "month start behind truth.parquet's true_risk (default 32; the "
                                                "standard error falls as 1/sqrt(N), the time grows as N; 0: none, "
                                                "the rollout columns empty).")] = 32,
    horizon_days: Annotated[Optional[int], typer.Option("--horizon-days", min=1, help="Horizon of the truth's "
                                                        "probabilities (default from config: 90).")] = None,
    config: ConfigOpt = None,
):
    """Simulate customer lifecycles (orders, interactions, NPS, complaints, cancellations) in the input contract,
    or as a messy retail export (--layout online-retail), with truth.parquet: per client and month start, the
    simulator's own probability of becoming a former client within the horizon (true_risk, by rollouts of the
    future from the client's full state, with its standard error true_risk_se)."""
    from features.simulate import simulate as run_simulation, write_dataset

    settings = _settings(config)  # every verb reads the same file; a broken one is an error here too
    if fmt not in ("parquet", "csv"):
        err.print("[red]--format[/red] must be parquet or csv")
        raise typer.Exit(2)
    if layout not in ("contract", "online-retail"):
        err.print("[red]--layout[/red] must be contract or online-retail")
        raise typer.Exit(2)
    if orders_only and layout != "contract":
        err.print("[red]--orders-only[/red] applies to --layout contract only")
        raise typer.Exit(2)
    tables = run_simulation(customers, seed, end=end, contractual=contractual and layout == "contract",
                            history_months=history_months, seasonality=seasonality, purchase_rate=purchase_rate,
                            nps=nps, orders_only=orders_only, truth_rollouts=truth_rollouts,
                            horizon_days=horizon_days or settings.labels.horizon_days, progress=sys.stderr.isatty())
    if layout == "online-retail":
        from features.exports import write_online_retail

        paths = write_online_retail(tables, out, seed=seed)
    else:
        paths = write_dataset(tables, out, fmt=fmt)
    for name, path in paths.items():
        console.print(f"{name:>14}: -> {path}", highlight=False)


@app.command()
@_guarded
def validate(
    data: DataOpt = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Where to write quarantine_<table>.csv and validation_summary.csv (default: <home>/validation).")] = None,
    config: ConfigOpt = None,
    home: HomeOpt = Path(".churn"),
):
    """Check the input (a folder, or the config's source) against the contract; quarantine bad rows with a reason each.

    Exit code 0: valid (possibly with quarantined rows); 2: a fatal problem, one line per
    problem: a missing table, column or unreadable file, or an extract the gate stops (a
    table with more than validation.max_quarantined_share of its rows quarantined, events
    of unknown customers above validation.max_unknown_customer_share, no orders). The
    quarantine is written in both cases.
    """
    from features.inputs import ContractError, format_summary, gate_warnings, validate_source
    from pipelines.orchestration import log_to_terminal, retrying

    settings = _settings(config)
    home = prepare_environment(home)
    log_to_terminal()  # a retried read is named on stderr
    folder = _data_dir(data, settings)
    target = out or home / "validation"
    try:
        result, paths = retrying(validate_source, settings.source, settings.validation, folder, target,
                                 what="reading the input", **settings.retries.options())
    except ContractError as exc:
        if exc.result is not None:
            console.print(format_summary(exc.result), highlight=False)
            console.print(f"quarantine and summary written to {target}", highlight=False)
        _contract_errors(exc)
    console.print(format_summary(result), highlight=False)
    _warn(gate_warnings(result))
    for path in paths.values():
        console.print(f"wrote {path}", highlight=False)


@app.command()
@_guarded
def features(
    cutoff: Annotated[list[str], typer.Option("--cutoff", help="Cutoff date (ISO 8601), repeatable: features read only facts strictly before it.")],
    out: Annotated[Path, typer.Option("--out", help="Output file (.parquet or .csv).")],
    data: DataOpt = None,
    labels: Annotated[bool, typer.Option("--labels", help="Add each client's label (former client within the horizon after the cutoff) and keep only cutoffs whose horizon is observed: a training set.")] = False,
    horizon_days: Annotated[Optional[int], typer.Option("--horizon-days", min=1, help="Label horizon with --labels (default from config: 90).")] = None,
    config: ConfigOpt = None,
    home: HomeOpt = Path(".churn"),
    engine: EngineOpt = None,
    workers: WorkersOpt = None,
    shards: ShardsOpt = None,
    scheduler: SchedulerOpt = None,
):
    """Build the point-in-time feature table of every client at one or more cutoffs
    (one row per client and cutoff); with --labels, a labelled training set."""
    from concurrent.futures import ThreadPoolExecutor

    import pandas as pd

    from features.inputs import ContractError, gate_warnings, same_sources, sources_if_clean, validate_source

    settings = _settings(config, **{"labels.horizon_days": horizon_days}, **_engine(engine, workers, shards, scheduler))
    home = prepare_environment(home)
    _preflight(home, tracking=False, out_file=out)
    folder = _data_dir(data, settings)
    cutoffs = sorted({_parse_date(c, "--cutoff") for c in cutoff})
    if settings.engine.kind == "dask":
        _features_on_dask(folder, settings, home, cutoffs, out, labels)
        return

    def build(sources, progress):
        if labels:
            return build_training_set(sources, cutoffs, horizon_days=settings.labels.horizon_days,
                                      config=settings.feature_config(), progress=progress)
        return build_features(sources, cutoffs, config=settings.feature_config(), progress=progress)

    with ThreadPoolExecutor(max_workers=2) as pool:
        # DuckDB validates outside the GIL while this thread imports the engine (SciPy ...);
        # when every table is a Parquet file that may be clean as it is, the engine starts on
        # those files at once, and its table is kept only if the validation finds them clean
        loading = pool.submit(validate_source, settings.source, settings.validation, folder, home / "validation")
        from features.build import build_features, feature_columns, skipped_groups
        from features.io import write_frame
        from features.labels import build_training_set, check_as_of

        guess = sources_if_clean(settings.source, folder)
        ahead = pool.submit(build, guess, True) if guess is not None else None
        try:
            result, _paths = loading.result()
        except ContractError as exc:
            _contract_errors(exc)
        if ahead is not None and not same_sources(result.sources, guess):
            ahead.cancel()
            ahead = None  # built from files the validation changed: built again below from what it kept
        # (while the engine may still run) the gate's warnings and the dates the data can describe
        _warn(gate_warnings(result))
        try:  # with --labels, a cutoff whose label window is not observed is left out (and named) instead
            for c in [] if labels else cutoffs:
                _warn(check_as_of(result.sources, c, settings.labels.horizon_days, name="--cutoff"))
        except ValueError as exc:
            err.print(f"[red]{exc}[/red]", highlight=False)
            raise typer.Exit(2) from exc
        for group, why in skipped_groups(result.sources).items():
            err.print(f"[yellow]skipped feature group {group}:[/yellow] {why}")
    # the engine reads a Parquet file that is clean as it is itself: no pandas round trip
    table = ahead.result() if ahead is not None else build(result.sources, True)
    if labels:
        kept = {pd.Timestamp(c) for c in table["cutoff"].unique()} if len(table) else set()
        left = [str(c.date()) for c in cutoffs if pd.Timestamp(c) not in kept]
        if left:
            err.print(f"[yellow]{len(left)} cutoff(s) left out ({', '.join(left)}):[/yellow] their "
                      f"{settings.labels.horizon_days}-day label window runs past the end of the data")
    write_frame(table, out)
    when = ", ".join(str(pd.Timestamp(c).date()) for c in sorted(table["cutoff"].unique())) if len(table) else "no cutoff"
    console.print(f"{len(table):,} rows (client x cutoff) x {len(feature_columns(table))} features at {when} -> {out}",
                  highlight=False)


def _features_on_dask(folder, settings, home: Path, cutoffs, out: Path, labels: bool) -> None:
    """``churn features --engine dask``: the same table, built shard by shard (``pipelines.engine``)
    by the flow ``features`` (through Prefect where there is a server, as the other verbs)."""
    from features.inputs import ContractError, gate_warnings
    from pipelines import preflight
    from pipelines.engine import features_flow

    preflight.check_orchestration()
    preflight.check_prefect_home()
    try:
        result, rows, kept, warnings = _run(features_flow, folder, settings, home, cutoffs, Path(out), labels)
    except ContractError as exc:
        _contract_errors(exc)
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from exc
    _warn(gate_warnings(result) + warnings)
    left = [str(c.date()) for c in cutoffs if c not in set(kept)]
    if labels and left:
        err.print(f"[yellow]{len(left)} cutoff(s) left out ({', '.join(left)}):[/yellow] their "
                  f"{settings.labels.horizon_days}-day label window runs past the end of the data")
    when = ", ".join(str(c.date()) for c in kept) if kept else "no cutoff"
    console.print(f"{rows:,} rows (client x cutoff) at {when}, {settings.engine.shards} shards -> {out}", highlight=False)


@app.command()
@_guarded
def train(
    data: DataOpt = None,
    config: ConfigOpt = None,
    horizon_days: Annotated[Optional[int], typer.Option("--horizon-days", min=1, help="Label horizon (default from config: 90).")] = None,
    tune: Annotated[int, typer.Option("--tune", min=0, help="Optuna trials of hyper-parameter search on the validation cutoffs (0 = off); trials are logged to MLflow.")] = 0,
    home: HomeOpt = Path(".churn"),
    engine: EngineOpt = None,
    workers: WorkersOpt = None,
    shards: ShardsOpt = None,
    scheduler: SchedulerOpt = None,
):
    """Train every candidate on the monthly cutoffs whose label horizon is observed (weekly when the history is
    short), choose the champion on the validation cutoffs, test on the latest cutoff, register it in MLflow."""
    settings = _settings(config, **{"labels.horizon_days": horizon_days}, **_engine(engine, workers, shards, scheduler))
    home = prepare_environment(home)
    _preflight(home)
    from features.inputs import ContractError
    from pipelines.flows import train_flow

    folder = _data_dir(data, settings)
    try:
        result = _run(train_flow, folder, settings, home, tune_trials=tune)
    except ContractError as exc:
        _contract_errors(exc)
    except ValueError as exc:
        err.print(f"[red]cannot train:[/red] {exc}")
        raise typer.Exit(2) from exc
    _print_training(result)


def _print_training(result) -> None:
    m = result.metrics
    nan = float("nan")
    for note in result.notes:
        err.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    if result.horizon is not None:
        console.print(result.horizon.summary(), highlight=False)
        _warn(result.horizon.warnings)
    if "test_rows" in m:
        console.print(f"test cutoff {result.cutoffs['test'][0]} ({int(m['test_rows']):,} clients, "
                      f"{m['test_base_rate']:.1%} left): ROC-AUC {m.get('test_roc_auc', nan):.3f}, "
                      f"PR-AUC {m.get('test_pr_auc', nan):.3f}, calibration error {m.get('test_ece', nan):.3f}, "
                      f"mean risk {m.get('test_mean_risk', nan):.1%}", highlight=False)
    else:
        console.print("no labelled test cutoff: nothing to measure the champion on", highlight=False)
    if result.candidates is not None and len(result.candidates):
        console.print("candidates (validation chooses, test measures):", highlight=False)
        for r in result.candidates.to_dict("records"):
            cells = "  ".join(f"{k.replace('_roc_auc', ' ROC-AUC').replace('_pr_auc', ' PR-AUC')} {r[k]:.3f}"
                              for k in ("valid_roc_auc", "valid_pr_auc", "test_roc_auc", "test_pr_auc")
                              if isinstance(r.get(k), float) and r[k] == r[k])
            mark = "*" if r.get("champion") else " "
            status = "" if r.get("status") == "ok" else f"  ({r.get('status')})"
            console.print(f" {mark} {r['candidate']:<18} {cells}{status}", highlight=False)
    console.print(f"champion: {result.choice}", highlight=False)
    if "champion_margin_roc_auc" in m:
        console.print(f"champion minus the best baseline on the test cutoff: ROC-AUC {m['champion_margin_roc_auc']:+.4f}, "
                      f"PR-AUC {m.get('champion_margin_pr_auc', nan):+.4f}", highlight=False)
    if result.backtest is not None and len(result.backtest):
        folds = ", ".join(f"{r.test_cutoff.date()}: {r.test_roc_auc:.3f}" for r in result.backtest.itertuples())
        console.print(f"  backtest ROC-AUC by test cutoff: {folds}", highlight=False)
    status = "champion" if result.promoted else "challenger (the champion stays)"
    console.print(f"model version {result.version} is {status}: {result.gate_reason}", highlight=False)
    console.print(f"MLflow run {result.run_id} in {result.tracking_uri}", highlight=False)


@app.command()
@_guarded
def score(
    out: Annotated[Path, typer.Option("--out", help="Folder for the lists and the report: the latest scoring at the top, "
                                      "each scoring kept in OUT/history/<as_of>/.")],
    data: DataOpt = None,
    as_of: Annotated[Optional[str], typer.Option("--as-of", help="Score as of this ISO 8601 date (default: the end of the last day in the data); refused before the first order or more than one horizon after the data.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="MLflow model URI (default: models:/<name>@champion).")] = None,
    config: ConfigOpt = None,
    home: HomeOpt = Path(".churn"),
    engine: EngineOpt = None,
    workers: WorkersOpt = None,
    shards: ShardsOpt = None,
    scheduler: SchedulerOpt = None,
):
    """Score every client with the champion model; write the retention list (clients who can still be kept),
    the win-back list (clients already lapsed), summary.json and report.html.

    Exit code 2: a config error (an unknown key in score.actions ...), input that breaks the
    contract, or no model to score with."""
    settings = _settings(config, **_engine(engine, workers, shards, scheduler))
    home = prepare_environment(home)
    _preflight(home, out_dir=out)
    when = _parse_date(as_of, "--as-of")
    from features.inputs import ContractError
    from pipelines.flows import score_flow

    folder = _data_dir(data, settings)
    try:
        result = _run(score_flow, folder, Path(out).resolve(), settings, home, as_of=when, model_uri=model)
    except ContractError as exc:
        if (Path(out) / "validation-rejected").is_dir():
            err.print(f"The quarantine of this input is in {Path(out) / 'validation-rejected'}; the lists in {out} "
                      "are unchanged.", highlight=False)
        _contract_errors(exc)
    except (LookupError, ValueError) as exc:
        err.print(f"[red]cannot score:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from exc
    _warn(result.warnings)
    console.print(f"{result.rows:,} clients who can still be kept and {result.win_back_rows:,} on the win-back list, "
                  f"as of {result.as_of.date()}, model version {result.model_version}:", highlight=False)
    for path in (result.html, result.xlsx, result.csv, result.win_back_csv, result.summary):
        console.print(f"  {path}", highlight=False)


@app.command()
@_guarded
def backfill(
    out: Annotated[Path, typer.Option("--out", help="Folder of the lists: each date kept in OUT/history/<as_of>/, the latest at OUT/.")],
    start: Annotated[str, typer.Option("--from", help="First date to score (ISO 8601).")],
    end: Annotated[str, typer.Option("--to", help="Last date to score (ISO 8601), included when a step lands on it.")],
    every: Annotated[str, typer.Option("--every", help="Step between dates: Nd (days) or Nw (weeks).")] = "7d",
    data: DataOpt = None,
    model: Annotated[Optional[str], typer.Option("--model", help="MLflow model URI (default: models:/<name>@champion).")] = None,
    config: ConfigOpt = None,
    home: HomeOpt = Path(".churn"),
):
    """Score past dates, oldest first, into OUT/history/<as_of>/ (for analysis and for the
    monitoring's realised performance): the input is validated once, the features are built
    per date. A date the as-of rules refuse is reported and skipped; exit 2 when every date is."""
    settings = _settings(config)
    home = prepare_environment(home)
    _preflight(home, out_dir=out)
    first, last = _parse_date(start, "--from"), _parse_date(end, "--to")
    from features.inputs import ContractError
    from models.backfill import backfill_dates

    try:
        dates = backfill_dates(first, last, every)
    except ValueError as exc:
        err.print(f"[red]cannot backfill:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from exc
    from pipelines.flows import backfill_flow

    folder = _data_dir(data, settings)
    console.print(f"backfilling {len(dates)} date(s) from {dates[0].date()} to {dates[-1].date()} into {out}",
                  highlight=False)
    try:
        result = _run(backfill_flow, folder, Path(out).resolve(), settings, home, dates, model_uri=model)
    except ContractError as exc:
        _contract_errors(exc)
    except (LookupError, ValueError) as exc:
        err.print(f"[red]cannot backfill:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from exc
    for o in result.outcomes:
        if o.scored:
            console.print(f"  {o.as_of.date()}: {o.result.rows:,} clients, {o.result.win_back_rows:,} on the win-back "
                          f"list -> {o.result.parquet.parent}", highlight=False)
            _warn(o.warnings or [])
        else:
            err.print(f"  [yellow]{o.as_of.date()} skipped:[/yellow] {o.reason}", highlight=False)
    console.print(f"{len(result.scored)} date(s) scored, {len(result.skipped)} skipped; the latest list is at "
                  f"{Path(out).resolve()}", highlight=False)


ALERT_EXIT = 3


@app.command()
@_guarded
def monitor(
    lists: Annotated[Path, typer.Option("--lists", help="The folder `churn score --out` writes: its history/<as_of>/ holds every past list.")],
    data: DataOpt = None,
    as_of: Annotated[Optional[str], typer.Option("--as-of", help="Monitor the latest list on or before this ISO 8601 date (default: the latest list).")] = None,
    config: ConfigOpt = None,
    home: HomeOpt = Path(".churn"),
):
    """Check the champion: drift of the latest list against the training data, its performance
    estimated before the labels arrive, and the realised performance of every past list whose
    horizon has closed in the data. Writes monitor.json and monitor.html into --lists.

    Exit codes: 0 no alert, 3 alerts (listed in monitor.json and printed), 2 an input or setup error."""
    settings = _settings(config)
    home = prepare_environment(home)
    _preflight(home, out_dir=lists)
    when = _parse_date(as_of, "--as-of")
    from features.inputs import ContractError
    from pipelines.flows import monitor_flow

    folder = _data_dir(data, settings)
    try:
        result = _run(monitor_flow, folder, Path(lists).resolve(), settings, home, as_of=when)
    except ContractError as exc:
        _contract_errors(exc)
    except (LookupError, ValueError) as exc:
        err.print(f"[red]cannot monitor:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from exc
    doc = result.report
    e = doc["expected"]
    flagged = sum(1 for d in doc["drift"].values() if d["flag"])
    console.print(f"monitoring the list of {result.as_of.date()} (model version {result.model_version}): "
                  f"{flagged} of {len(doc['drift'])} features drifted; estimated ROC-AUC {e['roc_auc']}, "
                  f"{len(doc['realised'])} past list(s) with realised figures", highlight=False)
    for line in result.alerts:
        err.print(f"[red]alert:[/red] {line}", highlight=False)
    console.print(f"  {result.html}\n  {result.json}", highlight=False)
    if result.alerts:
        raise typer.Exit(ALERT_EXIT)


@app.command()
@_guarded
def serve(
    data: DataOpt = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Folder the scheduled scoring writes (default: score.out_dir of the config).")] = None,
    config: ConfigOpt = None,
    home: HomeOpt = Path(".churn"),
):
    """Serve the train, score and monitor deployments on their cron schedules (the config's
    schedule: section) against the Prefect server at PREFECT_API_URL, until stopped (Ctrl-C
    asks Prefect to pause the schedules). A completed train run starts a score run, a completed score run a
    monitor run."""
    settings = _settings(config)
    home = prepare_environment(home)
    _preflight(home, out_dir=out)
    if not os.environ.get("PREFECT_API_URL"):
        err.print("[red]no Prefect server:[/red] schedules run only on a real server. Start one with "
                  "`prefect server start --host 127.0.0.1` and set PREFECT_API_URL=http://127.0.0.1:4200/api", highlight=False)
        raise typer.Exit(2)
    folder = _data_dir(data, settings)
    if out is None and settings.score.out_dir is None:
        err.print("[red]no lists folder:[/red] give --out DIR or score.out_dir in the --config file", highlight=False)
        raise typer.Exit(2)
    from prefect import serve as serve_deployments

    from pipelines.deploy import build_deployments

    deployments = build_deployments(settings, config=config, data=folder, home=home, out=out)
    s = settings.schedule
    console.print(f"serving churn-train ({s.train}), churn-score ({s.score}) and churn-monitor ({s.monitor}), "
                  f"time zone {s.timezone}, against {os.environ['PREFECT_API_URL']}", highlight=False)
    serve_deployments(*deployments, pause_on_shutdown=True)


registry_app = typer.Typer(no_args_is_help=True, help="See and move the registry's aliases: champion (what `score` uses) and challenger.")
app.add_typer(registry_app, name="registry")


def _registry_setup(config: Optional[Path], home: Path):
    settings = _settings(config)
    home = prepare_environment(home)
    _preflight(home)
    from models import registry

    registry.configure_tracking(home)
    return settings, registry


@registry_app.command("list")
@_guarded
def registry_list(config: ConfigOpt = None, home: HomeOpt = Path(".churn")):
    """Every registered version with its aliases, test metrics and gate decision."""
    from rich.table import Table

    settings, registry = _registry_setup(config, home)
    try:
        versions = registry.list_versions(settings.registry.model_name)
    except Exception as exc:  # MLflow raises its own exception types for an unknown model
        err.print(f"[red]no registered model {settings.registry.model_name!r}:[/red] train one with `churn train --data DIR`")
        raise typer.Exit(2) from exc
    table = Table(title=f"{settings.registry.model_name} ({len(versions)} versions)")
    for col in versions.columns:
        table.add_column(col)
    for row in versions.itertuples(index=False):
        table.add_row(*["" if v is None or (isinstance(v, float) and v != v) else (f"{v:.3f}" if isinstance(v, float) else str(v)) for v in row])
    console.print(table)


@registry_app.command("approve")
@_guarded
def registry_approve(version: Annotated[str, typer.Argument(help="A version that passed the gate and awaits approval.")],
                     config: ConfigOpt = None, home: HomeOpt = Path(".churn")):
    """Approve VERSION (with registry.require_approval: true, a version that passes the gate
    waits for this before it becomes champion)."""
    settings, registry = _registry_setup(config, home)
    try:
        reason = registry.approve(settings.registry.model_name, version)
    except (LookupError, ValueError) as exc:
        err.print(f"[red]cannot approve:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from exc
    console.print(f"version {version} of {settings.registry.model_name} is now champion: {reason}", highlight=False)


@registry_app.command("promote")
@_guarded
def registry_promote(version: Annotated[str, typer.Argument(help="Model version to make champion.")],
                     reason: Annotated[str, typer.Option("--reason", help="Why (recorded as a version tag).")] = "promoted by hand",
                     config: ConfigOpt = None, home: HomeOpt = Path(".churn")):
    """Make VERSION the champion (overriding the gate); the previous champion is remembered for rollback."""
    settings, registry = _registry_setup(config, home)
    try:
        registry.promote(settings.registry.model_name, version, reason=reason)
    except Exception as exc:
        err.print(f"[red]cannot promote version {version} of {settings.registry.model_name!r}:[/red] {exc}")
        raise typer.Exit(2) from exc
    console.print(f"version {version} of {settings.registry.model_name} is now champion")


@registry_app.command("rollback")
@_guarded
def registry_rollback(config: ConfigOpt = None, home: HomeOpt = Path(".churn")):
    """Give the champion alias back to the version the current champion replaced."""
    settings, registry = _registry_setup(config, home)
    try:
        old, new = registry.rollback(settings.registry.model_name)
    except LookupError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    console.print(f"champion rolled back from version {old} to version {new}")


@app.command()
def catalogue(config: ConfigOpt = None):
    """Print the feature catalogue (name, group, unit, definition, domain idea) as markdown."""
    from features.catalogue import catalogue_markdown

    _settings(config)
    print(catalogue_markdown())


@app.command()
@_guarded
def demo(
    config: ConfigOpt = None,
    customers: Annotated[Optional[int], typer.Option("--customers", min=100, help="Simulated customers (default 20,000).")] = None,
    home: HomeOpt = Path(".churn"),
):
    """Simulate a company, then validate, build features and labels, train, register and score it."""
    settings = _settings(config, **{"demo.customers": customers})
    home = prepare_environment(home)
    _preflight(home)
    from pipelines.flows import demo_flow

    trained, scored = _run(demo_flow, settings, home)
    _print_training(trained)
    console.print(f"\nRetention list ({scored.rows:,} clients as of {scored.as_of.date()}; {scored.win_back_rows:,} on the "
                  "win-back list):", highlight=False)
    for path in (scored.html, scored.xlsx, scored.csv, scored.win_back_csv):
        console.print(f"  {path}", highlight=False)
    console.print(f"Browse the run: mlflow ui --backend-store-uri {trained.tracking_uri}", highlight=False)


if __name__ == "__main__":
    app()
