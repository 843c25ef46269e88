"""Job records -> one tidy table (one row per job) and back from a collected .parquet/.csv file."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pandas as pd

from ..score import METRIC_KEYS
from ..store.records import SCHEMA_VERSION, arrays_problem, find_records, read_record
from .tables import COST_KEYS

log = logging.getLogger("valbench.report")
NUMERIC_KEYS = (*METRIC_KEYS, *COST_KEYS, "wall_seconds", "n_trainings", "n_planted", "n_train")


def collect(*dirs) -> pd.DataFrame:
    """All records under `dirs` as one tidy table: one row per job (finished or failed), its
    metrics, costs, `config.*` columns (the flattened run config), `versions.*` columns (package
    versions) and the record's `path`.

    Corrupt records and records of another schema version are skipped by name with a warning; a
    job whose arrays do not read back with the recorded checksum becomes a failed job (status
    error) whose error names the file. A FileNotFoundError says when nothing readable is left.
    """
    rows, skipped = [], Counter()
    paths = find_records(*dirs)
    for path in paths:
        record = read_record(path)
        if record is None:
            skipped["corrupt"] += 1
            continue
        if record.get("schema") != SCHEMA_VERSION:
            log.warning(
                "skipping %s: schema %s, this valbench reads schema %s",
                path,
                record.get("schema"),
                SCHEMA_VERSION,
            )
            skipped[f"schema {record.get('schema')}"] += 1
            continue
        if record.get("status") == "ok" and (problem := arrays_problem(path.parent, record)):
            log.warning("counting %s as failed: %s", path.parent, problem)
            record.update(status="error", error=problem)
        rows.append(_row(record, path))
    where = ", ".join(map(str, dirs))
    if not rows:
        if not paths:
            raise FileNotFoundError(f"no valbench result records (result.json) under {where}")
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(skipped.items()))
        raise FileNotFoundError(f"no usable records under {where}: skipped {reasons}")
    if skipped:
        log.warning("skipped %d of %d records under %s", sum(skipped.values()), len(paths), where)
    frame = pd.DataFrame(rows)
    for key in NUMERIC_KEYS:
        if key in frame:
            frame[key] = pd.to_numeric(frame[key], errors="coerce")
    return _uniform_types(frame)


def _row(record: dict, path: Path) -> dict:
    config = {
        f"config.{k}": (str(v) if isinstance(v, (list, dict)) else v)
        for k, v in (record.pop("config", None) or {}).items()
    }
    for key in ("traceback", "info"):
        record.pop(key, None)
    versions = record.pop("versions", None) or {}
    packages = {f"versions.{k}": v for k, v in versions.items()}
    return {
        **record,
        **config,
        "valbench_version": versions.get("valbench"),
        **packages,
        "path": str(path),
    }


def _uniform_types(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns that mix value types (e.g. a config key that is 3 in one job and "auto" in another)
    become strings, so the table writes to parquet."""
    for col in [c for c in frame if pd.api.types.is_object_dtype(frame[c])]:
        kinds = {type(v) for v in frame[col] if v is not None and not pd.isna(v)}
        if len(kinds) > 1:
            frame[col] = frame[col].map(lambda v: v if v is None or pd.isna(v) else str(v))
    return frame


def load_table(sources) -> pd.DataFrame:
    """A collected table from a .parquet/.csv file, or collected on the fly from record folders."""
    sources = [Path(s) for s in sources]
    if len(sources) == 1 and sources[0].suffix in (".parquet", ".csv"):
        path = sources[0]
        if not path.exists():
            raise FileNotFoundError(f"no such table: {path}")
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        return _this_schema(frame, path)
    return collect(*sources)


def _this_schema(frame: pd.DataFrame, source: Path) -> pd.DataFrame:
    """The rows of a collected table that this valbench reads; the others skipped by path."""
    if "schema" not in frame or "status" not in frame:
        raise ValueError(f"{source} is not a table made by `valbench-report collect`")
    foreign = frame["schema"] != SCHEMA_VERSION
    for _, row in frame[foreign].iterrows():
        log.warning(
            "skipping %s: schema %s, this valbench reads schema %s",
            row.get("path"),
            row["schema"],
            SCHEMA_VERSION,
        )
    if foreign.all():
        raise ValueError(f"no rows of schema {SCHEMA_VERSION} in {source}")
    return frame[~foreign]


def write_table(frame: pd.DataFrame, output: Path) -> list[Path]:
    """`frame` as OUTPUT.parquet and OUTPUT.csv."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    paths = [output.with_suffix(".parquet"), output.with_suffix(".csv")]
    frame.to_parquet(paths[0], index=False)
    frame.to_csv(paths[1], index=False)
    return paths


def report_failures(frame: pd.DataFrame) -> None:
    for _, row in frame[frame["status"] == "error"].iterrows():
        print(f"FAILED {row.get('method')} ({row.get('path')}): {row.get('error')}")
