"""`churn simulate`: each data shape from its flag, and a help line for each."""
from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner


def churn(*args):
    from pipelines.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_shapes_from_the_command_line(tmp_path):
    out = tmp_path / "shop"
    result = churn("simulate", "--customers", 600, "--seed", 3, "--history-months", 5, "--seasonality", 0.5,
                   "--purchase-rate", 0.3, "--no-nps", "--no-cancellations", "--truth-rollouts", 2,
                   "--horizon-days", 45, "--out", out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["complaints.parquet", "customers.parquet", "interactions.parquet",
                                                   "orders.parquet", "truth.parquet"]
    orders = pd.read_parquet(out / "orders.parquet")
    assert orders["ordered_at"].min() >= pd.Timestamp("2025-08-01")
    truth = pd.read_parquet(out / "truth.parquet")
    assert truth["true_risk"].notna().all() and truth["true_risk_se"].gt(0).mean() > 0.5
    bare = churn("simulate", "--customers", 300, "--orders-only", "--truth-rollouts", 0, "--out", tmp_path / "bare")
    assert bare.exit_code == 0, bare.output
    assert sorted(p.name for p in (tmp_path / "bare").iterdir()) == ["cancellations.parquet", "orders.parquet",
                                                                     "truth.parquet"]


def test_every_shape_has_a_help_line():
    import typer

    from features.simulate import TRUTH_ROLLOUTS
    from pipelines.cli import app

    params = typer.main.get_command(app).commands["simulate"].params
    options = {opt: param for param in params for opt in (*param.opts, *param.secondary_opts)}
    assert options["--truth-rollouts"].default == TRUTH_ROLLOUTS
    for flag in ("--customers", "--history-months", "--seasonality", "--purchase-rate", "--no-cancellations",
                 "--no-nps", "--orders-only", "--truth-rollouts", "--horizon-days"):
        assert options[flag].help, flag
