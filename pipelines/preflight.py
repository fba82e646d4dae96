"""Checks a verb makes before it starts work, so that a broken setup fails in seconds with one
line that says what is wrong and what to do, and the previous outputs stay as they were.

Each check raises ``SetupError`` (the CLI prints it and exits 2)."""
from __future__ import annotations

import errno
import os
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path

TRACKING_TIMEOUT_SECONDS = 10
DRIVERS = {"postgresql": "psycopg2", "mysql": "pymysql", "mssql": "pyodbc"}


class SetupError(RuntimeError):
    """A setup problem a person must fix (a path, a store, a server, a driver)."""


def check_output_folder(path: Path, flag: str = "--out") -> None:
    """``path`` must be a folder that exists or can be made, and be writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SetupError(f"{flag} {path} is a file, not a folder: give a folder for the outputs")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise SetupError(f"{flag} {path}: {probe} is a file, so the folder cannot be made")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise SetupError(f"{flag} {path}: {probe} is not writable (read-only file system or permissions): "
                         "choose another folder")


def check_output_file(path: Path, flag: str = "--out") -> None:
    """``path`` must be a file name in a folder that exists or can be made (not a folder)."""
    path = Path(path)
    if path.is_dir():
        raise SetupError(f"{flag} {path} is a folder: give a file name ending in .parquet or .csv")
    try:
        check_output_folder(path.parent, flag)
    except SetupError as exc:
        raise SetupError(f"{flag} {path}: its folder cannot be written ({exc})") from exc


def check_sqlite(path: Path, what: str, fix: str) -> None:
    """An existing SQLite file must open and be a database (a corrupt or foreign file fails here
    at once, not after minutes of retries); a missing one is created later."""
    path = Path(path)
    if not path.exists():
        return
    if path.is_dir():
        raise SetupError(f"{what} {path} is a folder, not a SQLite database: {fix}")
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as con:
            con.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError as exc:
        raise SetupError(f"{what} {path} cannot be read ({exc}): {fix}") from exc


def check_tracking(home: Path) -> None:
    """The MLflow store: the local SQLite file readable; a tracking server answering within
    ``TRACKING_TIMEOUT_SECONDS``; a database URI with its driver installed."""
    from models.registry import shown_uri

    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri:
        check_sqlite(Path(home).resolve() / "mlflow" / "mlflow.db", "the MLflow store",
                     "move it aside to start a new store, or set MLFLOW_TRACKING_URI")
        return
    scheme = uri.split(":", 1)[0].lower()
    if scheme == "sqlite":
        check_sqlite(Path(uri.split(":///", 1)[-1]), "the MLflow store (MLFLOW_TRACKING_URI)",
                     "move it aside or point MLFLOW_TRACKING_URI elsewhere")
    elif scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=TRACKING_TIMEOUT_SECONDS):
                pass
        except urllib.error.HTTPError:
            pass  # it answers: a proxy or an auth layer in front is the server's business
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SetupError(f"the MLflow tracking server {shown_uri(uri)} does not answer ({reason}): start it or "
                             "fix MLFLOW_TRACKING_URI") from exc
    else:
        dialect = scheme.split("+", 1)
        driver = dialect[1] if len(dialect) > 1 else DRIVERS.get(dialect[0])
        if driver:
            try:
                __import__(driver)
            except ImportError as exc:
                raise SetupError(f"MLFLOW_TRACKING_URI {shown_uri(uri)} needs the Python driver {driver!r}, which is "
                                 f"not installed: add it to the environment (pip install {driver}) or use another store") from exc


def check_orchestration() -> None:
    """``CHURN_ORCHESTRATION`` is auto, prefect or off."""
    from pipelines.orchestration import mode

    try:
        mode()
    except ValueError as exc:
        raise SetupError(str(exc)) from exc


def check_prefect_home() -> None:
    """Prefect's local database (used only when the verbs run on Prefect's temporary local
    server: CHURN_ORCHESTRATION=prefect without PREFECT_API_URL) must be readable: a corrupt
    file otherwise makes the temporary server time out after two minutes."""
    from pipelines.orchestration import local_prefect_server

    if not local_prefect_server():
        return
    home = os.environ.get("PREFECT_HOME")
    if home:
        check_sqlite(Path(home) / "prefect.db", "Prefect's local database",
                     "move it aside (the run history in it is lost) or set PREFECT_API_URL to a Prefect server")


def describe_os_error(exc: OSError) -> str | None:
    """One line for the file-system errors people can fix; None for any other."""
    where = f" {exc.filename}" if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return f"no space left on the device of{where}: free space or choose another --out; the previous outputs are intact"
    if exc.errno == errno.EROFS:
        return f"the file system of{where} is read-only: choose another --out; the previous outputs are intact"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"no permission to write{where}: choose another --out or fix its permissions"
    if exc.errno == errno.ENOTDIR:
        return f"{where.strip()}: a file stands where a folder is needed"
    return None
