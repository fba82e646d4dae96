"""Lineage: what a run read, with which model and settings, and what it wrote, so that any
list can be traced back to its data and model.

A scoring writes ``lineage.json`` into its list's folder (``OUT/history/<as_of>/``, part of
the set shown at ``OUT/``); a training records the same document as tags (``lineage.*``)
and as the artifact ``lineage.json`` of its MLflow run. Secrets never appear: a database
URL is shown as ``describe_source`` / ``shown_uri`` print it (password masked); the settings
appear only as a hash.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from features.inputs import SourceConfig, ValidatedData, describe_source
from features.io import write_atomic

LINEAGE = "lineage.json"
CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def frame_sha256(frame: pd.DataFrame) -> str:
    """The sha256 of a frame's rows (pandas' row hashes, index left out)."""
    return hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).hexdigest()


def settings_sha256(settings: Mapping) -> str:
    """A stable hash of the run's settings (``Settings.model_dump()``): equal settings, equal hash."""
    text = json.dumps(settings, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def inputs_read(source: SourceConfig, data_dir: Path | None, validated: ValidatedData,
                fingerprints: Mapping[str, Mapping] | None = None) -> dict:
    """What a run read: the source (a folder, or a SQL database with its password masked),
    the data_end, and per table where it came from (the file, or the SQL query or table),
    rows read, kept and quarantined, and a fingerprint.

    The fingerprint is that of ``fingerprints[table]["sha256"]`` when the caller already has
    one (the training's ``data_fingerprint``, over the validated rows); else the sha256 of the
    file's bytes for a folder of files (no table is read into memory for it), or of the
    validated rows for a SQL source (already in memory)."""
    summary = {r.table: r for r in validated.summary.itertuples()}
    names = list(dict.fromkeys([*summary, *validated.sources]))
    folder = Path(data_dir if data_dir is not None else source.path) if source.kind == "files" else None
    tables = {}
    for name in names:
        entry: dict = {}
        spec = source.table(name)
        path = None
        if folder is not None:
            from features.inputs.files import _locate

            path, _ = _locate(folder, name, spec)
            entry["file"] = str(path) if path is not None else None  # None: derived (customers from orders)
        elif spec.query:
            entry["query"] = spec.query.strip()
        else:
            entry["table"] = ".".join(p for p in (source.schema_, spec.table or name) if p)
        row = summary.get(name)
        entry |= ({"rows_read": int(row.rows_read), "rows_kept": int(row.rows_kept),
                   "rows_quarantined": int(row.rows_quarantined)} if row is not None else {"derived": True})
        given = (fingerprints or {}).get(name)
        if given is not None:
            entry["fingerprint"] = {"sha256": str(given["sha256"]), "of": "validated rows"}
        elif path is not None and Path(path).is_file():
            entry["fingerprint"] = {"sha256": file_sha256(path), "of": "file bytes"}
        elif name in validated.sources and isinstance(validated.sources[name], pd.DataFrame):
            entry["fingerprint"] = {"sha256": frame_sha256(validated.sources[name]), "of": "validated rows"}
        tables[name] = entry
    return {"source": source.kind, "location": describe_source(source, data_dir),
            "data_end": str(pd.Timestamp(validated.data_end)) if validated.data_end is not None else None,
            "tables": tables}


def outputs_written(folder: Path) -> list[dict]:
    """Every file under ``folder`` (but ``lineage.json``): its path relative to the folder,
    size in bytes and sha256, sorted by path."""
    folder = Path(folder)
    out = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        rel = path.relative_to(folder).as_posix()
        if rel == LINEAGE:
            continue
        out.append({"path": rel, "bytes": path.stat().st_size, "sha256": file_sha256(path)})
    return out


def lineage(kind: str, *, read: dict, model: dict, settings_hash: str, as_of: pd.Timestamp | None = None,
            run: Mapping[str, str | None] | None = None, wrote: dict | None = None) -> dict:
    """The lineage document of one run (``kind``: ``score`` or ``train``): when, the run's ids
    (a Prefect flow run, an MLflow run), the model (name, version, URI, tracking store), the
    settings hash, what was read (``inputs_read``) and what was written."""
    return {"kind": kind, "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "as_of": pd.Timestamp(as_of).strftime("%Y-%m-%d") if as_of is not None else None,
            "run": {k: v for k, v in (run or {}).items() if v}, "model": model, "settings_sha256": settings_hash,
            "read": read, "wrote": wrote or {}}


def write_lineage(doc: dict, folder: Path) -> Path:
    """Write ``doc`` as ``folder/lineage.json`` (strict JSON, atomically), its ``wrote`` listing
    every other file of the folder with size and sha256."""
    from models.report import strict_json

    doc = {**doc, "wrote": {**doc.get("wrote", {}), "files": outputs_written(folder)}}
    return write_atomic(Path(folder) / LINEAGE, lambda tmp: tmp.write_text(strict_json(doc), encoding="utf-8"))


def read_lineage(folder: Path) -> dict | None:
    path = Path(folder) / LINEAGE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def mlflow_tags(doc: dict, limit: int = 5000) -> dict[str, str]:
    """The document as MLflow tags: ``lineage.settings_sha256``, ``lineage.source``,
    ``lineage.data_end``, and per table ``lineage.<table>.rows`` and ``.sha256``; the whole
    document as ``lineage.json`` when it fits the tag size."""
    tags = {"lineage.settings_sha256": doc["settings_sha256"], "lineage.source": str(doc["read"]["location"]),
            "lineage.data_end": str(doc["read"].get("data_end"))}
    for name, entry in doc["read"]["tables"].items():
        if "rows_kept" in entry:
            tags[f"lineage.{name}.rows"] = str(entry["rows_kept"])
        if "fingerprint" in entry:
            tags[f"lineage.{name}.sha256"] = entry["fingerprint"]["sha256"]
    text = json.dumps(doc, separators=(",", ":"), default=str)
    if len(text) <= limit:
        tags["lineage.json"] = text
    return {k: v[:limit] for k, v in tags.items()}


def markdown(doc: dict) -> str:
    """A short text of the document for a Prefect artifact."""
    m = doc["model"]
    lines = [f"# Lineage of the {doc['kind']} run" + (f" as of {doc['as_of']}" if doc.get("as_of") else ""), "",
             f"- model {m.get('name')} version {m.get('version')} ({m.get('uri')})",
             f"- settings sha256 {doc['settings_sha256'][:16]}",
             f"- read from {doc['read']['location']} (data_end {doc['read'].get('data_end')})"]
    for name, e in doc["read"]["tables"].items():
        where = e.get("file") or e.get("query") or e.get("table") or "derived"
        lines.append(f"  - {name}: {e.get('rows_kept', '-')} rows kept of {e.get('rows_read', '-')} from {where}"
                     + (f", sha256 {e['fingerprint']['sha256'][:16]} ({e['fingerprint']['of']})" if "fingerprint" in e else ""))
    files = doc.get("wrote", {}).get("files", [])
    if files:
        lines.append(f"- wrote {len(files)} file(s) into {doc['wrote'].get('folder', '')}")
        lines += [f"  - {f['path']}: {f['bytes']:,} bytes, sha256 {f['sha256'][:16]}" for f in files]
    return "\n".join(lines)


_last_read: list = []  # (validated, key, read): a backfill reads its validated input once


def score_lineage(source: SourceConfig, data_dir: Path | None, validated: ValidatedData, *, settings: Mapping,
                  model_name: str, model_uri: str | None, version: str | None, tracking_uri: str,
                  as_of: pd.Timestamp, run: Mapping[str, str | None] | None = None) -> dict:
    """The lineage of a scoring before its files are written (``write_lineage`` adds them):
    the inputs (``inputs_read``, computed once per validated input), the model (``model_uri``,
    default the champion alias, its version, the tracking store as printed), the settings
    hash."""
    key = (str(data_dir), source.kind)
    if _last_read and _last_read[0] is validated and _last_read[1] == key:
        read = _last_read[2]
    else:
        read = inputs_read(source, data_dir, validated)
        _last_read[:] = [validated, key, read]
    model = {"name": model_name, "version": version, "uri": model_uri or f"models:/{model_name}@champion",
             "tracking_uri": tracking_uri}
    return lineage("score", read=read, model=model, settings_hash=settings_sha256(settings), as_of=as_of, run=run)
