"""The registered champion as a consumer calls it: the feature table `churn features` writes,
read back and passed to `models:/e2e@champion` (in Python, and over HTTP from `mlflow models
serve`), gives the same risks as the list `churn score` wrote."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner


@pytest.fixture(scope="module")
def scored_and_features(trained, sim_data, tmp_path_factory):
    """`churn score` and `churn features` at the same date, as a user runs them."""
    from pipelines.cli import app

    _, home = trained
    work = tmp_path_factory.mktemp("consumer")
    config = work / "config.yaml"
    config.write_text("registry: {model_name: e2e, experiment: e2e}\n")
    runner = CliRunner()
    result = runner.invoke(app, ["score", "--data", str(sim_data), "--out", str(work / "out"), "--as-of", "2025-11-01",
                                 "--config", str(config), "--home", str(home)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["features", "--data", str(sim_data), "--cutoff", "2025-11-01", "--out",
                                 str(work / "features.parquet"), "--home", str(home)])
    assert result.exit_code == 0, result.output
    listed = pd.read_parquet(work / "out" / "at_risk.parquet")
    return listed.set_index("customer_id")["risk"], pd.read_parquet(work / "features.parquet")


def test_the_features_file_feeds_the_registered_model(scored_and_features):
    import mlflow

    risk, features = scored_and_features
    assert not any(isinstance(features[c].dtype, pd.CategoricalDtype) for c in features.columns)  # written as text
    model = mlflow.pyfunc.load_model("models:/e2e@champion")
    out = model.predict(features)
    got = out.set_index("customer_id")["risk"]
    assert len(got) >= len(risk)  # everyone at the date; the list holds those who can still be kept
    # the list shows the risk within its bounds (score.risk_floor, score.risk_ceiling)
    from pipelines.settings import Settings

    floor, ceiling = Settings().score.risk_floor, Settings().score.risk_ceiling
    np.testing.assert_allclose(got.loc[risk.index].clip(floor, ceiling).to_numpy(), risk.to_numpy(), rtol=0, atol=1e-12)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_models_serve_answers_with_the_same_risks(scored_and_features, tmp_path):
    risk, features = scored_and_features
    port = _free_port()
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen([str(mlflow_cli), "models", "serve", "-m", "models:/e2e@champion", "--env-manager", "local",
                             "-h", "127.0.0.1", "-p", str(port)],
                            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true",  # it runs the venv's uvicorn by name
                                 "PATH": f"{mlflow_cli.parent}{os.pathsep}{os.environ.get('PATH', '')}"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"mlflow models serve did not start: {proc.stderr.read()[-2000:]}")
                time.sleep(1)
        sample = features  # the whole table: a buy-till-you-die champion fits its mixing distribution on the rows it is given
        body = json.loads(sample.assign(cutoff=sample["cutoff"].astype(str)).to_json(orient="split", index=False, double_precision=15))
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", method="POST",
                                         data=json.dumps({"dataframe_split": body}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = pd.DataFrame(json.loads(response.read())["predictions"])
        got = answer.set_index("customer_id")["risk"].loc[risk.index]
        np.testing.assert_allclose(got.clip(0.01, 0.99).to_numpy(), risk.to_numpy(), rtol=0, atol=1e-9)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
