"""`churn serve` against a real Prefect server (the ephemeral API never runs the scheduler):
the deployments carry the config's cron and time zone, and a hand-started train run leads to
a completed score run and a monitor run with no other command."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import stop_group

CHURN = Path(sys.executable).with_name("churn")
PREFECT = Path(sys.executable).with_name("prefect")


def _query(url: str, coro):
    """Run one client call against the test's server."""
    from prefect.client.orchestration import PrefectClient

    async def run():
        async with PrefectClient(url) as client:
            return await coro(client)
    return asyncio.run(run())


def _wait(url: str, check, seconds: float):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = _query(url, check)
        if found:
            return found
        time.sleep(3)
    return None


def test_serve_schedules_and_chains_train_score_monitor(prefect_server, sim_data, tmp_path):
    server = prefect_server
    config = tmp_path / "config.yaml"
    config.write_text("schedule: {timezone: Europe/Paris, train: '7 2 1 * *', score: '17 6 * * 1', monitor: '37 6 * * 1'}\n"
                      "score: {out_dir: lists}\n"
                      "train: {num_boost_round: 80, backtest_folds: 0}\n")
    env = {**os.environ, "PREFECT_API_URL": server, "DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true",
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "PREFECT_LOGGING_LEVEL": "WARNING"}
    served = subprocess.Popen([str(CHURN), "serve", "--config", str(config), "--data", str(sim_data), "--home",
                               str(tmp_path / "home")], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        async def deployments(client):
            found = await client.read_deployments()
            return found if len(found) == 3 else None
        found = _wait(server, deployments, 120)
        assert found, "churn serve did not create its three deployments"
        schedules = {d.name: [(s.schedule.cron, s.schedule.timezone) for s in d.schedules] for d in found}
        assert schedules == {"churn-train": [("7 2 1 * *", "Europe/Paris")], "churn-score": [("17 6 * * 1", "Europe/Paris")],
                             "churn-monitor": [("37 6 * * 1", "Europe/Paris")]}
        score = next(d for d in found if d.name == "churn-score")
        assert score.parameters["out"] == str(tmp_path / "lists") and score.parameters["data"] == str(sim_data)

        train = next(d for d in found if d.name == "churn-train")
        _query(server, lambda client: client.create_flow_run_from_deployment(train.id))

        async def finished(client, flow: str):
            from prefect.client.schemas.filters import (FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterState,
                                                        FlowRunFilterStateType)

            done = FlowRunFilterState(type=FlowRunFilterStateType(any_=["COMPLETED", "FAILED", "CRASHED"]))
            runs = await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow])),
                                               flow_run_filter=FlowRunFilter(state=done))
            return runs or None
        for flow in ("scheduled-train", "scheduled-score", "scheduled-monitor"):
            runs = _wait(server, lambda client, f=flow: finished(client, f), 420)
            assert runs, f"no {flow} run finished; churn serve said:\n{_output(served)}"
            assert runs[0].state.is_completed(), f"{flow}: {runs[0].state}\n{_output(served)}"
        assert (tmp_path / "lists" / "at_risk.parquet").is_file() and (tmp_path / "lists" / "monitor.json").is_file()
    finally:
        stop_group(served)



def _output(proc: subprocess.Popen) -> str:
    stop_group(proc)
    return proc.stdout.read()[-4000:] if proc.stdout else ""
