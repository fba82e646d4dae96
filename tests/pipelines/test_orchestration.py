"""Steps are Prefect tasks inside a flow run and plain functions outside one; a flow runs
through Prefect only where there is an orchestrator."""
from __future__ import annotations

import logging

from prefect import flow

from pipelines.orchestration import orchestrated, run_flow, run_logger, step


@step
def double(x: int) -> int:
    return 2 * x


@step
def inside() -> bool:
    return orchestrated()


@flow(name="orchestration-test")
def pipeline(x: int) -> tuple[int, bool]:
    run_logger().info("running")
    return double(x), inside()


def test_without_a_server_the_flow_is_plain_python(monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("CHURN_ORCHESTRATION", raising=False)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):  # not even the session's test harness
        assert run_flow(pipeline, 21) == (42, False)
    assert isinstance(run_logger(), logging.Logger)


def test_a_test_harness_counts_as_a_server(prefect_harness, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("CHURN_ORCHESTRATION", raising=False)
    assert run_flow(pipeline, 2) == (4, True)


def test_under_prefect_the_steps_are_task_runs(prefect_harness):
    # calling the flow object is orchestrated (here by the test harness): the step ran as a task
    assert pipeline(4) == (8, True)
    assert double.task.name == "double" and double.fn(3) == 6


# -- the verbs without a server: no Prefect, no process left behind --------------------------------

import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import psutil  # noqa: E402
import pytest  # noqa: E402

CHURN = Path(sys.executable).with_name("churn")


def _plain_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "CHURN_ORCHESTRATION")}
    return {**env, "CHURN_LOG_LEVEL": "INFO", **extra}


def test_importing_the_verbs_and_flows_does_not_import_prefect():
    code = ("import sys, pipelines.cli, pipelines.flows, pipelines.preflight; "
            "print(sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.')))")
    out = subprocess.run([sys.executable, "-c", code], env=_plain_env(), capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_a_flow_object_is_built_on_first_use_and_is_a_prefect_flow():
    from prefect import Flow

    from pipelines.flows import score_flow, validate_task

    assert isinstance(score_flow.flow, Flow) and score_flow.name == "score"
    assert score_flow.fn.__name__ == "score_flow" and validate_task.task.name == "validate_task"


def test_orchestration_mode_is_read_from_the_environment(monkeypatch):
    from pipelines.orchestration import local_prefect_server, mode, through_prefect

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("CHURN_ORCHESTRATION", "prefect")
    assert mode() == "prefect" and through_prefect()
    monkeypatch.setenv("CHURN_ORCHESTRATION", "off")
    assert not through_prefect() and not local_prefect_server()
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:1/api")
    assert not through_prefect()
    monkeypatch.setenv("CHURN_ORCHESTRATION", "auto")
    assert through_prefect() and not local_prefect_server()
    monkeypatch.setenv("CHURN_ORCHESTRATION", "sometimes")
    with pytest.raises(ValueError, match="CHURN_ORCHESTRATION='sometimes': expected one of auto, prefect, off"):
        mode()


def test_under_the_harness_the_score_flow_runs_its_steps_as_task_runs(trained, sim_data, e2e_settings, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterId

    from pipelines.flows import score_flow

    _, home = trained
    state = score_flow(sim_data, tmp_path / "out", e2e_settings, home, return_state=True)
    assert state.is_completed()
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
    names = {t.name.rsplit("-", 1)[0] for t in tasks}
    assert {"validate_task", "scoring_features_task", "lists_task"} <= names, names
    assert all(t.state.is_completed() for t in tasks)
    assert {"at-risk-top", "at-risk-summary"} <= {a.key for a in artifacts}


@pytest.fixture
def score_args(trained, sim_data, tmp_path):
    _, home = trained
    config = tmp_path / "config.yaml"
    config.write_text("registry: {model_name: e2e, experiment: e2e}\n")
    return [str(CHURN), "score", "--data", str(sim_data), "--out", str(tmp_path / "out"), "--config", str(config),
            "--home", str(home)]


def _session_processes(sid: int) -> list[psutil.Process]:
    """Processes still alive in the session ``sid`` (every descendant of a verb started as a
    session leader, even one re-parented after its parent died)."""
    alive = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getsid(proc.pid) == sid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return alive


def test_a_verb_without_a_server_starts_no_process(score_args):
    proc = subprocess.Popen(score_args, env=_plain_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    seen: dict[int, str] = {}
    parent = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            for child in parent.children(recursive=True):
                seen[child.pid] = " ".join(child.cmdline())
        except psutil.Error:
            pass
        time.sleep(0.05)
    output = proc.stdout.read()
    proc.stdout.close()
    assert proc.returncode == 0, output
    assert "clients who can still be kept" in output and "scored" in output  # the flow's log line, on stderr
    assert "temporary server" not in output.lower() and "uvicorn" not in output
    assert not any("uvicorn" in cmd or "prefect" in cmd for cmd in seen.values()), seen
    assert seen == {}, seen  # nothing at all: a plain verb is one process


@pytest.mark.parametrize("moment", ["importing", "validated", "scored", "3 s"])
def test_a_verb_killed_at_any_moment_leaves_no_process(score_args, moment):
    """SIGKILL while importing, after validation, while writing the outputs, at 3 s: no
    process of the verb's session survives it."""
    proc = subprocess.Popen(score_args, env=_plain_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    reached = threading.Event()
    lines: list[str] = []

    def read():
        for line in proc.stdout:
            lines.append(line)
            if moment in line:
                reached.set()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if moment == "importing":
        time.sleep(0.3)
    elif moment.endswith(" s"):
        time.sleep(float(moment.split()[0]))
    else:
        assert reached.wait(120), "".join(lines)
    descendants = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    reader.join(10)
    deadline = time.monotonic() + 3
    while _session_processes(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _session_processes(proc.pid) == []
    assert [p for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []
