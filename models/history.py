"""Each scoring into an output folder is kept: ``OUT/history/<as_of>/`` (as_of written
YYYY-MM-DD) holds its files, and the files at ``OUT/`` are those of the latest as_of in the
folder. What changed since the previous scoring is read from the history.

A scoring's files are replaced as one set, never one by one:

- the set (both lists as Parquet and CSV, ``at_risk.xlsx``, ``report.html``,
  ``summary.json``, ``lineage.json`` and the ``validation/`` report) is built in a staging
  folder ``OUT/.staging-<pid>-<hex>/`` and flushed to disk (fsync);
- it becomes ``OUT/history/<as_of>/`` by one rename (a scoring of a date already kept
  exchanges the two folders in one step, ``renameat2(RENAME_EXCHANGE)``; files of the old
  folder that are not part of a set, such as ``monitor.json``, are carried over);
- ``OUT/.latest`` is a relative symbolic link to the latest set's folder, and each name of
  the set at ``OUT/`` is a fixed link through it (``OUT/at_risk.csv -> .latest/at_risk.csv``).
  Publishing a later date replaces ``.latest`` by one rename, so every name at ``OUT/``
  moves to the new set at the same instant. With ``score.history: false`` the set's folder
  is a hidden ``OUT/.set-<hex>/`` instead of a history folder.

A run killed at any point leaves ``OUT/`` showing either the whole previous set or the
whole new set; its staging folder and temporary links are removed by the next scoring into
the folder (only names of these patterns, never other files).
"""
from __future__ import annotations

import atexit
import ctypes
import errno
import os
import re
import shutil
import signal
import uuid
from pathlib import Path

import pandas as pd

HISTORY = "history"
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
LATEST = ".latest"
SET_NAMES = ("at_risk.parquet", "at_risk.csv", "win_back.parquet", "win_back.csv", "at_risk.xlsx", "report.html",
             "summary.json", "lineage.json", "validation")
STAGING = re.compile(r"^\.staging-(\d+)-[0-9a-f]{12}$")
REPLACED = re.compile(r"^\.replaced-(\d{4}-\d{2}-\d{2})-(\d+)-[0-9a-f]{12}$")
SET_DIR = re.compile(r"^\.set-[0-9a-f]{12}$")
TMP_NAME = re.compile(r"^\.(" + "|".join(re.escape(n) for n in (*SET_NAMES, LATEST)) + r")\.[A-Za-z0-9_]+\.tmp$")
KILL_AT = "CHURN_TEST_KILL_AT"  # test-only: SIGKILL this process at the n-th step of writing a set
_steps = 0
_mine: set[Path] = set()


def history_dir(out_dir: Path, as_of: pd.Timestamp) -> Path:
    return Path(out_dir) / HISTORY / pd.Timestamp(as_of).strftime("%Y-%m-%d")


def scorings(out_dir: Path) -> list[str]:
    """The as_of days kept in ``out_dir``'s history (each with its retention list), oldest first."""
    root = Path(out_dir) / HISTORY
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if DAY.match(p.name) and (p / "at_risk.parquet").is_file())


def previous_scoring(out_dir: Path, as_of: pd.Timestamp) -> Path | None:
    """The folder of the latest scoring before ``as_of`` (None if there is none)."""
    day = pd.Timestamp(as_of).strftime("%Y-%m-%d")
    earlier = [d for d in scorings(out_dir) if d < day]
    return Path(out_dir) / HISTORY / earlier[-1] if earlier else None


def read_lists(folder: Path | None) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(at_risk, win_back) of a kept scoring (an empty win-back list when it had none)."""
    if folder is None:
        return None
    at_risk = pd.read_parquet(Path(folder) / "at_risk.parquet")
    wb = Path(folder) / "win_back.parquet"
    win_back = pd.read_parquet(wb) if wb.is_file() else pd.DataFrame({"customer_id": pd.Series(dtype="object")})
    return at_risk, win_back


def is_latest(out_dir: Path, as_of: pd.Timestamp) -> bool:
    """True unless the folder already holds a scoring of a later date."""
    day = pd.Timestamp(as_of).strftime("%Y-%m-%d")
    return all(d <= day for d in scorings(out_dir))


def step_done() -> None:
    """Count one step of writing a set (a file written, a rename). Test-only: with the
    environment variable ``CHURN_TEST_KILL_AT=n`` the process kills itself with SIGKILL at the
    n-th step, so a test can stop ``churn score`` between any two files."""
    global _steps
    _steps += 1
    wanted = os.environ.get(KILL_AT)
    if wanted and wanted.isdigit() and _steps == int(wanted):
        os.kill(os.getpid(), signal.SIGKILL)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a staging folder of this process that is not open is a failed scoring's
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def clean_leftovers(out_dir: Path) -> list[Path]:
    """Remove what killed or failed scorings left in ``out_dir``: staging folders of processes
    that no longer run, temporary links and files named after the set (``.at_risk.csv.*.tmp``,
    also in the history folders), hidden ``.set-*`` folders no longer shown, and a history
    folder moved aside while it was replaced (put back when its date is missing). Returns what
    was removed or restored; any other file is left alone."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    done = []
    shown = os.readlink(out_dir / LATEST) if (out_dir / LATEST).is_symlink() else None
    for path in out_dir.iterdir():
        name = path.name
        staging = STAGING.match(name)
        if staging and path not in _mine and not _alive(int(staging.group(1))):
            _remove(path)
            done.append(path)
        elif (replaced := REPLACED.match(name)) and not _alive(int(replaced.group(2))):
            kept = out_dir / HISTORY / replaced.group(1)
            if kept.exists():
                _remove(path)
            else:
                os.rename(path, kept)
            done.append(path)
        elif SET_DIR.match(name) and name != shown:
            _remove(path)
            done.append(path)
        elif TMP_NAME.match(name):
            _remove(path)
            done.append(path)
    root = out_dir / HISTORY
    for folder in root.iterdir() if root.is_dir() else ():
        if DAY.match(folder.name) and folder.is_dir():
            for path in folder.iterdir():
                if TMP_NAME.match(path.name):
                    _remove(path)
                    done.append(path)
    return done


def open_staging(out_dir: Path) -> Path:
    """A new staging folder ``out_dir/.staging-<pid>-<hex>/`` for one set, after removing what
    earlier killed or failed scorings left (``clean_leftovers``; in this process, a scoring
    into the same folder that failed before publishing)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _mine.difference_update({p for p in _mine if p.parent == out_dir})  # one scoring into a folder at a time
    clean_leftovers(out_dir)
    path = out_dir / f".staging-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    path.mkdir()
    _mine.add(path)
    return path


def discard_staging(staging: Path) -> None:
    """Remove a staging folder that will not be published."""
    _mine.discard(Path(staging))
    _remove(Path(staging))


@atexit.register
def _discard_all() -> None:
    for path in list(_mine):
        discard_staging(path)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_tree(folder: Path) -> None:
    """Flush every file and folder under ``folder`` (and the folder) to disk."""
    for root, _, files in os.walk(folder):
        for name in files:
            _fsync(Path(root) / name)
        _fsync(Path(root))


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``). False where the
    system or the file system cannot (macOS, NFS): the caller then falls back to two renames."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _carry_over(old: Path, new: Path) -> None:
    """Files of a kept folder that are not part of a set (``monitor.json``, ``monitor.html``)
    go along into the folder that replaces it."""
    for path in old.iterdir():
        if path.name in SET_NAMES or (new / path.name).exists() or not path.is_file():
            continue
        try:
            os.link(path, new / path.name)
        except OSError:
            shutil.copy2(path, new / path.name)


def _place(staging: Path, target: Path) -> None:
    """Move the complete set at ``staging`` to ``target`` (a history folder) in one step."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        os.rename(staging, target)
        return
    _carry_over(target, staging)
    sync_tree(staging)
    if exchange(staging, target):
        step_done()
        shutil.rmtree(staging)  # the previous set, now at the staging name
        return
    aside = staging.parent / f".replaced-{target.name}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    os.rename(target, aside)
    step_done()
    os.rename(staging, target)
    shutil.rmtree(aside)


def _link(out_dir: Path, name: str, target: str) -> None:
    """Make ``out_dir/name`` a symbolic link to ``target`` in one step (replacing a file, a
    link or, in a folder written by an earlier version, a folder)."""
    path = out_dir / name
    if path.is_symlink() and os.readlink(path) == target:
        return
    tmp = out_dir / f".{name}.{uuid.uuid4().hex[:12]}.tmp"
    os.symlink(target, tmp)
    if path.is_dir() and not path.is_symlink():
        if not exchange(tmp, path):
            aside = out_dir / f".{name}.{uuid.uuid4().hex[:12]}.tmp"
            os.rename(path, aside)
            os.rename(tmp, path)
            tmp = aside
        _remove(tmp)
    else:
        os.replace(tmp, path)
    step_done()


def _adopt_loose_files(out_dir: Path) -> None:
    """A folder written before sets were published as one (plain files at ``OUT/``): copy
    them into a hidden set folder shown through ``.latest`` and turn each into its link, so
    that the first publication replaces them all at once like any later one."""
    loose = [n for n in SET_NAMES if (out_dir / n).exists() and not (out_dir / n).is_symlink()]
    if not loose or (out_dir / LATEST).is_symlink():
        return
    folder = out_dir / f".set-{uuid.uuid4().hex[:12]}"
    folder.mkdir()
    for name in loose:
        src = out_dir / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, folder / name)
    sync_tree(folder)
    _link(out_dir, LATEST, folder.name)
    for name in loose:
        _link(out_dir, name, f"{LATEST}/{name}")


def publish_set(staging: Path, out_dir: Path, as_of: pd.Timestamp, *, keep_history: bool = True) -> Path:
    """Publish a complete set built in ``staging`` (see the module's docstring): returns the
    folder that now holds it (``OUT/history/<as_of>/``, or ``OUT/.set-<hex>/`` without
    history). The names at ``OUT/`` show it when it is the latest date kept there."""
    staging, out_dir = Path(staging), Path(out_dir)
    sync_tree(staging)
    names = sorted(p.name for p in staging.iterdir() if p.name in SET_NAMES)
    if keep_history:
        latest = is_latest(out_dir, as_of)
        target = history_dir(out_dir, as_of)
        _place(staging, target)
        _fsync(target.parent)
    else:
        latest = True
        target = out_dir / f".set-{uuid.uuid4().hex[:12]}"
        os.rename(staging, target)
    _mine.discard(staging)
    step_done()
    if latest:
        _adopt_loose_files(out_dir)
        for name in names:
            _link(out_dir, name, f"{LATEST}/{name}")  # dangling until .latest shows a set that has it
        _link(out_dir, LATEST, os.path.relpath(target, out_dir))
        _fsync(out_dir)
        clean_leftovers(out_dir)
    return target


REJECTED = "validation-rejected"


def keep_rejected(staging: Path, out_dir: Path) -> Path | None:
    """When the input stops a scoring (the gate, a broken contract), its validation report
    (the quarantine files people read to fix the extract) becomes ``OUT/validation-rejected/``
    (replacing the previous one), the staging folder is removed, and the set at ``OUT/``
    stays as it was. Returns the folder (None when validation wrote nothing)."""
    staging, out_dir = Path(staging), Path(out_dir)
    report = staging / "validation"
    target = out_dir / REJECTED
    try:
        if not report.is_dir():
            return None
        if target.is_dir() and not target.is_symlink():
            if exchange(report, target):
                return target
            shutil.rmtree(target)
        os.rename(report, target)
        return target
    finally:
        discard_staging(staging)
