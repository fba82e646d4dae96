"""Orchestration only where there is an orchestrator.

The flows are Prefect flows: served on a schedule, run against a Prefect server
(``PREFECT_API_URL``), or under a test harness, every step is a task run with its state,
logs and artifacts. A verb typed in a terminal without ``PREFECT_API_URL`` would otherwise
start Prefect's temporary local server for each command (7-13 s here, and a process left
behind when the command is killed); there the same flow functions run as plain Python:
``run_flow`` calls the flow's function, ``step`` calls the task's function, ``run_logger``
logs to the terminal, and artifacts and events (which need a server) are skipped.

Prefect itself is imported only when something is orchestrated: ``flow`` and ``step`` build
their Prefect objects on first use, so a plain verb never imports Prefect (about 1 s here).

``CHURN_ORCHESTRATION`` chooses for the verbs: ``auto`` (the default: through Prefect when
``PREFECT_API_URL`` is set), ``prefect`` (always; without a server, on Prefect's temporary
local server with its run history in ``<home>/prefect``), ``off`` (plain Python even when
``PREFECT_API_URL`` is set).

``retrying`` retries a call that failed for a transient reason (a network error, a database
connection lost or refused, an MLflow server that did not answer) with exponential backoff
and jitter; a contract error or a missing file is raised at once.
"""
from __future__ import annotations

import functools
import logging
import os
import random
import re
import sys
import time
from collections.abc import Callable
from typing import Any

LOGGER = "churn"
MODES = ("auto", "prefect", "off")


def mode() -> str:
    """``CHURN_ORCHESTRATION`` (auto, prefect or off); a wrong value is a ``ValueError``."""
    value = os.environ.get("CHURN_ORCHESTRATION", "auto").strip().lower() or "auto"
    if value not in MODES:
        raise ValueError(f"CHURN_ORCHESTRATION={value!r}: expected one of {', '.join(MODES)}")
    return value


def orchestrated() -> bool:
    """Inside a Prefect flow run (served, on a server, under a test harness)."""
    if "prefect.context" not in sys.modules:  # no flow run can exist before Prefect is imported
        return False
    from prefect.context import FlowRunContext

    return FlowRunContext.get() is not None


def server_configured() -> bool:
    """``PREFECT_API_URL`` in the environment, or in Prefect's current settings (a test
    harness, a profile) once Prefect has been imported."""
    if os.environ.get("PREFECT_API_URL"):
        return True
    if "prefect.settings" not in sys.modules:
        return False
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)


def through_prefect() -> bool:
    """Whether ``run_flow`` runs a flow through Prefect (see ``CHURN_ORCHESTRATION``)."""
    if orchestrated():
        return True  # a sub-flow of a flow run under way
    chosen = mode()
    return chosen == "prefect" or (chosen == "auto" and server_configured())


def local_prefect_server() -> bool:
    """Whether the verbs will start Prefect's temporary local server (and use ``prefect.db``)."""
    return through_prefect() and not server_configured()


class LazyFlow:
    """A Prefect flow built on first use: calling it is calling the Prefect flow (a flow run;
    a sub-flow inside one), ``.fn`` is the plain function, any other attribute is the
    Prefect flow's."""

    def __init__(self, fn: Callable, **options: Any):
        functools.update_wrapper(self, fn)
        self.fn = fn
        self._options = options
        self._flow = None

    @property
    def flow(self):
        if self._flow is None:
            from prefect import flow

            self._flow = flow(self.fn, **self._options)
        return self._flow

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.flow(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("fn", "_options", "_flow"):
            raise AttributeError(name)
        return getattr(self.flow, name)

    def __repr__(self) -> str:
        return f"LazyFlow({self.fn.__qualname__}, {self._options})"


def flow(fn: Callable | None = None, **options: Any) -> Any:
    """``@flow(name=...)``: Prefect's flow decorator, with Prefect imported on first use."""
    if fn is None:
        return functools.partial(flow, **options)
    return LazyFlow(fn, **options)


class Step:
    """A flow step: a Prefect task run inside a flow run (never cached on its arguments:
    DataFrames make Prefect's input hashing slow or wrong), the plain function outside one.
    ``.task`` is the Prefect task, ``.fn`` the function."""

    def __init__(self, fn: Callable, **task_options: Any):
        functools.update_wrapper(self, fn)
        self.fn = fn
        self._options = task_options
        self._task = None

    @property
    def task(self):
        if self._task is None:
            from prefect import task
            from prefect.cache_policies import NO_CACHE

            options = dict(self._options)
            self._task = task(self.fn, cache_policy=options.pop("cache_policy", NO_CACHE), **options)
        return self._task

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.task(*args, **kwargs) if orchestrated() else self.fn(*args, **kwargs)


def step(fn: Callable | None = None, **task_options: Any) -> Any:
    """``@step`` or ``@step(**task options)``: see ``Step``."""
    if fn is None:
        return functools.partial(step, **task_options)
    return Step(fn, **task_options)


def run_flow(flow: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``flow`` through Prefect when a server is configured or a flow run is under way
    (then it is a sub-flow), or when ``CHURN_ORCHESTRATION=prefect``; otherwise its
    function, as plain Python."""
    if through_prefect():
        return flow(*args, **kwargs)
    return flow.fn(*args, **kwargs)


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a flow or task run, the ``churn`` logger outside one."""
    if orchestrated():
        from prefect.exceptions import MissingContextError
        from prefect.logging import get_run_logger

        try:
            return get_run_logger()
        except MissingContextError:
            pass
    return logging.getLogger(LOGGER)


class _Stderr(logging.StreamHandler):
    """A handler on whatever ``sys.stderr`` is when a line is written (a test runner swaps it)."""

    _churn = True

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def log_to_terminal(level: int | str | None = None) -> None:
    """Show the ``churn`` logger's lines on stderr (for verbs run as plain Python). The level:
    ``level``, else ``CHURN_LOG_LEVEL``, else ``PREFECT_LOGGING_LEVEL`` (what quieted the
    verbs when they ran through Prefect), else INFO."""
    level = level or os.environ.get("CHURN_LOG_LEVEL") or os.environ.get("PREFECT_LOGGING_LEVEL") or logging.INFO
    if isinstance(level, str):
        level = logging.getLevelName(level.strip().upper())
        level = level if isinstance(level, int) else logging.INFO
    logger = logging.getLogger(LOGGER)
    if not any(getattr(h, "_churn", False) for h in logger.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)-7s | %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


# -- retries ------------------------------------------------------------------------------------

def _transient_one(exc: BaseException) -> bool:
    from features.inputs.contract import network_os_error

    name, module = type(exc).__name__, type(exc).__module__ or ""
    if network_os_error(exc):  # refused, reset, timed out, unreachable, a stale network file handle
        return True
    if module.startswith("sqlalchemy") and name in ("OperationalError", "InterfaceError", "DisconnectionError",
                                                    "TimeoutError"):
        return "unable to open database file" not in str(exc)  # a wrong path is not transient
    if module.startswith(("requests", "urllib3")) and name in (
            "ConnectionError", "Timeout", "ConnectTimeout", "ReadTimeout", "ChunkedEncodingError", "ProtocolError",
            "MaxRetryError", "NewConnectionError", "ProxyError"):
        return True
    if module.startswith("mlflow") and name == "MlflowException":
        text = str(exc)  # what MLflow's REST client raises when the server does not answer
        return "failed with exception" in text and any(
            word in text for word in ("ConnectionError", "Max retries exceeded", "Connection refused", "timed out",
                                      "RemoteDisconnected", "Connection aborted", "Read timed out"))
    return False


def is_transient(exc: BaseException) -> bool:
    """A failure worth trying again: a network ``OSError`` (refused, reset, timed out,
    unreachable, a stale network file handle), SQLAlchemy's ``OperationalError`` (a database
    that refused, dropped or timed out the connection), an MLflow server that did not answer.
    The exception or one it was raised from (``__cause__``/``__context__``) counts; an
    exception with a ``transient`` attribute decides itself (a ``ContractError`` only when
    every problem is a source that did not answer, never for the data itself)."""
    decided = getattr(exc, "transient", None)
    if decided is not None:
        return bool(decided)
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if _transient_one(current):
            return True
        stack += [current.__cause__, current.__context__]
    return False


def backoff_delays(attempts: int, base: float, cap: float, jitter: float, rng: random.Random | None = None) -> list[float]:
    """The waits between ``attempts`` tries: ``base * 2**i`` capped at ``cap``, each spread by
    up to ``jitter`` of itself either way (so that many runs retrying together do not hit
    the server together)."""
    rng = rng or random.Random()
    out = []
    for i in range(max(attempts - 1, 0)):
        delay = min(cap, base * 2 ** i)
        out.append(max(0.0, delay * (1 + jitter * rng.uniform(-1, 1))))
    return out


_CREDENTIALS = re.compile(r"://([^:/@\s]+):[^@/\s]+@")  # user:password@ in a URL: the password is never logged


def retrying(fn: Callable, *args: Any, attempts: int = 3, base: float = 1.0, cap: float = 30.0, jitter: float = 0.5,
             retry_on: Callable[[BaseException], bool] = is_transient, what: str | None = None,
             sleep: Callable[[float], None] = time.sleep, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, tried up to ``attempts`` times while it fails with an error
    ``retry_on`` accepts (default ``is_transient``), waiting ``backoff_delays`` between
    tries; each retry is logged. Any other error, or the last one, is raised as it is."""
    delays = backoff_delays(attempts, base, cap, jitter)
    name = what or getattr(fn, "__qualname__", repr(fn))
    for attempt in range(1, attempts + 1):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if attempt >= attempts or not retry_on(exc):
                raise
            delay = delays[attempt - 1]
            line = _CREDENTIALS.sub(r"://\1:***@", (str(exc).splitlines() or [""])[0][:300])
            run_logger().warning("%s failed (%s: %s); attempt %d of %d in %.1f s", name, type(exc).__name__, line,
                                 attempt + 1, attempts, delay)
            sleep(delay)
    raise AssertionError("unreachable")
