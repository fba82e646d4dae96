"""Feature tables kept between runs, keyed on what they are built from.

A scheduled or repeated run on the same data (a weekly scoring after a retraining on the
same extract, a scoring run again with another ``--out``) would rebuild the same feature
table; ``FeatureCache.cached(fn, tables, *args, **kwargs)`` builds it once and reads it back
afterwards. The key is the SHA-256 of

- the builder (``fn``'s module and name) and the code of the ``features`` package (any
  edit to a feature's definition misses the cache);
- each input table: a Parquet or CSV file by its resolved path, size and modification time
  (nanoseconds), an in-memory table (a cleaned or SQL-read frame) by a hash of its
  content, column names and dtypes;
- the other arguments (cutoffs, the feature config, channels, horizon ...), as JSON. A
  DataFrame is never part of a key other than as an input table (hashing arbitrary
  arguments is what makes Prefect's own task caching slow or wrong on frames,
  PrefectHQ/prefect#17547, #16185): ``cached`` refuses one.

Entries are Parquet files ``<folder>/<key>.parquet`` written atomically; the ``keep`` most
recently used are kept. An entry that cannot be read is rebuilt; a cache that cannot be
written is skipped with a warning (the run goes on).
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

LOGGER = logging.getLogger("churn")
PACKAGE = Path(__file__).resolve().parent


@functools.cache
def code_version() -> str:
    """SHA-256 (16 hex digits) of the ``features`` package's Python sources."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(str(path.relative_to(PACKAGE)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """A hash of a frame's content, column names and dtypes."""
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    digest.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    return digest.hexdigest()


def source_fingerprint(source: Any) -> str:
    """A file by its path, size and modification time; a frame by its content."""
    if isinstance(source, pd.DataFrame):
        return f"frame:{frame_fingerprint(source)}"
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).resolve()
        stat = path.stat()
        return f"file:{path}:{stat.st_size}:{stat.st_mtime_ns}"
    raise TypeError(f"an input table must be a file path or a DataFrame, not {type(source).__name__}")


def _plain(value: Any) -> Any:
    """``value`` as JSON-ready data for a key; a DataFrame or an unknown object is refused."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_plain(v) for v in value]
        return sorted(items, key=json.dumps) if isinstance(value, (set, frozenset)) else items
    if hasattr(value, "model_dump"):  # a pydantic settings section (the feature config)
        return {"__model__": type(value).__name__, **_plain(value.model_dump(mode="json"))}
    if isinstance(value, (pd.DataFrame, pd.Series)):
        raise TypeError("a DataFrame argument cannot key the feature cache: pass it as an input table")
    raise TypeError(f"an argument of type {type(value).__name__} cannot key the feature cache")


def cache_key(fn: Callable, tables: Mapping[str, Any], *args: Any, **kwargs: Any) -> str:
    """The SHA-256 of the builder, the package's code, the input tables and the arguments."""
    payload = {"fn": f"{fn.__module__}.{fn.__qualname__}", "code": code_version(),
               "tables": {name: source_fingerprint(tables[name]) for name in sorted(tables)},
               "args": _plain(list(args)), "kwargs": _plain(kwargs)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class FeatureCache:
    """Feature tables under ``folder`` (None: off, every call builds)."""

    def __init__(self, folder: Path | None, keep: int = 10):
        self.folder = Path(folder) if folder is not None else None
        self.keep = keep
        self.hits = 0
        self.misses = 0

    @classmethod
    def off(cls) -> "FeatureCache":
        return cls(None)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.parquet"

    def cached(self, fn: Callable[..., pd.DataFrame], tables: Mapping[str, Any], *args: Any, **kwargs: Any) -> pd.DataFrame:
        """``fn(tables, *args, **kwargs)``, read from the cache when the same inputs and
        arguments built it before, else built and kept."""
        if self.folder is None:
            return fn(tables, *args, **kwargs)
        key = cache_key(fn, tables, *args, **kwargs)
        path = self.path(key)
        if path.is_file():
            try:
                frame = pd.read_parquet(path)
            except Exception as exc:  # a truncated or foreign file: rebuilt below
                LOGGER.warning("feature cache entry %s cannot be read (%s): rebuilding it", path, exc)
            else:
                self.hits += 1
                try:
                    os.utime(path)  # most recently used
                except OSError:
                    pass
                LOGGER.info("features read from the cache (%s, %d rows)", path.name[:12], len(frame))
                return frame
        self.misses += 1
        frame = fn(tables, *args, **kwargs)
        self._store(path, frame)
        return frame

    def _store(self, path: Path, frame: pd.DataFrame) -> None:
        from features.io import write_atomic

        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, lambda tmp: frame.to_parquet(tmp, index=False))
            self.prune()
        except (OSError, ValueError, TypeError) as exc:  # a full disk, a frame Parquet cannot hold
            LOGGER.warning("feature cache not written to %s (%s): the next run builds the features again", path, exc)

    def prune(self) -> None:
        """Keep the ``keep`` most recently used entries (and no temporary file of a killed write)."""
        entries = sorted(self.folder.glob("*.parquet"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
        for stale in entries[self.keep:]:
            stale.unlink(missing_ok=True)
        for tmp in self.folder.glob(".*.tmp"):
            try:
                if time.time() - tmp.stat().st_mtime > 3600:  # a write killed long ago, not one under way
                    tmp.unlink(missing_ok=True)
            except OSError:
                pass
