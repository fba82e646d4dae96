"""Orchestration only where there is an orchestrator.

The flows are Prefect flows: served on a schedule, run against a Prefect server
(``PREFECT_API_URL``), or under a test harness, every step is a task run with its state,
logs and artifacts. A verb typed in a terminal without ``PREFECT_API_URL`` would otherwise
start Prefect's temporary local server for each command (7-13 s here, and a process left
behind when the command is killed); there the same flow functions run as plain Python:
``run_flow`` calls the flow's function, ``step`` calls the task's function, ``run_logger``
logs to the terminal, and artifacts and events (which need a server) are skipped.
"""
from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from typing import Any

from prefect import Flow, task
from prefect.cache_policies import NO_CACHE

LOGGER = "churn"


def orchestrated() -> bool:
    """Inside a Prefect flow run (served, on a server, under a test harness)."""
    from prefect.context import FlowRunContext

    return FlowRunContext.get() is not None


def server_configured() -> bool:
    return bool(os.environ.get("PREFECT_API_URL"))


def run_flow(flow: Flow, *args: Any, **kwargs: Any) -> Any:
    """Run ``flow`` through Prefect when a server is configured or a flow run is under way
    (then it is a sub-flow); otherwise its function, as plain Python."""
    if server_configured() or orchestrated():
        return flow(*args, **kwargs)
    return flow.fn(*args, **kwargs)


def step(fn: Callable | None = None, **task_options: Any) -> Callable:
    """A flow step: a Prefect task (never cached on its arguments) inside a flow run, the
    plain function outside one. ``.task`` is the Prefect task."""
    if fn is None:
        return functools.partial(step, **task_options)
    prefect_task = task(fn, cache_policy=task_options.pop("cache_policy", NO_CACHE), **task_options)

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        return prefect_task(*args, **kwargs) if orchestrated() else fn(*args, **kwargs)

    run.task = prefect_task
    run.fn = fn
    return run


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a flow or task run, the ``churn`` logger outside one."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(LOGGER)


def log_to_terminal(level: int = logging.INFO) -> None:
    """Show the ``churn`` logger's lines on stderr (for verbs run as plain Python)."""
    logger = logging.getLogger(LOGGER)
    if not any(getattr(h, "_churn", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)-7s | %(message)s", "%H:%M:%S"))
        handler._churn = True
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
