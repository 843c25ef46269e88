"""Job records on disk: arrays checked by checksum, files made with the user's umask, job locks."""

from __future__ import annotations

import logging
import os
import threading
import time

import numpy as np
import pytest

from valbench.store.records import (
    ARRAYS_NAME,
    arrays_problem,
    job_lock,
    read_arrays,
    write_arrays,
    write_record,
)


def _job(tmp_path):
    digest = write_arrays(tmp_path, {"values": np.arange(5.0), "planted": np.ones(5, bool)})
    return {"schema": 1, "status": "ok", "arrays_sha256": digest}


def test_intact_arrays_match_their_checksum(tmp_path):
    record = _job(tmp_path)
    assert arrays_problem(tmp_path, record) is None
    assert read_arrays(tmp_path)["values"].tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_bytes(b""), "does not match its record's checksum"),
        (lambda p: p.write_bytes(p.read_bytes()[:40]), "does not match its record's checksum"),
        (lambda p: p.unlink(), "is missing"),
    ],
)
def test_damaged_arrays_are_named(tmp_path, damage, message):
    record = _job(tmp_path)
    damage(tmp_path / ARRAYS_NAME)
    problem = arrays_problem(tmp_path, record)
    assert problem.startswith(f"{tmp_path / ARRAYS_NAME} {message}"), problem


def test_records_without_a_checksum_are_checked_by_reading(tmp_path):
    record = _job(tmp_path)
    del record["arrays_sha256"]
    assert arrays_problem(tmp_path, record) is None
    (tmp_path / ARRAYS_NAME).write_bytes(b"")
    assert f"{tmp_path / ARRAYS_NAME} does not read back" in arrays_problem(tmp_path, record)
    with pytest.raises(ValueError, match="does not read back"):
        read_arrays(tmp_path)


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_files_are_written_with_the_users_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_record(tmp_path, {"schema": 1})
        write_arrays(tmp_path, {"values": np.zeros(2)})
        with job_lock(tmp_path):
            pass
    finally:
        os.umask(old)
    for name in ("result.json", ARRAYS_NAME, ".lock"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name


def test_a_second_holder_of_a_job_lock_waits_for_the_first(tmp_path, caplog):
    order = []

    def second():
        with job_lock(tmp_path):
            order.append("second")

    with job_lock(tmp_path):
        assert (tmp_path / ".lock").read_text().startswith(f"pid {os.getpid()} on ")
        with caplog.at_level(logging.INFO, logger="valbench.store.records"):
            thread = threading.Thread(target=second)
            thread.start()
            time.sleep(0.5)
            order.append("first")
    thread.join(10)
    assert order == ["first", "second"]
    assert f"waiting for {tmp_path}: pid {os.getpid()} on" in caplog.text
