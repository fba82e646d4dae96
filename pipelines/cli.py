"""The `churn` command: one verb per flow.

Everything a run writes goes under one folder, ``--home`` (default ``./.churn``, or
``$CHURN_HOME``): the Prefect state, the MLflow store, validation reports and the demo's
outputs. Prefect runs on its local ephemeral API and MLflow on a local SQLite store, with
analytics and telemetry off, unless PREFECT_API_URL / MLFLOW_TRACKING_URI say otherwise.
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
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    return home


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
    config: ConfigOpt = None,
):
    """Simulate customer lifecycles (orders, interactions, NPS, complaints, cancellations) in the input contract,
    or as a messy retail export (--layout online-retail)."""
    from features.simulate import simulate as run_simulation, write_dataset

    _settings(config)  # every verb reads the same file; a broken one is an error here too
    if fmt not in ("parquet", "csv"):
        err.print("[red]--format[/red] must be parquet or csv")
        raise typer.Exit(2)
    if layout not in ("contract", "online-retail"):
        err.print("[red]--layout[/red] must be contract or online-retail")
        raise typer.Exit(2)
    tables = run_simulation(customers, seed, end=end, contractual=contractual and layout == "contract",
                            progress=sys.stderr.isatty())
    if layout == "online-retail":
        from features.exports import write_online_retail

        paths = write_online_retail(tables, out, seed=seed)
    else:
        paths = write_dataset(tables, out, fmt=fmt)
    for name, path in paths.items():
        console.print(f"{name:>14}: -> {path}", highlight=False)


@app.command()
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

    settings = _settings(config)
    home = prepare_environment(home)
    folder = _data_dir(data, settings)
    target = out or home / "validation"
    try:
        result, paths = validate_source(settings.source, settings.validation, folder, target)
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
def features(
    cutoff: Annotated[list[str], typer.Option("--cutoff", help="Cutoff date (ISO 8601), repeatable: features read only facts strictly before it.")],
    out: Annotated[Path, typer.Option("--out", help="Output file (.parquet or .csv).")],
    data: DataOpt = None,
    labels: Annotated[bool, typer.Option("--labels", help="Add each client's label (former client within the horizon after the cutoff) and keep only cutoffs whose horizon is observed: a training set.")] = False,
    horizon_days: Annotated[Optional[int], typer.Option("--horizon-days", min=1, help="Label horizon with --labels (default from config: 90).")] = None,
    config: ConfigOpt = None,
    home: HomeOpt = Path(".churn"),
):
    """Build the point-in-time feature table of every client at one or more cutoffs
    (one row per client and cutoff); with --labels, a labelled training set."""
    from concurrent.futures import ThreadPoolExecutor

    import pandas as pd

    from features.inputs import ContractError, gate_warnings, validate_source

    settings = _settings(config, **{"labels.horizon_days": horizon_days})
    home = prepare_environment(home)
    folder = _data_dir(data, settings)
    cutoffs = sorted({_parse_date(c, "--cutoff") for c in cutoff})
    with ThreadPoolExecutor(max_workers=1) as pool:
        # DuckDB validates outside the GIL while this thread imports the engine (SciPy ...)
        loading = pool.submit(validate_source, settings.source, settings.validation, folder, home / "validation")
        from features.build import build_features, feature_columns, skipped_groups
        from features.io import write_frame
        from features.labels import build_training_set, check_as_of

        try:
            result, _paths = loading.result()
        except ContractError as exc:
            _contract_errors(exc)
    _warn(gate_warnings(result))
    # the engine reads a Parquet file that is clean as it is itself: no pandas round trip
    try:  # with --labels, a cutoff whose label window is not observed is left out (and named) instead
        for c in [] if labels else cutoffs:
            _warn(check_as_of(result.sources, c, settings.labels.horizon_days, name="--cutoff"))
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from exc
    for group, why in skipped_groups(result.sources).items():
        err.print(f"[yellow]skipped feature group {group}:[/yellow] {why}")
    if labels:
        table = build_training_set(result.sources, cutoffs, horizon_days=settings.labels.horizon_days,
                                   config=settings.feature_config(), progress=True)
        kept = sorted(table["cutoff"].unique()) if len(table) else []
        if len(kept) < len(cutoffs):
            err.print(f"[yellow]{len(cutoffs) - len(kept)} cutoff(s) left out:[/yellow] their "
                      f"{settings.labels.horizon_days}-day label window runs past the end of the data")
    else:
        table = build_features(result.sources, cutoffs, config=settings.feature_config(), progress=True)
    write_frame(table, out)
    when = ", ".join(str(pd.Timestamp(c).date()) for c in sorted(table["cutoff"].unique())) if len(table) else "no cutoff"
    console.print(f"{len(table):,} rows (client x cutoff) x {len(feature_columns(table))} features at {when} -> {out}",
                  highlight=False)


@app.command()
def train(
    data: DataOpt = None,
    config: ConfigOpt = None,
    horizon_days: Annotated[Optional[int], typer.Option("--horizon-days", min=1, help="Label horizon (default from config: 90).")] = None,
    tune: Annotated[int, typer.Option("--tune", min=0, help="Optuna trials of hyper-parameter search on the validation cutoffs (0 = off); trials are logged to MLflow.")] = 0,
    home: HomeOpt = Path(".churn"),
):
    """Train on every monthly cutoff whose label horizon is observed; test on the latest; register in MLflow."""
    settings = _settings(config, **{"labels.horizon_days": horizon_days})
    home = prepare_environment(home)
    from features.inputs import ContractError
    from pipelines.flows import train_flow

    folder = _data_dir(data, settings)
    try:
        result = train_flow(folder, settings, home, tune_trials=tune)
    except ContractError as exc:
        _contract_errors(exc)
    except ValueError as exc:
        err.print(f"[red]cannot train:[/red] {exc}")
        raise typer.Exit(2) from exc
    _print_training(result)


def _print_training(result) -> None:
    m = result.metrics
    nan = float("nan")
    console.print(f"test cutoff {result.cutoffs['test'][0]} ({int(m['test_rows']):,} clients, "
                  f"{m['test_base_rate']:.1%} left): ROC-AUC {m.get('test_roc_auc', nan):.3f}, "
                  f"PR-AUC {m.get('test_pr_auc', nan):.3f}, calibration error {m.get('test_ece', nan):.3f}", highlight=False)
    for name, label in (("pnbd", "Pareto/NBD P(no order)"), ("btyd", "BG/NBD P(no order)"),
                        ("logistic", "logistic regression"), ("recency", "recency rule")):
        if f"baseline_{name}_roc_auc" in m:
            console.print(f"  baseline {label}: ROC-AUC {m[f'baseline_{name}_roc_auc']:.3f}, "
                          f"PR-AUC {m[f'baseline_{name}_pr_auc']:.3f}", highlight=False)
    if result.backtest is not None and len(result.backtest):
        folds = ", ".join(f"{r.test_cutoff.date()}: {r.test_roc_auc:.3f}" for r in result.backtest.itertuples())
        console.print(f"  backtest ROC-AUC by test cutoff: {folds}", highlight=False)
    status = "champion" if result.promoted else "challenger (the champion stays)"
    console.print(f"model version {result.version} is {status}: {result.gate_reason}", highlight=False)
    console.print(f"MLflow run {result.run_id} in {result.tracking_uri}", highlight=False)


@app.command()
def score(
    out: Annotated[Path, typer.Option("--out", help="Folder for the lists and the report: the latest scoring at the top, "
                                      "each scoring kept in OUT/history/<as_of>/.")],
    data: DataOpt = None,
    as_of: Annotated[Optional[str], typer.Option("--as-of", help="Score as of this ISO 8601 date (default: the end of the last day in the data); refused before the first order or more than one horizon after the data.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", help="MLflow model URI (default: models:/<name>@champion).")] = None,
    config: ConfigOpt = None,
    home: HomeOpt = Path(".churn"),
):
    """Score every client with the champion model; write the retention list (clients who can still be kept),
    the win-back list (clients already lapsed), summary.json and report.html.

    Exit code 2: a config error (an unknown key in score.actions ...), input that breaks the
    contract, or no model to score with."""
    settings = _settings(config)
    home = prepare_environment(home)
    when = _parse_date(as_of, "--as-of")
    from features.inputs import ContractError
    from pipelines.flows import score_flow

    folder = _data_dir(data, settings)
    try:
        result = score_flow(folder, Path(out).resolve(), settings, home, as_of=when, model_uri=model)
    except ContractError as exc:
        _contract_errors(exc)
    except (LookupError, ValueError) as exc:
        err.print(f"[red]cannot score:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from exc
    _warn(result.warnings)
    console.print(f"{result.rows:,} clients who can still be kept and {result.win_back_rows:,} on the win-back list, "
                  f"as of {result.as_of.date()}, model version {result.model_version}:", highlight=False)
    for path in (result.html, result.xlsx, result.csv, result.win_back_csv, result.summary):
        console.print(f"  {path}", highlight=False)


registry_app = typer.Typer(no_args_is_help=True, help="See and move the registry's aliases: champion (what `score` uses) and challenger.")
app.add_typer(registry_app, name="registry")


def _registry_setup(config: Optional[Path], home: Path):
    settings = _settings(config)
    home = prepare_environment(home)
    from models import registry

    registry.configure_tracking(home)
    return settings, registry


@registry_app.command("list")
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


@registry_app.command("promote")
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
def demo(
    config: ConfigOpt = None,
    customers: Annotated[Optional[int], typer.Option("--customers", min=100, help="Simulated customers (default 20,000).")] = None,
    home: HomeOpt = Path(".churn"),
):
    """Simulate a company, then validate, build features and labels, train, register and score it."""
    settings = _settings(config, **{"demo.customers": customers})
    home = prepare_environment(home)
    from pipelines.flows import demo_flow

    trained, scored = demo_flow(settings, home)
    _print_training(trained)
    console.print(f"\nRetention list ({scored.rows:,} clients as of {scored.as_of.date()}; {scored.win_back_rows:,} on the "
                  "win-back list):", highlight=False)
    for path in (scored.html, scored.xlsx, scored.csv, scored.win_back_csv):
        console.print(f"  {path}", highlight=False)
    console.print(f"Browse the run: mlflow ui --backend-store-uri {trained.tracking_uri}", highlight=False)


if __name__ == "__main__":
    app()
