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
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert run_flow(pipeline, 21) == (42, False)
    assert isinstance(run_logger(), logging.Logger)


def test_under_prefect_the_steps_are_task_runs(prefect_harness):
    # calling the flow object is orchestrated (here by the test harness): the step ran as a task
    assert pipeline(4) == (8, True)
    assert double.task.name == "double" and double.fn(3) == 6
