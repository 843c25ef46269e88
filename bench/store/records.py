"""Result records: one JSON file per job, written atomically; reading them back, skipping bad ones.

A job's record holds the SHA-256 of its arrays file (`arrays_sha256`), so a job counts as finished
only when both read back (`arrays_problem`). Files are created with the user's umask. A job folder's
lock file (`job_lock`) lets concurrent identical sweeps share the work instead of each redoing it.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import logging
import math
import os
import socket
import uuid
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

SCHEMA_VERSION = 1
RECORD_NAME = "result.json"
# A job's arrays: values, planted mask, and stderr / selected when the method has them.
ARRAYS_NAME = "valuation.npz"
LOCK_NAME = ".lock"
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
    """Write `data` to `path` so that readers see the old file or the whole new one, never a part.
    The file gets mode 0o666 less the user's umask, like any file the user creates."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_partial_writes(folder: Path) -> list[Path]:
    """Delete the temporary files that `write_atomic` leaves in `folder` when a process is killed."""
    stale = sorted(Path(folder).glob(".*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def write_arrays(job_dir: Path, arrays: dict) -> str:
    """Save a job's arrays (`values`, `planted`, ...) compressed and atomically in `job_dir`;
    returns the file's SHA-256 (hex), for the record's `arrays_sha256`."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    write_atomic(Path(job_dir) / ARRAYS_NAME, buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest()


def read_arrays(job_dir: Path) -> dict[str, np.ndarray]:
    """The arrays a job saved with `write_arrays`: FileNotFoundError when it saved none, a
    ValueError naming the file when it does not read back (truncated, empty, not an NPZ)."""
    path = Path(job_dir) / ARRAYS_NAME
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except FileNotFoundError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} does not read back ({type(err).__name__}: {err})") from None


def arrays_problem(job_dir: Path, record: dict) -> str | None:
    """Why the arrays of a finished job (status ok) are unusable, naming the file, or None when
    they match the record's `arrays_sha256` (records without one: when the file reads back)."""
    path = Path(job_dir) / ARRAYS_NAME
    if not path.is_file():
        return f"{path} is missing"
    expected = record.get("arrays_sha256")
    if expected is None:
        try:
            read_arrays(job_dir)
        except ValueError as err:
            return str(err)
        return None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != expected:
        return f"{path} does not match its record's checksum (sha256 {digest[:12]}, recorded {expected[:12]})"
    return None


@contextmanager
def job_lock(job_dir: Path):
    """Hold `job_dir`/.lock (an exclusive flock) while a job runs: a second process that runs the
    same job waits, logging who holds it, and then finds the job finished. The kernel releases the
    lock when its holder dies, so a killed sweep leaves no stale lock."""
    path = Path(job_dir) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            log.info("waiting for %s: %s is running this job", job_dir, holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the flock


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
