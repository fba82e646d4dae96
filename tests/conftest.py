"""Test session isolation: offline, one Prefect test harness, a temporary MLflow store.

Environment variables are set in ``pytest_configure``, before any test module imports
prefect or mlflow (both read their settings at import).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="churn-tests-"))


def pytest_configure(config):
    from pipelines.cli import prepare_environment

    for key in ("PREFECT_HOME", "MPLCONFIGDIR", "PREFECT_API_URL", "MLFLOW_TRACKING_URI"):
        os.environ.pop(key, None)  # the session's own folders, whatever the caller's shell says
    prepare_environment(_SESSION_DIR)
    os.environ.update({
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "MLFLOW_TRACKING_URI": f"sqlite:///{_SESSION_DIR / 'mlflow.db'}",
    })


def pytest_unconfigure(config):
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return _SESSION_DIR


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test harness (a temporary API database) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(proc: subprocess.Popen, sig=signal.SIGTERM) -> None:
    """Stop a process group started by a test (``sig``, then SIGKILL after two minutes)."""
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory) -> str:
    """A real Prefect server (``prefect server start`` on a free port of 127.0.0.1, its own
    database), shared by the tests that need one: its API URL. Stopped at the end of the session."""
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path_factory.mktemp("prefect-server")),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "true"}
    env.pop("PREFECT_API_URL", None)
    prefect = Path(sys.executable).with_name("prefect")
    proc = subprocess.Popen([str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the Prefect server did not start")
            time.sleep(1)
        yield url
    finally:
        stop_group(proc, signal.SIGTERM)


@pytest.fixture(scope="session")
def sim_data(tmp_path_factory) -> Path:
    """A small simulated company (1,500 customers) in the input contract."""
    from features.simulate import simulate, write_dataset

    folder = tmp_path_factory.mktemp("data")
    write_dataset(simulate(1500, seed=3, truth_rollouts=0), folder)
    return folder


@pytest.fixture(scope="session")
def e2e_settings():
    from pipelines.settings import Settings

    return Settings().with_overrides(**{"train.num_boost_round": 150, "train.backtest_folds": 1,
                                        "registry.model_name": "e2e", "registry.experiment": "e2e"})


@pytest.fixture(scope="session")
def trained(prefect_harness, sim_data, e2e_settings, tmp_path_factory):
    """The train flow run once on the small company: (TrainResult, run folder)."""
    from pipelines.flows import train_flow

    home = tmp_path_factory.mktemp("home")
    return train_flow(sim_data, e2e_settings, home), home
