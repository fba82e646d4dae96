"""Customers in shards: the work of one shard is the single-machine work on its customers.

Everything the pipeline computes is per customer (features, labels, scores, reasons), so the
input splits by customer: a customer's rows of every table land in shard
``customer_hash(customer_id) % shards``, where the hash is the first 8 bytes (big-endian) of
the BLAKE2b digest of the canonical id's UTF-8 (the id as validation reads it: surrounding
space stripped, ``source.ids`` applied). It is written here, not borrowed from Python's
``hash`` (salted per process) or from a library (free to change between versions): the same
customer lands in the same shard on every machine, in every release. A missing id lands in
shard 0 (validation quarantines it there).

Layout of a sharded input (a Hive-style partitioned Parquet dataset, one folder per shard)::

    <root>/shard=<k>/<table>.parquet          the rows of shard k, columns as in the contract
    <root>/shard=<k>/.rows/<table>.parquet    their row numbers in the original table (optional)

``write_shards`` writes one from the raw tables (never holding more than a batch of rows);
``shard_folders`` opens one the user already has (a local path or an fsspec URL). The
per-shard steps (``validate_shard``, ``shard_features``) and the steps that join the shards
(``merge_validations``, ``channel_counts``, ``fit_btyd_across``, ``concat_shards``) are
plain functions of frames and paths: the engine (``pipelines.engine``) runs them wherever
it likes.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.config import FeatureConfig
from features.inputs.config import IdOptions, SourceConfig
from features.inputs.contract import TABLES, ContractError, ValidatedData
from features.io import write_atomic

ROWS = ".rows"  # the original row numbers of a shard's rows, per table
_ROW_REF = r"source_row (\d+)"
BATCH_ROWS = 1 << 20


# -- the stable hash ----------------------------------------------------------------------------

def customer_hash(customer_id: str) -> int:
    """64-bit hash of a canonical customer id: the first 8 bytes (big-endian) of BLAKE2b of its UTF-8."""
    return int.from_bytes(hashlib.blake2b(str(customer_id).encode("utf-8"), digest_size=8).digest(), "big")


def shard_of(customer_id: str | None, shards: int) -> int:
    """The shard of one canonical customer id (a missing id: shard 0)."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, not {shards}")
    if customer_id is None or (isinstance(customer_id, float) and np.isnan(customer_id)):
        return 0
    return customer_hash(customer_id) % shards


def shard_ids(ids: Iterable, shards: int) -> np.ndarray:
    """``shard_of`` of many canonical ids (each distinct id hashed once), as int32."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, not {shards}")
    codes, uniques = pd.factorize(pd.Series(ids, dtype="object") if not isinstance(ids, pd.Series) else ids)
    of_unique = np.fromiter((customer_hash(u) % shards for u in uniques), dtype=np.int64, count=len(uniques))
    out = np.zeros(len(codes), dtype=np.int32)
    known = codes >= 0
    out[known] = of_unique[codes[known]]
    return out


def canonical_ids(values: pd.Series, ids: IdOptions | None = None) -> pd.Series:
    """Raw customer ids as validation reads them (``features.inputs.parse``): text with
    surrounding space stripped, whole floats without '.0', null tokens missing, ``ids`` applied."""
    from features.inputs.parse import _parse_id

    return _parse_id(values, ids)


# -- writing and opening a sharded input --------------------------------------------------------

@dataclass(frozen=True)
class ShardedInput:
    """A partitioned dataset of the input tables: ``folders[k]`` holds shard k."""
    root: str
    folders: list[str]
    tables: list[str]

    @property
    def shards(self) -> int:
        return len(self.folders)


def _batches(source, batch_rows: int):
    """(schema, record batches) of a raw table: a frame or a ``ParquetFile`` (read batch by batch)."""
    from features.inputs.files import ParquetFile

    if isinstance(source, ParquetFile):
        file = pq.ParquetFile(source.path)
        return file.schema_arrow, file.iter_batches(batch_size=batch_rows)
    table = pa.Table.from_pandas(source, preserve_index=False)
    return table.schema, iter(table.to_batches(max_chunksize=batch_rows))


def write_shards(raw: Mapping, root: Path, shards: int, ids: IdOptions | None = None, *,
                 batch_rows: int = BATCH_ROWS) -> ShardedInput:
    """Write raw tables (``features.inputs.read_source``: contract column names; frames or
    ``ParquetFile``) as ``root/shard=<k>/<table>.parquet`` with their original row numbers in
    ``.rows/``, every shard holding every table (possibly empty). Reads ``batch_rows`` rows at a
    time; the dataset appears at ``root`` whole or not at all (written beside it, then renamed)."""
    root = Path(root)
    if shards < 1:
        raise ValueError(f"engine.shards must be at least 1, not {shards}")
    root.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    tables = [t for t in TABLES if t in raw]
    try:
        for k in range(shards):
            (work / f"shard={k}" / ROWS).mkdir(parents=True)
        for table in tables:
            schema, batches = _batches(raw[table], batch_rows)
            schema = schema.remove_metadata()
            writers = [pq.ParquetWriter(work / f"shard={k}" / f"{table}.parquet", schema, compression="zstd")
                       for k in range(shards)]
            row_writers = [pq.ParquetWriter(work / f"shard={k}" / ROWS / f"{table}.parquet",
                                            pa.schema([("source_row", pa.int64())])) for k in range(shards)]
            try:
                start = 0
                for batch in batches:
                    batch = pa.Table.from_batches([batch]).cast(schema) if batch.schema != schema else pa.Table.from_batches([batch])
                    if "customer_id" in batch.column_names:
                        shard = shard_ids(canonical_ids(batch.column("customer_id").to_pandas(), ids), shards)
                    else:
                        shard = np.zeros(batch.num_rows, dtype=np.int32)
                    rows = np.arange(start, start + batch.num_rows, dtype=np.int64)
                    order = np.argsort(shard, kind="stable")
                    bounds = np.searchsorted(shard[order], np.arange(shards + 1))
                    for k in range(shards):
                        take = order[bounds[k]:bounds[k + 1]]
                        if len(take):
                            writers[k].write_table(batch.take(pa.array(take)))
                            row_writers[k].write_table(pa.table({"source_row": rows[take]}))
                    start += batch.num_rows
            finally:
                for w in writers + row_writers:
                    w.close()
        if root.exists():
            shutil.rmtree(root)
        os.replace(work, root)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return ShardedInput(str(root), [str(root / f"shard={k}") for k in range(shards)], tables)


def _is_url(path: str) -> bool:
    return "://" in str(path)


def shard_folders(root: str | Path) -> ShardedInput:
    """Open a sharded input the user already has: a local folder or an fsspec URL
    (``s3://bucket/churn``: the filesystem's package must be installed) holding
    ``shard=0`` .. ``shard=<n-1>``, each with ``<table>.parquet`` files. Raises
    ``ContractError`` naming a missing shard or an empty dataset."""
    root = str(root).rstrip("/")
    if _is_url(root):
        import fsspec

        fs, base = fsspec.core.url_to_fs(root)
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(base, detail=False)]
        protocol = root.split("://", 1)[0]
        join = lambda name: f"{protocol}://{base.rstrip('/')}/{name}"  # noqa: E731
        files = lambda folder: [p.rsplit("/", 1)[-1] for p in fs.ls(folder.split("://", 1)[1], detail=False)]  # noqa: E731
    else:
        if not Path(root).is_dir():
            raise ContractError([f"sharded input {root} does not exist or is not a folder (expected shard=0, shard=1, ...)"])
        names = [p.name for p in Path(root).iterdir()]
        join = lambda name: str(Path(root) / name)  # noqa: E731
        files = lambda folder: [p.name for p in Path(folder).iterdir()]  # noqa: E731
    found = sorted(int(n.split("=", 1)[1]) for n in names if n.startswith("shard=") and n.split("=", 1)[1].isdigit())
    if not found:
        raise ContractError([f"sharded input {root} holds no shard=<k> folder (write one with engine.shards, or "
                             "lay out shard=0/orders.parquet, shard=1/orders.parquet, ...)"])
    missing = sorted(set(range(found[-1] + 1)) - set(found))
    if missing:
        raise ContractError([f"sharded input {root}: shard={missing[0]} is missing (shards 0..{found[-1]} expected)"])
    folders = [join(f"shard={k}") for k in found]
    tables = [t for t in TABLES if f"{t}.parquet" in files(folders[0])]
    if "orders" not in tables:
        raise ContractError([f"sharded input {root}: shard=0 has no orders.parquet"])
    return ShardedInput(root, folders, tables)


def _local(folder: str, scratch: Path) -> Path:
    """A shard's folder on local disk (copied from an object store into ``scratch``)."""
    if not _is_url(folder):
        return Path(folder)
    import fsspec

    fs, path = fsspec.core.url_to_fs(folder)
    target = Path(scratch) / Path(path).name
    fs.get(path.rstrip("/") + "/", str(target), recursive=True)
    return target


def shard_source(source: SourceConfig) -> SourceConfig:
    """The source settings that read a shard: its formats and id rules, but no file names or
    column mapping (the shards hold the contract's columns already)."""
    tables = {t: spec.model_copy(update={"file": None, "columns": {}, "table": None, "query": None})
              for t, spec in source.tables.items()}
    return source.model_copy(update={"kind": "files", "path": None, "tables": tables})


# -- validation per shard -----------------------------------------------------------------------

@dataclass
class ShardValidation:
    """One shard's validation: the validated tables written as Parquet (table -> path,
    ``<out_root>/shard_<k>/<table>.parquet``; the fingerprint hashes these files), and
    its quarantine (``source_row`` = the row in the original table when the shard knows it),
    reconciliation, rule counts, notes and a fingerprint of its clean rows."""
    shard: int
    tables: dict[str, str]
    quarantine: dict[str, pd.DataFrame]
    summary: pd.DataFrame
    row_problems: pd.DataFrame
    notes: list[str]
    data_end: pd.Timestamp
    fingerprint: dict[str, dict] = field(default_factory=dict)


def validate_shard(folder: str, shard: int, shards: int, source: SourceConfig, out_root: Path,
                   data_end: pd.Timestamp, earliest: pd.Timestamp | None = None,
                   check_placement: bool = True) -> ShardValidation:
    """Validate shard ``shard`` of ``shards`` (``features.inputs.validate_tables`` on its
    tables) and write its clean tables to ``out_root/shard_<k>/<table>.parquet``. Every
    customer id must hash to this shard (a dataset sharded some other way would split
    customers between shards): ``ContractError`` names the first that does not
    (``check_placement`` False: the shards were written by ``write_shards``)."""
    from features.inputs import read_tables, validate_tables

    with tempfile.TemporaryDirectory(prefix="churn-shard-") as scratch:
        local = _local(folder, Path(scratch))
        spec = shard_source(source)
        raw = read_tables(local, spec, lazy_parquet=True)
        if check_placement:
            _check_placement(raw, shard, shards, source.ids, folder)
        result = validate_tables(raw, data_end=data_end, source=spec, earliest=earliest)
        quarantine = {}
        for table, frame in result.quarantine.items():
            rows_file = local / ROWS / f"{table}.parquet"
            if len(frame) and rows_file.exists():
                rows = pq.read_table(rows_file).column("source_row").to_numpy()
                # the reasons name other rows too ("an exact copy of source_row 4"): the original's
                original = lambda m, rows=rows: f"source_row {rows[int(m.group(1))]}"  # noqa: E731
                frame = frame.assign(source_row=rows[frame["source_row"].to_numpy()],
                                     reason=frame["reason"].astype("object").str.replace(_ROW_REF, original, regex=True))
            quarantine[table] = frame
        # not "shard=<k>": DuckDB would read the folder name as a Hive partition column (a
        # customers attribute ``shard``) wherever the engine reads these files
        out = Path(out_root) / f"shard_{shard}"
        out.mkdir(parents=True, exist_ok=True)
        paths, fingerprint = {}, {}
        for table in result.tables:
            path = out / f"{table}.parquet"
            source = result.sources.get(table)
            if isinstance(source, (str, Path)):  # clean as it is: the file itself, never read into pandas
                write_atomic(path, lambda p, src=source: shutil.copyfile(src, p))
                rows = pq.ParquetFile(path).metadata.num_rows
            else:
                frame = result.tables[table]
                write_atomic(path, lambda p, f=frame: f.to_parquet(p, index=False))
                rows = len(frame)
            paths[table] = str(path)
            fingerprint[table] = {"rows": int(rows), "sha256": _file_digest(path)}
    return ShardValidation(shard, paths, quarantine, result.summary, result.row_problems, result.notes,
                           result.data_end, fingerprint)


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_placement(raw: Mapping, shard: int, shards: int, ids: IdOptions, folder: str) -> None:
    from features.inputs.files import ParquetFile

    for table, source in raw.items():
        if isinstance(source, ParquetFile):
            values = pq.read_table(source.path, columns=["customer_id"]).column(0).to_pandas()
        elif "customer_id" in source:
            values = source["customer_id"]
        else:
            continue
        canonical = canonical_ids(values, ids)
        wrong = np.flatnonzero((shard_ids(canonical, shards) != shard) & canonical.notna().to_numpy())
        if len(wrong):
            cid = canonical.iloc[wrong[0]]
            raise ContractError([f"{table} in {folder}: customer_id '{cid}' belongs in shard={shard_of(cid, shards)}, "
                                 f"not shard={shard} ({len(wrong):,} such rows): the dataset was not sharded by this "
                                 f"project's hash with {shards} shards; let the engine write the shards (leave "
                                 "engine.dataset empty) or set engine.shards to the dataset's shard count"])


def merge_validations(parts: Sequence[ShardValidation]) -> ValidatedData:
    """One validation result from the shards': the quarantines concatenated in the order of
    the original rows, the reconciliation and the rule counts summed per table (examples from
    the shard that met the rule first). ``tables`` is empty: the clean tables stay in the
    shards' files (``ShardValidation.tables``)."""
    parts = sorted(parts, key=lambda p: p.shard)
    summary = pd.concat([p.summary for p in parts], ignore_index=True)
    order = [t for t in TABLES if t in set(summary["table"])]
    summary = (summary.groupby("table", sort=False)[["rows_read", "rows_kept", "rows_quarantined"]].sum()
               .reindex(order).reset_index())
    summary[["rows_read", "rows_kept", "rows_quarantined"]] = summary[["rows_read", "rows_kept", "rows_quarantined"]].astype("int64")
    quarantine = {}
    for table in {t for p in parts for t in p.quarantine}:
        frames = [p.quarantine[table] for p in parts if table in p.quarantine]
        nonempty = [f for f in frames if len(f)] or frames[:1]
        merged = pd.concat(nonempty, ignore_index=True) if len(nonempty) > 1 else nonempty[0].reset_index(drop=True)
        quarantine[table] = merged.sort_values("source_row", kind="stable").reset_index(drop=True)
    problems = pd.concat([p.row_problems for p in parts], ignore_index=True)
    if len(problems):
        first = problems.drop_duplicates(["table", "column", "check"])
        counts = problems.groupby(["table", "column", "check"], sort=False)["rows"].sum()
        problems = first.assign(rows=counts.loc[list(zip(first["table"], first["column"], first["check"]))]
                                .to_numpy().astype("int64"))
        problems = problems.sort_values("table", key=lambda t: t.map(TABLES.index), kind="stable").reset_index(drop=True)
    notes = list(dict.fromkeys(n for p in parts for n in p.notes))
    return ValidatedData(tables={}, quarantine=quarantine, summary=summary, data_end=parts[0].data_end,
                         row_problems=problems, notes=notes, sources={})


def shard_globs(parts: Sequence[ShardValidation]) -> dict[str, str]:
    """The validated tables of every shard as DuckDB file globs (table -> ``.../shard_*/<table>.parquet``):
    the global steps (cutoffs, end of the data, skipped groups) read them with one query."""
    tables = [t for t in TABLES if all(t in p.tables for p in parts)]
    root = Path(next(iter(parts[0].tables.values()))).parent.parent
    return {t: str(root / "shard_*" / f"{t}.parquet") for t in tables}


def fingerprint(parts: Sequence[ShardValidation]) -> dict:
    """Row counts and a content hash of the validated inputs, over the shards (the hash of
    the shards' hashes in shard order: it depends on the shard count, unlike the rows)."""
    out = {}
    for table in [t for t in TABLES if any(t in p.fingerprint for p in parts)]:
        digest = hashlib.sha256("".join(p.fingerprint[table]["sha256"] for p in parts if table in p.fingerprint).encode())
        out[table] = {"rows": int(sum(p.fingerprint[table]["rows"] for p in parts if table in p.fingerprint)),
                      "sha256": digest.hexdigest()[:16], "shards": len(parts)}
    return out


# -- what joins the shards ------------------------------------------------------------------------

def channel_counts(tables: Mapping[str, str], last_cutoff: pd.Timestamp) -> tuple[list[str], np.ndarray]:
    """The interaction channels (raw values, in order) and their interactions before
    ``last_cutoff`` in one shard's tables (``build.choose_channels`` reads their sum)."""
    if "interactions" not in tables:
        return [], np.zeros(0, dtype=np.int64)
    import duckdb

    from features.history import parquet_sql

    at = f"TIMESTAMP '{pd.Timestamp(last_cutoff).isoformat(sep=' ')}'"
    with duckdb.connect() as con:
        rows = con.execute(f"""SELECT channel, count(*) FROM {parquet_sql(tables['interactions'])}
                               WHERE channel IS NOT NULL AND occurred_at < {at} GROUP BY channel ORDER BY channel""").fetchall()
    return [r[0] for r in rows], np.array([r[1] for r in rows], dtype=np.int64)


def sum_channel_counts(parts: Iterable[tuple[list[str], np.ndarray]]) -> tuple[list[str], np.ndarray]:
    """The shards' channel counts added up, channels in order."""
    total: dict[str, int] = {}
    for values, counts in parts:
        for v, n in zip(values, counts):
            total[v] = total.get(v, 0) + int(n)
    values = sorted(total, key=lambda v: v.encode("utf-8"))  # DuckDB's VARCHAR order: bytewise
    return values, np.array([total[v] for v in values], dtype=np.int64)


def shard_features(tables: Mapping[str, str], cutoffs: Sequence[pd.Timestamp], config: FeatureConfig, *,
                   channels: Sequence[str] | None, label_horizon_days: int | None = None,
                   scoring: bool = False) -> pd.DataFrame:
    """One shard's features (and labels) by the single-machine engine, without the BG/NBD
    summaries (they need the parameters of the whole base: ``add_btyd``). ``scoring``: the
    population scored at the one cutoff (``build.features_for_scoring``)."""
    from features import build

    bare = config.model_copy(update={"btyd": False})
    if scoring:
        return build.features_for_scoring(tables, cutoffs[0], config=bare, channels=channels)
    return build.build_features(tables, cutoffs, config=bare, channels=channels, label_horizon_days=label_horizon_days)


def btyd_inputs(frame: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    """The BG/NBD inputs of one cutoff's rows of a shard: customer_id, btyd_x, btyd_t_x, btyd_T."""
    rows = frame["cutoff"].to_numpy() == np.datetime64(pd.Timestamp(cutoff), "us")
    return frame.loc[rows, ["customer_id", "btyd_x", "btyd_t_x", "btyd_T"]].reset_index(drop=True)


def fit_btyd_across(inputs_by_cutoff: Mapping[pd.Timestamp, Sequence[pd.DataFrame]], config: FeatureConfig) -> dict:
    """The BG/NBD parameters of each cutoff, fitted once on the shards' inputs put back in the
    single-machine order (customer_id, bytewise): the same seeded sample of the same rows as
    ``build.fit_btyd`` on the whole base, so the same parameters."""
    from features import build

    fitted = {}
    for cutoff, parts in inputs_by_cutoff.items():
        rows = pd.concat(list(parts), ignore_index=True)
        order = np.argsort(rows["customer_id"].to_numpy(dtype=object), kind="stable")
        rows = rows.iloc[order].assign(cutoff=pd.Timestamp(cutoff))
        fitted.update(build.fit_btyd(rows, config) if len(rows) else {pd.Timestamp(cutoff): None})
    return fitted


def add_btyd(frame: pd.DataFrame, config: FeatureConfig, fitted: Mapping) -> pd.DataFrame:
    """A shard's features with the BG/NBD summaries from ``fitted`` (cutoff -> parameters),
    columns in the order the single-machine engine writes them."""
    from features import build
    from features.catalogue import BY_NAME

    if not config.btyd:
        return frame
    cols = build._btyd_features(frame, config, fitted)
    out = frame.assign(**{c: cols[c] for c in cols.columns})
    head = [c for c in (*build.KEYS, "label") if c in out.columns]
    named = [c for c in BY_NAME if c in out.columns]
    rest = [c for c in frame.columns if c not in head and c not in named]
    return out[head + named + rest]


def concat_shards(frames: Sequence[pd.DataFrame], sort: Sequence[str] | None = ("cutoff", "customer_id")) -> pd.DataFrame:
    """Shards' frames as one, in the single-machine order (by cutoff, then customer_id):
    categorical columns get the union of the shards' categories, sorted, as the engine gives
    them on the whole base."""
    frames = [f for f in frames if f is not None]
    if not frames:
        return pd.DataFrame()
    cats = {c for f in frames for c in f.columns if isinstance(f[c].dtype, pd.CategoricalDtype)}
    levels = {c: sorted({v for f in frames if c in f for v in f[c].cat.categories}) for c in cats}
    frames = [f.assign(**{c: pd.Categorical(f[c].astype("object"), categories=levels[c]) for c in cats if c in f})
              for f in frames]
    out = pd.concat(frames, ignore_index=True)
    if sort:
        keys = [c for c in sort if c in out.columns]
        if keys:
            out = out.sort_values(keys, kind="stable").reset_index(drop=True)
    return out
