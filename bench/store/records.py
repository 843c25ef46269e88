"""Result records: one JSON file per job, written atomically; reading them back, skipping bad ones."""

from __future__ import annotations

import io
import json
import logging
import math
import os
import tempfile
from pathlib import Path

import numpy as np

SCHEMA_VERSION = 1
RECORD_NAME = "result.json"
# A job's arrays: values, planted mask, and stderr / selected when the method has them.
ARRAYS_NAME = "valuation.npz"
log = logging.getLogger(__name__)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # JSON has no NaN; readers turn None back into NaN
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    return obj


def flatten(cfg: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}: how a record stores its run config; lists stay values."""
    out = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def unflatten(flat: dict) -> dict:
    """The inverse of `flatten`: {"a.b": 1} -> {"a": {"b": 1}}."""
    out: dict = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def as_stored(obj):
    """`obj` as it reads back from a record (NaN -> None, tuples -> lists, numpy -> Python)."""
    return json.loads(json.dumps(_jsonable(obj)))


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_partial_writes(folder: Path) -> list[Path]:
    """Delete the temporary files that `write_atomic` leaves in `folder` when a process is killed."""
    stale = sorted(Path(folder).glob(".*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def write_arrays(job_dir: Path, arrays: dict) -> Path:
    """Save a job's arrays (`values`, `planted`, ...) compressed and atomically in `job_dir`."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    path = Path(job_dir) / ARRAYS_NAME
    write_atomic(path, buf.getvalue())
    return path


def read_arrays(job_dir: Path) -> dict[str, np.ndarray]:
    """The arrays a job saved with `write_arrays` (FileNotFoundError when it saved none)."""
    with np.load(Path(job_dir) / ARRAYS_NAME) as data:
        return {key: data[key] for key in data.files}


def write_record(job_dir: Path, record: dict) -> Path:
    path = Path(job_dir) / RECORD_NAME
    write_atomic(path, json.dumps(_jsonable(record), indent=2, sort_keys=True).encode())
    return path


def read_record(path: Path) -> dict | None:
    """The record at `path`, or None (with a warning naming the file) when it is corrupt."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        log.warning("skipping corrupt record %s: %s", path, err)
        return None
    if not isinstance(record, dict) or "schema" not in record:
        log.warning("skipping %s: not a valbench result record", path)
        return None
    return record


def find_records(*dirs) -> list[Path]:
    paths = []
    for d in dirs:
        d = Path(d)
        if not d.exists():
            raise FileNotFoundError(f"no such directory: {d}")
        paths += sorted(d.rglob(RECORD_NAME)) if d.is_dir() else [d]
    return paths
